//! The web UI: a few static files embedded in the binary and served from
//! `/`. The page speaks only the public `/api/v1` with the user's token, so
//! it can do nothing a CLI user with the same token could not.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::http::AppState;

struct Asset {
    path: &'static str,
    body: &'static str,
    content_type: &'static str,
}

const ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        body: include_str!("../../assets/ui/index.html"),
        content_type: "text/html; charset=utf-8",
    },
    Asset {
        path: "/ui/app.js",
        body: include_str!("../../assets/ui/app.js"),
        content_type: "text/javascript; charset=utf-8",
    },
    Asset {
        path: "/ui/app.css",
        body: include_str!("../../assets/ui/app.css"),
        content_type: "text/css; charset=utf-8",
    },
    Asset {
        path: "/ui/icon.svg",
        body: include_str!("../../assets/ui/icon.svg"),
        content_type: "image/svg+xml",
    },
];

/// Everything comes from this origin; no inline script, so an injected
/// string in a log or a branch name cannot run.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    ASSETS
        .iter()
        .enumerate()
        .fold(Router::new(), |router, (i, asset)| {
            router.route(
                asset.path,
                get(move |h: HeaderMap| async move { serve(i, &h) }),
            )
        })
}

/// Assets change only with the binary, so their hash is a strong ETag and
/// a browser revalidates cheaply instead of caching a stale page.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = Sha256::digest(a.body.as_bytes());
                let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })[i]
}

fn serve(i: usize, request: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let tag = etag(i);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // `*`, or the tag, strong or weak (a proxy may weaken it).
            v.split(',')
                .map(|t| t.trim())
                .any(|t| t == "*" || t.trim_start_matches("W/") == tag)
        });
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::http::app;
    use crate::http::tests::test_state;

    #[tokio::test]
    async fn the_page_is_served_with_its_policy_and_revalidates_by_etag() {
        let (state, dir) = test_state("");
        let resp = app(state.clone())
            .oneshot(Request::get("/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("/ui/app.js"));

        let resp = app(state.clone())
            .oneshot(Request::get("/ui/app.js").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        let tag = resp.headers()[header::ETAG].clone();
        let resp = app(state.clone())
            .oneshot(
                Request::get("/ui/app.js")
                    .header(header::IF_NONE_MATCH, tag.clone())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        // Another asset's tag does not match this one.
        let resp = app(state.clone())
            .oneshot(
                Request::get("/ui/app.css")
                    .header(header::IF_NONE_MATCH, tag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        drop(state);
        let _ = std::fs::remove_dir_all(dir);
    }
}
