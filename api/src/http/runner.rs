//! Remote runners over the server's own listener: the protocol
//! (`/api/v1/runner/*`, runner tokens; wire types in `protocol`) and
//! their registration (`/api/v1/runners`, API tokens).

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use slipway_runner::RunEvent;

use crate::http::auth::{Admin, Reader};
use crate::http::{ApiError, AppState};
use crate::protocol::{EventBatch, EventsReply, Heartbeat, Hello};
use crate::store::RunnerRecord;

/// A registered runner, known by its token.
pub struct RunnerAuth(pub RunnerRecord);

impl FromRequestParts<AppState> for RunnerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = crate::http::auth::bearer(&parts.headers, "runner token")?;
        match state.store.runner_by_token(presented) {
            Ok(Some(runner)) => Ok(RunnerAuth(runner)),
            Ok(None) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown runner token (see `slipway runners add`)",
            )),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}

fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
}

#[derive(Debug, Deserialize)]
pub struct ClaimQuery {
    /// How long to wait for a run, at most [`crate::protocol::CLAIM_WAIT`].
    wait_ms: Option<u64>,
}

/// `POST /api/v1/runner/claim`: waits for a run this runner can take.
pub async fn claim(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Query(query): Query<ClaimQuery>,
    body: Result<Json<Hello>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let hello = json_body(body)?;
    check_hello(&runner, &hello)?;
    state.dispatch.seen(&runner.name, &hello);
    let wait = query
        .wait_ms
        .map(std::time::Duration::from_millis)
        .unwrap_or(crate::protocol::CLAIM_WAIT)
        .min(crate::protocol::CLAIM_WAIT);
    if hello.unhealthy.is_some() || hello.capacity == 0 {
        // Nothing for it; it asks again after a while.
        tokio::select! {
            _ = tokio::time::sleep(wait.min(std::time::Duration::from_secs(2))) => {}
            _ = state.shutdown.cancelled() => {}
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (id, mut rx) = state.dispatch.wait_for_job(&runner.name, &hello.labels);
    let got = tokio::select! {
        job = &mut rx => job.ok(),
        _ = tokio::time::sleep(wait) => None,
        _ = state.shutdown.cancelled() => None,
    };
    state.dispatch.stop_waiting(id);
    // A run handed over while the wait was ending is still this runner's.
    let got = got.or_else(|| rx.try_recv().ok());
    Ok(match got {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// A runner started with `--name` must use its own token: two runners
/// sharing one would hold each other's leases.
fn check_hello(runner: &RunnerRecord, hello: &Hello) -> Result<(), ApiError> {
    if let Some(name) = &hello.name
        && name != &runner.name
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_runner",
            format!(
                "this token is runner `{}`'s, not `{}`'s",
                runner.name,
                name.escape_debug()
            ),
        ));
    }
    check_labels(&hello.labels)
}

fn check_labels(labels: &[String]) -> Result<(), ApiError> {
    match labels
        .iter()
        .find(|l| !slipway_engine::parse::is_runner_label(l))
    {
        Some(bad) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_label",
            format!(
                "runner label `{}` is not a plain word (letters, digits, `-`, `_`, `.`, `/`)",
                bad.escape_debug()
            ),
        )),
        None => Ok(()),
    }
}

/// `POST /api/v1/runner/heartbeat`: renews leases; says what to cancel
/// and what is fenced.
pub async fn heartbeat(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    body: Result<Json<Heartbeat>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let beat = json_body(body)?;
    check_hello(&runner, &beat.hello)?;
    let reply = state
        .dispatch
        .heartbeat(&runner.name, &beat.hello, &beat.runs);
    Ok(Json(reply).into_response())
}

fn fenced(run_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "fenced",
        format!("this runner no longer holds run {run_id}: stop it and send nothing more"),
    )
}

/// `POST /api/v1/runner/events`: stores a batch of a run's events once,
/// then answers how many are stored.
pub async fn events(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    body: Result<Json<EventBatch>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<EventsReply>, ApiError> {
    let batch = json_body(body)?;
    let recording = state
        .dispatch
        .recording(&batch.run_id, &runner.name, batch.epoch)
        .ok_or_else(|| fenced(&batch.run_id))?;
    let mut recording = recording.lock_owned().await;
    // The lease may have expired while an earlier batch was being stored.
    if state
        .dispatch
        .recording(&batch.run_id, &runner.name, batch.epoch)
        .is_none()
    {
        return Err(fenced(&batch.run_id));
    }
    let acked = recording.acked;
    let end = batch.first + batch.events.len() as u64;
    if batch.first > acked || end <= acked {
        // A gap (send from `acked`) or a batch already stored.
        return Ok(Json(EventsReply { acked }));
    }
    let fresh: Vec<RunEvent> = batch.events[(acked - batch.first) as usize..].to_vec();
    let (store, control, metrics, dispatch) = (
        state.store.clone(),
        state.control.clone(),
        state.metrics.clone(),
        state.dispatch.clone(),
    );
    let (run_id, epoch) = (batch.run_id.clone(), batch.epoch);
    let stored = tokio::task::spawn_blocking(move || {
        let mut finished = false;
        for event in &fresh {
            match event {
                RunEvent::StepFinished { duration, .. } => metrics.step_finished(*duration),
                RunEvent::RunFinished { .. } => {
                    recording.recorder.set_final_error(control.reason(&run_id));
                    finished = true;
                }
                _ => {}
            }
            recording.recorder.apply(event)?;
        }
        recording.recorder.flush_logs()?;
        store.update_run(&run_id, |r| {
            if let Some(lease) = r.lease.as_mut().filter(|l| l.epoch == epoch) {
                lease.acked = end;
            }
        })?;
        store.flush()?;
        recording.acked = end;
        if finished {
            dispatch.finished(&run_id);
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await
    .map_err(ApiError::internal)?;
    stored.map_err(ApiError::internal)?;
    Ok(Json(EventsReply { acked: end }))
}

/// A runner as `GET /api/v1/runners` lists it.
#[derive(Debug, Serialize)]
pub struct RunnerView {
    pub name: String,
    /// The server's own runner (`[server] local_runner`).
    pub builtin: bool,
    pub created_ms: Option<u64>,
    pub created_by: Option<String>,
    #[serde(flatten)]
    pub state: crate::runs::dispatch::RunnerState,
}

/// `GET /api/v1/runners`
pub async fn list(
    State(state): State<AppState>,
    _reader: Reader,
) -> Result<Json<Vec<RunnerView>>, ApiError> {
    let mut out = Vec::new();
    if state.config.local_runner {
        let remote: usize = state
            .store
            .runners()
            .map_err(ApiError::internal)?
            .iter()
            .map(|r| state.dispatch.runs_of(&r.name).len())
            .sum();
        let busy = state.control.running().saturating_sub(remote);
        out.push(RunnerView {
            name: "built-in".into(),
            builtin: true,
            created_ms: None,
            created_by: None,
            state: crate::runs::dispatch::RunnerState {
                online: true,
                labels: state.config.local_runner_labels.clone(),
                capacity: state.config.max_concurrent_runs,
                busy,
                version: env!("CARGO_PKG_VERSION").into(),
                unhealthy: state.metrics.docker(),
                last_seen_ms: Some(crate::ids::now_ms()),
                runs: Vec::new(),
            },
        });
    }
    for r in state.store.runners().map_err(ApiError::internal)? {
        out.push(RunnerView {
            state: state.dispatch.runner_state(&r.name),
            name: r.name,
            builtin: false,
            created_ms: Some(r.created_ms),
            created_by: Some(r.created_by),
        });
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRunner {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddedRunner {
    pub name: String,
    /// Shown once: only its hash is kept.
    pub token: String,
}

/// Runner names: what `--name` and the API path carry.
fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok && name != "built-in" {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_name",
            format!(
                "runner name `{}`: use letters, digits, `-`, `_` and `.` (at most 64; `built-in` is taken)",
                name.escape_debug()
            ),
        ))
    }
}

/// `POST /api/v1/runners` (admin): registers a runner and answers its
/// token, the only time it is shown.
pub async fn add(
    State(state): State<AppState>,
    Admin(admin): Admin,
    body: Result<Json<AddRunner>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<AddedRunner>), ApiError> {
    let body = json_body(body)?;
    check_name(&body.name)?;
    use chacha20poly1305::aead::{KeyInit, OsRng};
    let token = format!(
        "slrt_{}",
        hex::encode(chacha20poly1305::XChaCha20Poly1305::generate_key(
            &mut OsRng
        ))
    );
    let record = RunnerRecord {
        name: body.name.clone(),
        token_sha256: crate::store::token_hash(&token),
        created_ms: crate::ids::now_ms(),
        created_by: admin.user.clone(),
    };
    let store = state.store.clone();
    let added = tokio::task::spawn_blocking(move || store.add_runner(&record))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !added {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!(
                "a runner named `{}` exists; remove it first to issue a new token",
                body.name
            ),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(AddedRunner {
            name: body.name,
            token,
        }),
    ))
}

/// `DELETE /api/v1/runners/{name}` (admin): its token stops working; runs
/// it holds are interrupted when their lease runs out.
pub async fn remove(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = state.store.clone();
    let n = name.clone();
    let removed = tokio::task::spawn_blocking(move || store.remove_runner(&n))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    if !removed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no runner is named `{name}` (see `slipway runners ls`)"),
        ));
    }
    state.dispatch.forget(&name);
    Ok(StatusCode::NO_CONTENT)
}

/// The run's cache scope, if this runner holds it under this epoch.
fn scope_of(
    state: &AppState,
    runner: &RunnerRecord,
    run_id: &str,
    epoch: u64,
) -> Result<slipway_runner::cache::CacheScope, ApiError> {
    match state.dispatch.cache_scope(run_id, &runner.name, epoch) {
        None => Err(fenced(run_id)),
        Some(None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_scope",
            "this run's cache scope is not known since the server restarted: caches stay on the runner",
        )),
        Some(Some(scope)) => Ok(scope),
    }
}

fn cache_store(
    state: &AppState,
) -> Result<std::sync::Arc<slipway_runner::cache::CacheStore>, ApiError> {
    state.cache.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_cache",
            "directory caches are off on this server",
        )
    })
}

/// `POST /api/v1/runner/cache/lookup`
pub async fn cache_lookup(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    body: Result<Json<crate::protocol::CacheLookup>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let ask = json_body(body)?;
    let scope = scope_of(&state, &runner, &ask.run_id, ask.epoch)?;
    let store = cache_store(&state)?;
    let hit = tokio::task::spawn_blocking(move || {
        store.lookup(
            &scope.read,
            &ask.key,
            &ask.prefixes,
            |w| tracing::warn!(warning = %w, "shared cache"),
        )
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(match hit {
        Some(hit) => Json(hit.entry().clone()).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `GET /api/v1/runner/cache/blob/{blob}`: only a blob an entry of a
/// scope the run may read points at.
pub async fn cache_blob(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(blob): Path<String>,
    Query(run): Query<crate::protocol::RunFile>,
) -> Result<Response, ApiError> {
    let scope = scope_of(&state, &runner, &run.run_id, run.epoch)?;
    let store = cache_store(&state)?;
    let wanted = blob.clone();
    let readable = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            store.list().map(|all| {
                all.iter()
                    .any(|e| e.blob == wanted && scope.read.contains(&e.scope))
            })
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
    };
    if !readable {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no cache entry this run may read has that blob",
        ));
    }
    let file = tokio::fs::File::open(store.blob_path(&blob))
        .await
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "blob gone"))?;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok(axum::body::Body::from_stream(stream).into_response())
}

/// Streams a request body into `dest`, hashing it; refuses it unless
/// its sha256 is the one the header announced.
async fn receive(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    dest: &std::path::Path,
) -> Result<String, ApiError> {
    use futures_util::StreamExt;
    use sha2::Digest;
    use tokio::io::AsyncWriteExt;
    let announced = headers
        .get(crate::protocol::SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "no_digest",
                format!(
                    "send the body's sha256 in `{}`",
                    crate::protocol::SHA256_HEADER
                ),
            )
        })?;
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(ApiError::internal)?;
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(ApiError::internal)?;
    let mut hasher = sha2::Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "body", format!("upload cut: {e}"))
        })?;
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    let got = hex::encode(hasher.finalize());
    if got != announced {
        let _ = tokio::fs::remove_file(dest).await;
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "digest_mismatch",
            format!("the body's sha256 is {got}, not the announced {announced}"),
        ));
    }
    Ok(got)
}

/// `PUT /api/v1/runner/cache/entry?run_id=&epoch=&key=`: a cache a
/// remote run saved, kept in that run's write scope (an untrusted run has
/// none and shares nothing).
pub async fn cache_put(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Query(run): Query<crate::protocol::RunFile>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let scope = scope_of(&state, &runner, &run.run_id, run.epoch)?;
    let Some(write) = scope.write else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "untrusted",
            "this run is untrusted: it saves no cache another run could read",
        ));
    };
    let key = run
        .key
        .filter(|k| !k.is_empty() && k.len() <= 512)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no_key", "pass `key`"))?;
    let store = cache_store(&state)?;
    let temp = store.temp_path("upload");
    receive(&headers, body, &temp).await?;
    tokio::task::spawn_blocking(move || store.save(&write, &key, &temp))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(StatusCode::CREATED)
}

/// `PUT /api/v1/runner/artifacts/{step}?run_id=&epoch=`: a step's
/// artifacts as a tar, unpacked where the server keeps the run's artifacts.
pub async fn artifacts_put(
    State(state): State<AppState>,
    RunnerAuth(runner): RunnerAuth,
    Path(step): Path<String>,
    Query(run): Query<crate::protocol::RunFile>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    // Artifacts need the lease only, not a cache scope.
    if state
        .dispatch
        .cache_scope(&run.run_id, &runner.name, run.epoch)
        .is_none()
    {
        return Err(fenced(&run.run_id));
    }
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !plain(&step) || !plain(&run.run_id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_step",
            "step and run are plain names",
        ));
    }
    let dir = state.artifacts_root.join(&run.run_id).join(&step);
    let temp = state.artifacts_root.join(format!(
        ".upload-{}-{step}-{}",
        run.run_id,
        crate::ids::new_run_id()
    ));
    receive(&headers, body, &temp).await?;
    let unpacked = tokio::task::spawn_blocking(move || {
        let result = std::fs::create_dir_all(&dir).and_then(|()| {
            let file = std::fs::File::open(&temp)?;
            // `unpack` keeps every entry inside `dir` (no `..`, no absolute paths).
            tar::Archive::new(file).unpack(&dir)
        });
        let _ = std::fs::remove_file(&temp);
        result
    })
    .await
    .map_err(ApiError::internal)?;
    unpacked.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_archive",
            format!("cannot unpack the artifacts: {e}"),
        )
    })?;
    Ok(StatusCode::CREATED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::app;
    use crate::http::tests::test_state;
    use crate::store::{Lease, RunRecord, RunStatus};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn post(
        state: &AppState,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::post(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn line(text: &str) -> serde_json::Value {
        serde_json::json!({ "event": "log", "step": "s", "stream": "Stdout", "line": text })
    }

    #[tokio::test]
    async fn a_retried_batch_is_stored_once_and_another_epoch_is_fenced() {
        let (state, dir) = test_state("");
        let token = "slrt_test-token";
        state
            .store
            .add_runner(&RunnerRecord {
                name: "r1".into(),
                token_sha256: crate::store::token_hash(token),
                created_ms: 0,
                created_by: "ada".into(),
            })
            .unwrap();
        let mut run = RunRecord::new(
            "run1",
            "p",
            ".slipway.yml",
            "push",
            None,
            RunStatus::Running,
        );
        run.lease = Some(Lease {
            runner: "r1".into(),
            epoch: 5,
            acked: 0,
        });
        state.store.put_run(&run).unwrap();
        state.dispatch.hold(
            "run1",
            "r1",
            5,
            crate::runs::dispatch::Recording {
                recorder: crate::runs::record::Recorder::new(state.store.clone(), "run1"),
                acked: 0,
            },
            None,
        );
        let batch = |first: u64, lines: &[&str], epoch: u64| {
            serde_json::json!({
                "run_id": "run1", "epoch": epoch, "first": first,
                "events": lines.iter().map(|l| line(l)).collect::<Vec<_>>()
            })
        };
        let events = "/api/v1/runner/events";
        let (status, body) = post(&state, events, token, batch(0, &["one", "two"], 5)).await;
        assert_eq!((status, body["acked"].as_u64()), (StatusCode::OK, Some(2)));
        // The same batch again (its answer was lost): nothing new stored.
        let (_, body) = post(&state, events, token, batch(0, &["one", "two"], 5)).await;
        assert_eq!(body["acked"], 2);
        // Overlapping: only the new tail is stored.
        let (_, body) = post(&state, events, token, batch(1, &["two", "three"], 5)).await;
        assert_eq!(body["acked"], 3);
        // A gap: nothing stored, told where to resume.
        let (_, body) = post(&state, events, token, batch(7, &["eight"], 5)).await;
        assert_eq!(body["acked"], 3);
        assert_eq!(
            state.store.read_log("run1", "s").unwrap(),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            state
                .store
                .get_run("run1")
                .unwrap()
                .unwrap()
                .lease
                .unwrap()
                .acked,
            3
        );
        // An old epoch is fenced, and stores nothing.
        let (status, body) = post(&state, events, token, batch(3, &["stale"], 4)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let (_, reply) = post(
            &state,
            "/api/v1/runner/heartbeat",
            token,
            serde_json::json!({ "labels": [], "capacity": 1, "version": "t", "runs": [{ "run_id": "run1", "epoch": 4 }] }),
        )
        .await;
        assert_eq!(reply["fenced"], serde_json::json!(["run1"]));
        // An unknown token gets nothing.
        let (status, _) = post(&state, events, "slrt_nope", batch(3, &["x"], 5)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            state.store.read_log("run1", "s").unwrap(),
            "one\ntwo\nthree\n"
        );
        drop(state);
        let _ = std::fs::remove_dir_all(dir);
    }
}
