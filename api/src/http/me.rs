//! `/api/v1/me` and `/api/v1/repos`: what a client needs to know to show a
//! user only the actions they may take, and where to look.

use axum::Json;
use axum::extract::State;

use serde::Serialize;

use crate::config::Scope;
use crate::http::auth::Reader;
use crate::http::{ApiError, AppState};

#[derive(Debug, Serialize)]
pub struct Me {
    pub user: String,
    /// `read`, `write` or `admin`: write may cancel, rerun, trigger, request
    /// promotions and delete previews.
    pub scope: &'static str,
    /// Environments whose promotions this user may approve or reject
    /// (approving also needs a write token).
    pub approver_of: Vec<ApproverOf>,
    /// Repositories whose secrets it may manage (an admin's: all).
    pub maintains: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ApproverOf {
    pub repo: String,
    pub environment: String,
}

/// `GET /api/v1/me`: the token's user, scope, and approver roles.
pub async fn me(
    State(state): State<AppState>,
    Reader(token): Reader,
) -> Result<Json<Me>, ApiError> {
    let approver_of = state
        .config
        .repos
        .iter()
        .flat_map(|r| {
            r.environments
                .iter()
                .filter(|e| e.approvers.contains(&token.user))
                .map(|e| ApproverOf {
                    repo: r.name.clone(),
                    environment: e.name.clone(),
                })
        })
        .collect();
    let maintains = state
        .config
        .repos
        .iter()
        .filter(|r| token.scope >= Scope::Admin || token.maintains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    Ok(Json(Me {
        maintains,
        scope: scope_name(token.scope),
        user: token.user,
        approver_of,
    }))
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => "read",
        Scope::Write => "write",
        Scope::Admin => "admin",
    }
}

#[derive(Debug, Serialize)]
pub struct RepoView {
    pub name: String,
    pub provider: String,
    pub default_branch: Option<String>,
    /// In promotion order, as configured.
    pub environments: Vec<String>,
}

/// `GET /api/v1/repos`: the configured repositories (no secrets).
pub async fn repos(
    State(state): State<AppState>,
    _: Reader,
) -> Result<Json<Vec<RepoView>>, ApiError> {
    Ok(Json(
        state
            .config
            .repos
            .iter()
            .map(|r| RepoView {
                name: r.name.clone(),
                provider: format!("{:?}", r.provider).to_lowercase(),
                default_branch: r.default_branch.clone(),
                environments: r.environments.iter().map(|e| e.name.clone()).collect(),
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::http::app;
    use crate::http::tests::test_state;

    const EXTRA: &str = "[[repos.environments]]
name = \"staging\"
image = \"r/octo/web\"
tag = \"staging\"
auto = true
approvals = 1
approvers = [\"alice\"]
[[repos.environments]]
name = \"prod\"
image = \"r/octo/web\"
tag = \"prod\"
from = \"staging\"
approvals = 1
approvers = [\"bob\"]
[[tokens]]
user = \"alice\"
token = \"alice-token-0123456789\"
scope = \"write\"
[[tokens]]
user = \"rita\"
token = \"rita-token-0123456789x\"
scope = \"read\"
";

    async fn get(
        state: &crate::http::AppState,
        path: &str,
        token: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::get(path)
            .header("Authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[tokio::test]
    async fn me_names_the_user_scope_and_environments_they_approve() {
        let (state, dir) = test_state(EXTRA);
        let (status, me) = get(&state, "/api/v1/me", "alice-token-0123456789").await;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(
            me,
            serde_json::json!({
                "user": "alice",
                "scope": "write",
                "approver_of": [{"repo": "Octocoders/Hello-World", "environment": "staging"}],
                "maintains": [],
            })
        );
        let (_, me) = get(&state, "/api/v1/me", "rita-token-0123456789x").await;
        assert_eq!(me["scope"], "read");
        assert_eq!(me["approver_of"], serde_json::json!([]));
        let (status, _) = get(&state, "/api/v1/me", "nobody").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        drop(state);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn repos_list_environments_in_order_and_no_secrets() {
        let (state, dir) = test_state(EXTRA);
        let (status, repos) = get(&state, "/api/v1/repos", "rita-token-0123456789x").await;
        assert_eq!(status, StatusCode::OK, "{repos}");
        assert_eq!(repos[0]["name"], "Codertocat/Hello-World");
        assert_eq!(repos[0]["environments"], serde_json::json!([]));
        assert_eq!(
            repos[1]["environments"],
            serde_json::json!(["staging", "prod"])
        );
        assert_eq!(repos[1]["provider"], "github");
        let text = repos.to_string();
        assert!(
            !text.contains("secret") && !text.contains("nowhere"),
            "{text}"
        );
        drop(state);
        let _ = std::fs::remove_dir_all(dir);
    }
}
