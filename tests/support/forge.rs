//! One fake forge: the parts of GitHub's REST API that Slipway calls,
//! served on loopback (a repository's `api_url`). It answers as GitHub
//! does, in the shapes octocrab reads, and records every request it gets,
//! refused or not, for the test to read:
//!
//! - commit statuses (`POST /repos/{o}/{r}/statuses/{sha}`);
//! - deployments (`POST /repos/{o}/{r}/deployments`, ids from 5000) and
//!   their statuses (`POST .../deployments/{id}/statuses`);
//! - issue comments: created (`POST /repos/{o}/{r}/issues/{n}/comments`,
//!   ids from 1000), edited (`PATCH .../issues/comments/{id}`; octocrab
//!   sends POST) and listed (`GET .../issues/{n}/comments`);
//! - anything else, answered 404.
//!
//! [`FakeForge::refusing_first`] makes it answer the first N requests
//! with 503 `unavailable`, as an outage.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::github_fixture;

/// What a request asked for, as the fake understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    CommitStatus {
        repo: String,
        sha: String,
    },
    /// `id` is 0 when the request was refused.
    Deployment {
        id: u64,
        sha: String,
        environment: String,
    },
    DeploymentStatus {
        deployment: u64,
        state: String,
        /// `environment_url`, or empty.
        url: String,
    },
    /// `id` is 0 when the request was refused.
    CommentCreated {
        issue: u64,
        id: u64,
        body: String,
    },
    CommentEdited {
        id: u64,
        body: String,
    },
    CommentsListed {
        issue: u64,
    },
    /// A request the fake does not serve (answered 404).
    Other,
}

/// One request the fake forge received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Authorization` header, or empty.
    pub auth: String,
    /// The JSON body (null if none).
    pub body: Value,
    pub call: Call,
    /// Answered 503, as one of the first N of [`FakeForge::refusing_first`].
    pub refused: bool,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Request>,
    /// How many more requests to refuse.
    refuse: usize,
    /// (issue, id, body) of the comments that exist.
    comments: Vec<(u64, u64, String)>,
    deployments: u64,
}

/// The fake forge; it serves until the test's runtime ends.
pub struct FakeForge {
    /// Its base URL, `http://127.0.0.1:<port>`: a repository's `api_url`.
    pub url: String,
    seen: Arc<Mutex<Seen>>,
}

impl FakeForge {
    pub async fn start() -> FakeForge {
        FakeForge::refusing_first(0).await
    }

    /// A forge whose first `n` requests are answered 503 (`usize::MAX`:
    /// all of them).
    pub async fn refusing_first(n: usize) -> FakeForge {
        let seen = Arc::new(Mutex::new(Seen {
            refuse: n,
            ..Seen::default()
        }));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeForge { url, seen }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().requests.clone()
    }

    /// What the requests it answered (not refused) asked for, in order.
    pub fn calls(&self) -> Vec<Call> {
        let seen = self.seen.lock().unwrap();
        let answered = seen.requests.iter().filter(|r| !r.refused);
        answered.map(|r| r.call.clone()).collect()
    }

    /// Every commit status request, refused or not: (`owner/repo@sha`,
    /// its `Authorization`, its body).
    pub fn commit_statuses(&self) -> Vec<(String, String, Value)> {
        let seen = self.seen.lock().unwrap();
        let statuses = seen.requests.iter().filter_map(|r| match &r.call {
            Call::CommitStatus { repo, sha } => {
                Some((format!("{repo}@{sha}"), r.auth.clone(), r.body.clone()))
            }
            _ => None,
        });
        statuses.collect()
    }

    /// The `state` of each commit status request, refused or not.
    pub fn commit_states(&self) -> Vec<String> {
        let statuses = self.commit_statuses().into_iter();
        let state = |body: Value| body["state"].as_str().unwrap_or("?").to_string();
        statuses.map(|(_, _, body)| state(body)).collect()
    }

    /// Deployments made: (id, `"<sha> <environment>"`).
    pub fn deployments(&self) -> Vec<(u64, String)> {
        let made = self.calls().into_iter().filter_map(|c| match c {
            Call::Deployment {
                id,
                sha,
                environment,
            } => Some((id, format!("{sha} {environment}"))),
            _ => None,
        });
        made.collect()
    }

    /// Deployment statuses set: (deployment id, `"<state> <environment_url>"`).
    pub fn deployment_statuses(&self) -> Vec<(u64, String)> {
        let set = self.calls().into_iter().filter_map(|c| match c {
            Call::DeploymentStatus {
                deployment,
                state,
                url,
            } => Some((deployment, format!("{state} {url}"))),
            _ => None,
        });
        set.collect()
    }

    /// The states set on the deployments of `sha` to `environment`, in order.
    pub fn deployment_states(&self, sha: &str, environment: &str) -> Vec<String> {
        let target = format!("{sha} {environment}");
        let ids: Vec<u64> = (self.deployments().into_iter())
            .filter(|(_, t)| *t == target)
            .map(|(id, _)| id)
            .collect();
        (self.deployment_statuses().into_iter())
            .filter(|(id, _)| ids.contains(id))
            .map(|(_, what)| what.trim().to_string())
            .collect()
    }
}

/// The one handler: records the request, then answers it.
async fn answer(
    State(seen): State<Arc<Mutex<Seen>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut seen = seen.lock().unwrap();
    let refused = seen.refuse > 0;
    seen.refuse = seen.refuse.saturating_sub(1);
    let (call, answer) = route(&mut seen, &method, uri.path(), &body, refused);
    seen.requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        auth,
        body,
        call,
        refused,
    });
    if refused {
        let unavailable = json!({"message": "unavailable"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(unavailable));
    }
    answer
}

/// What the request asks for and, unless `refused` (then nothing
/// changes), GitHub's answer to it.
fn route(
    seen: &mut Seen,
    method: &Method,
    path: &str,
    body: &Value,
    refused: bool,
) -> (Call, (StatusCode, axum::Json<Value>)) {
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_string();
    let number = |s: &str| s.parse::<u64>().unwrap_or(0);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let post = method == Method::POST;
    let (owner, repo, rest) = match segments.as_slice() {
        ["repos", owner, repo, rest @ ..] => (*owner, *repo, rest),
        _ => return (Call::Other, not_found()),
    };
    let created = |v: Value| (StatusCode::CREATED, axum::Json(v));
    match rest {
        ["statuses", sha] if post => {
            let call = Call::CommitStatus {
                repo: format!("{owner}/{repo}"),
                sha: sha.to_string(),
            };
            (call, created(body.clone()))
        }
        ["deployments"] if post => {
            let (sha, environment) = (text("ref"), text("environment"));
            let id = if refused {
                0
            } else {
                seen.deployments += 1;
                4999 + seen.deployments
            };
            let answer = created(deployment(id, &sha, &environment));
            let call = Call::Deployment {
                id,
                sha,
                environment,
            };
            (call, answer)
        }
        ["deployments", id, "statuses"] if post => {
            let (deployment, state) = (number(id), text("state"));
            let answer = created(deployment_status(deployment, &state));
            let url = text("environment_url");
            let call = Call::DeploymentStatus {
                deployment,
                state,
                url,
            };
            (call, answer)
        }
        ["issues", "comments", id] if post || method == Method::PATCH => {
            let (id, body) = (number(id), text("body"));
            if !refused && let Some(c) = seen.comments.iter_mut().find(|c| c.1 == id) {
                c.2 = body.clone();
            }
            let answer = (StatusCode::OK, axum::Json(comment(id, &body)));
            (Call::CommentEdited { id, body }, answer)
        }
        ["issues", n, "comments"] if post => {
            let (issue, body) = (number(n), text("body"));
            let id = if refused {
                0
            } else {
                let id = 1000 + seen.comments.len() as u64;
                seen.comments.push((issue, id, body.clone()));
                id
            };
            let answer = created(comment(id, &body));
            (Call::CommentCreated { issue, id, body }, answer)
        }
        ["issues", n, "comments"] if method == Method::GET => {
            let issue = number(n);
            let on_issue = seen.comments.iter().filter(|c| c.0 == issue);
            let list: Vec<Value> = on_issue.map(|(_, id, b)| comment(*id, b)).collect();
            let answer = (StatusCode::OK, axum::Json(Value::Array(list)));
            (Call::CommentsListed { issue }, answer)
        }
        _ => (Call::Other, not_found()),
    }
}

fn not_found() -> (StatusCode, axum::Json<Value>) {
    let body = json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"});
    (StatusCode::NOT_FOUND, axum::Json(body))
}

const AT: &str = "2026-11-21T00:00:00Z";

/// An issue comment as GitHub returns it, by the fixtures' user.
fn comment(id: u64, body: &str) -> Value {
    let fixture = github_fixture("pull_request.opened.json");
    let user = serde_json::from_str::<Value>(&fixture).unwrap()["sender"].clone();
    json!({
        "id": id, "node_id": "IC_test", "url": format!("http://fake/comments/{id}"),
        "html_url": format!("http://fake/comments/{id}"), "body": body, "user": user,
        "created_at": AT, "updated_at": AT
    })
}

fn deployment(id: u64, sha: &str, environment: &str) -> Value {
    json!({
        "url": format!("http://fake/deployments/{id}"), "id": id, "node_id": "D_test",
        "sha": sha, "ref": sha, "task": "deploy", "payload": {}, "environment": environment,
        "created_at": AT, "updated_at": AT,
        "statuses_url": format!("http://fake/deployments/{id}/statuses"),
        "repository_url": "http://fake/repo"
    })
}

fn deployment_status(deployment: u64, state: &str) -> Value {
    json!({
        "url": format!("http://fake/deployments/{deployment}/statuses/1"), "id": 1,
        "node_id": "DS_test", "state": state, "created_at": AT, "updated_at": AT,
        "deployment_url": format!("http://fake/deployments/{deployment}"),
        "repository_url": "http://fake/repo"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to the fake, off the async runtime: status and JSON body.
    async fn call(forge: &FakeForge, method: &str, path: &str, body: Value) -> (u16, Value) {
        let addr = forge.url.trim_start_matches("http://").to_string();
        let (method, path) = (method.to_string(), path.to_string());
        let (status, text) = tokio::task::spawn_blocking(move || {
            let auth = [("Authorization", "token t")];
            crate::http(&method, &addr, &path, &auth, body.to_string().as_bytes())
        })
        .await
        .unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn it_refuses_the_first_calls_then_keeps_what_it_is_sent() {
        let forge = FakeForge::refusing_first(1).await;
        let comments = "/repos/o/r/issues/2/comments";
        let (status, _) = call(&forge, "POST", comments, json!({"body": "lost"})).await;
        assert_eq!(status, 503);
        let (status, made) = call(&forge, "POST", comments, json!({"body": "one"})).await;
        assert_eq!((status, made["id"].as_u64()), (201, Some(1000)));
        let edit = "/repos/o/r/issues/comments/1000";
        let (status, _) = call(&forge, "PATCH", edit, json!({"body": "two"})).await;
        assert_eq!(status, 200);
        let (status, listed) = call(&forge, "GET", comments, Value::Null).await;
        assert_eq!(status, 200);
        assert_eq!(listed[0]["body"], "two", "{listed}");
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

        let made = json!({"ref": "abc", "environment": "prod"});
        let (status, d) = call(&forge, "POST", "/repos/o/r/deployments", made).await;
        assert_eq!((status, d["id"].as_u64()), (201, Some(5000)));
        let state = json!({"state": "success", "environment_url": "http://x/"});
        let path = "/repos/o/r/deployments/5000/statuses";
        assert_eq!(call(&forge, "POST", path, state).await.0, 201);
        let status = json!({"state": "pending", "context": "slipway"});
        assert_eq!(
            call(&forge, "POST", "/repos/o/r/statuses/abc", status)
                .await
                .0,
            201
        );
        assert_eq!(call(&forge, "GET", "/user", Value::Null).await.0, 404);

        assert_eq!(forge.requests().len(), 8);
        assert!(forge.requests().iter().all(|r| r.auth == "token t"));
        assert_eq!(forge.deployments(), [(5000, "abc prod".to_string())]);
        assert_eq!(
            forge.deployment_states("abc", "prod"),
            ["success http://x/"]
        );
        assert_eq!(forge.commit_states(), ["pending"]);
        let (target, _, body) = &forge.commit_statuses()[0];
        assert_eq!(
            (target.as_str(), &body["context"]),
            ("o/r@abc", &json!("slipway"))
        );
        assert_eq!(forge.calls().last(), Some(&Call::Other));
        assert_eq!(
            forge.calls()[..3],
            [
                Call::CommentCreated {
                    issue: 2,
                    id: 1000,
                    body: "one".into()
                },
                Call::CommentEdited {
                    id: 1000,
                    body: "two".into()
                },
                Call::CommentsListed { issue: 2 },
            ]
        );
    }
}
