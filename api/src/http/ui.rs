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
    /// Where it lies under `assets/ui/`.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the tests match it to the files on disk")
    )]
    file: &'static str,
    body: &'static str,
    content_type: &'static str,
}

/// A file of `assets/ui/`, served under `/ui/`.
macro_rules! ui_file {
    ($file:literal, $content_type:expr) => {
        Asset {
            path: concat!("/ui/", $file),
            file: $file,
            body: include_str!(concat!("../../assets/ui/", $file)),
            content_type: $content_type,
        }
    };
}

// Modules must come as JavaScript, or the browser refuses them.
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `assets/ui/` but its tests (`test/`); a unit test below
/// fails when one is missing, so a new module cannot be forgotten here.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        file: "index.html",
        body: include_str!("../../assets/ui/index.html"),
        content_type: "text/html; charset=utf-8",
    },
    ui_file!("app.css", "text/css; charset=utf-8"),
    ui_file!("icon.svg", "image/svg+xml"),
    // The page's native ES modules; app.js imports the rest.
    ui_file!("app.js", JS),
    ui_file!("router.js", JS),
    ui_file!("api.js", JS),
    ui_file!("sse.js", JS),
    ui_file!("dom.js", JS),
    ui_file!("format.js", JS),
    ui_file!("status.js", JS),
    ui_file!("ansi.js", JS),
    ui_file!("graph-layout.js", JS),
    ui_file!("graph.js", JS),
    ui_file!("log-view.js", JS),
    ui_file!("log.js", JS),
    ui_file!("pages/sign-in.js", JS),
    ui_file!("pages/runs.js", JS),
    ui_file!("pages/run.js", JS),
    ui_file!("pages/environments.js", JS),
    ui_file!("pages/previews.js", JS),
    ui_file!("pages/secrets.js", JS),
    ui_file!("pages/runners.js", JS),
    ui_file!("secret-form.js", JS),
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
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::{ASSETS, JS};
    use crate::http::app;
    use crate::http::tests::test_state;

    fn ui_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets")
            .join("ui")
    }

    /// Files under `dir`, as paths relative to `root` with `/`.
    fn files(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }

    /// `spec` (`./x.js`, `../x.js`) as imported by the module at `from`.
    fn resolve(from: &str, spec: &str) -> String {
        let mut parts: Vec<&str> = from.split('/').collect();
        parts.pop();
        for seg in spec.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop();
                }
                _ => parts.push(seg),
            }
        }
        parts.join("/")
    }

    #[test]
    fn every_file_of_the_ui_is_served_as_itself() {
        let root = ui_dir();
        let mut found = Vec::new();
        files(&root, &root, &mut found);
        // The page never loads its tests.
        found.retain(|f| !f.starts_with("test/"));
        assert!(found.len() >= ASSETS.len(), "{found:?}");
        for file in &found {
            let asset = ASSETS.iter().find(|a| a.file == file).unwrap_or_else(|| {
                panic!("api/assets/ui/{file} is not served: add it to ASSETS in api/src/http/ui.rs")
            });
            let on_disk = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(asset.body == on_disk, "{file} is served from another file");
            if file.ends_with(".js") {
                assert_eq!(asset.content_type, JS, "{file}");
            }
        }
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served = |path: &str| ASSETS.iter().any(|a| a.path == path);
        let index = ASSETS.iter().find(|a| a.path == "/").unwrap();
        assert!(
            index
                .body
                .contains(r#"<script type="module" src="/ui/app.js">"#)
        );
        let mut imports = 0;
        for module in ASSETS.iter().filter(|a| a.file.ends_with(".js")) {
            // Imports are `import ... from "./x.js";`, possibly over several
            // lines, the last of which starts with `} from`.
            for line in module.body.lines().map(str::trim) {
                if !(line.starts_with("import ") || line.starts_with("} from ")) {
                    continue;
                }
                let Some((_, spec)) = line.split_once(" from \"") else {
                    continue;
                };
                let spec = spec.split('"').next().unwrap();
                let target = resolve(module.path, spec);
                assert!(
                    served(&target),
                    "{} imports {spec} ({target}), which is not served",
                    module.file
                );
                imports += 1;
            }
        }
        assert!(imports > 10, "imports not found: {imports}");
    }

    #[test]
    fn the_page_preloads_every_module_it_loads() {
        let index = ASSETS.iter().find(|a| a.path == "/").unwrap();
        for module in ASSETS.iter().filter(|a| a.file.ends_with(".js")) {
            let tag = if module.file == "app.js" {
                format!(r#"<script type="module" src="{}">"#, module.path)
            } else {
                format!(r#"<link rel="modulepreload" href="{}">"#, module.path)
            };
            assert!(index.body.contains(&tag), "index.html lacks {tag}");
        }
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_body() {
        let (state, dir) = test_state("");
        for asset in ASSETS {
            let resp = app(state.clone())
                .oneshot(Request::get(asset.path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{}", asset.path);
            assert_eq!(
                resp.headers()[header::CONTENT_TYPE].to_str().unwrap(),
                asset.content_type,
                "{}",
                asset.path
            );
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(body == asset.body.as_bytes(), "{}", asset.path);
        }
        drop(state);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The pure modules' fast tests (`assets/ui/test/*.test.mjs`) run with
    /// the crate's, under Node.js's own test runner.
    #[test]
    fn the_ui_modules_pass_their_node_tests() {
        let dir = ui_dir().join("test");
        // Files, not the folder: node's reading of a folder argument
        // changed between versions.
        let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".test.mjs"))
            .collect();
        tests.sort();
        assert!(!tests.is_empty(), "no *.test.mjs in {}", dir.display());
        let out = match Command::new("node").arg("--test").args(&tests).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`node` is not installed: the web UI's module tests need Node.js \
                 (Debian: apt-get install nodejs)"
            ),
            Err(e) => panic!("cannot run node: {e}"),
        };
        assert!(
            out.status.success(),
            "node --test {} failed ({}):\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

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
