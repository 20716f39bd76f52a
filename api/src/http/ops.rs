//! What operators and tools read: liveness, Prometheus metrics, and the
//! API's OpenAPI document.

use axum::extract::State;
use axum::response::IntoResponse;

use crate::http::{ApiError, AppState};

/// `ok`, or 503 with the reason while the Docker daemon does not answer
/// (the server then takes no new run).
pub(super) async fn healthz(State(state): State<AppState>) -> axum::response::Response {
    match state.metrics.docker() {
        None => "ok".into_response(),
        Some(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

/// The API's OpenAPI document, kept beside the code and checked against the
/// router by a test.
pub const OPENAPI: &str = include_str!("../../assets/openapi.json");

pub(super) async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

pub(super) async fn metrics(State(state): State<AppState>) -> Result<String, ApiError> {
    let queued = state.store.queued().map_err(ApiError::internal)?.len();
    let mut out = state.metrics.render(queued, state.control.running());
    let runners = state.store.runners().map_err(ApiError::internal)?;
    if !runners.is_empty() {
        out.push_str(&runner_metrics(
            runners
                .iter()
                .map(|r| (r.name.as_str(), state.dispatch.runner_state(&r.name))),
        ));
    }
    Ok(out)
}

/// Per remote runner: online, healthy, capacity, busy, seconds since
/// last seen; each family's samples together, as the text format wants.
fn runner_metrics<'a>(
    runners: impl Iterator<Item = (&'a str, crate::runs::dispatch::RunnerState)>,
) -> String {
    use std::fmt::Write;
    let runners: Vec<(&str, crate::runs::dispatch::RunnerState)> = runners.collect();
    let now = crate::ids::now_ms();
    type Sample = fn(&crate::runs::dispatch::RunnerState, u64) -> Option<String>;
    let families: [(&str, &str, Sample); 5] = [
        (
            "slipway_runner_online",
            "Whether a remote runner was heard from within its lease.",
            |s, _| Some(u8::from(s.online).to_string()),
        ),
        (
            "slipway_runner_healthy",
            "Whether a remote runner's Docker daemon answers.",
            |s, _| Some(u8::from(s.unhealthy.is_none()).to_string()),
        ),
        (
            "slipway_runner_capacity",
            "Runs a remote runner takes at once.",
            |s, _| Some(s.capacity.to_string()),
        ),
        (
            "slipway_runner_busy",
            "Runs a remote runner holds.",
            |s, _| Some(s.busy.to_string()),
        ),
        (
            "slipway_runner_last_seen_seconds",
            "Seconds since a remote runner was last heard from.",
            |s, now| {
                s.last_seen_ms
                    .map(|seen| format!("{:.1}", now.saturating_sub(seen) as f64 / 1000.0))
            },
        ),
    ];
    let mut out = String::new();
    for (name, help, sample) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (runner, state) in &runners {
            if let Some(value) = sample(state, now) {
                let _ = writeln!(out, "{name}{{runner=\"{runner}\"}} {value}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::app;
    use crate::http::tests::test_state;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;

    /// A daemon that stops answering makes the server unhealthy, saying
    /// why, in /healthz and the metrics; answering again makes it healthy.
    #[tokio::test]
    async fn healthz_and_metrics_say_when_the_docker_daemon_does_not_answer() {
        let (state, dir) = test_state("");
        let get = |path: &'static str| {
            let state = state.clone();
            async move {
                let req = Request::get(path).body(Body::empty()).unwrap();
                let resp = app(state).oneshot(req).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(get("/healthz").await, (StatusCode::OK, "ok".into()));
        state.metrics.set_docker(Err(
            "Docker daemon not answering: no answer to `ping` in time".into(),
        ));
        let (status, body) = get("/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no answer to `ping`"), "{body}");
        let rendered = state.metrics.render(0, 0);
        assert!(rendered.contains("slipway_docker_healthy 0"), "{rendered}");
        state.metrics.set_docker(Ok(()));
        assert_eq!(get("/healthz").await.0, StatusCode::OK);
        assert!(
            state
                .metrics
                .render(0, 0)
                .contains("slipway_docker_healthy 1")
        );
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }
    use tower::ServiceExt;

    fn state() -> (AppState, std::path::PathBuf) {
        test_state("")
    }

    /// Every documented path and method is routed (an unrouted one answers
    /// axum's bare 404 or 405), so the document cannot drift from the router.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let (state, dir) = state();
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10);
        for (path, ops) in paths {
            for method in ops.as_object().unwrap().keys() {
                let uri = path
                    .replace("{provider}", "github")
                    .replace("{id}", "abc")
                    .replace("{step}", "build");
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let resp = app(state.clone()).oneshot(req).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
                    || (status == StatusCode::NOT_FOUND && body.is_empty());
                assert!(
                    !unrouted,
                    "{method} {path} is documented but not routed ({status})"
                );
            }
        }
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every API operation but the document itself refuses a caller with
    /// no token: the scope extractors stand in every handler's signature.
    #[tokio::test]
    async fn every_api_operation_needs_a_token() {
        let (state, dir) = state();
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut checked = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
                continue;
            }
            for method in ops.as_object().unwrap().keys() {
                let uri = path
                    .replace("{id}", "abc")
                    .replace("{step}", "build")
                    .replace("{owner}", "acme")
                    .replace("{name}", "web")
                    .replace("{number}", "1")
                    .replace("{path}", "a.txt");
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap();
                let status = app(state.clone()).oneshot(req).await.unwrap().status();
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} operations checked");
        drop(state);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
