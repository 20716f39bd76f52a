//! Forge webhooks: who sent it (signature), what it means (classification).
//! Pure functions over headers and body, so every rule is unit-tested with
//! the real bodies forges send.

use hmac::{Hmac, Mac};
use octocrab::models::webhook_events::payload::PullRequestWebhookEventAction;
use octocrab::models::webhook_events::{WebhookEvent, WebhookEventPayload};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Provider;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing signature header `{0}`")]
    MissingSignature(&'static str),
    #[error("signature does not match the body and the repository's webhook secret")]
    BadSignature,
    #[error("malformed webhook: {0}")]
    Malformed(String),
}

/// What a verified webhook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ping,
    Build(BuildRequest),
    /// No run, with the reason given back to the forge.
    Ignored(String),
    /// A pull (merge) request was closed or merged: no build; its preview
    /// goes.
    Closed {
        number: u64,
    },
}

/// A run to start, on one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// `push`, `tag` or `pull_request`.
    pub event: String,
    /// Full ref: `refs/heads/main`, `refs/tags/v1`, `refs/pull/2/head`.
    pub git_ref: String,
    pub sha: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// Boxed: most requests are pushes, and a verdict stays small.
    pub pull_request: Option<Box<PullRequestInfo>>,
    /// The forge login of who wrote the change (the head commit's author,
    /// else who pushed; a pull request's author), for the rule that nobody
    /// approves the promotion of their own work.
    pub author: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestInfo {
    pub number: u64,
    pub action: String,
    /// The branch the pull request wants to merge into.
    pub target_branch: String,
    pub from_fork: bool,
    /// The head repository (`owner/name`), when the forge names it: whose
    /// fork a pull request comes from.
    pub head_repo: Option<String>,
}

/// Header lookup, case-insensitive, so this module needs no HTTP types.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

/// What a body is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `owner/name`.
    Repository(String),
    /// An organization's own hook (its `ping`, its membership events):
    /// the body names the organization and no repository.
    Organization(String),
}

/// What a body is about: the repository (`owner/name`), else the
/// organization of an organization-wide hook.
pub fn subject(provider: Provider, body: &[u8]) -> Result<Subject, WebhookError> {
    #[derive(Deserialize)]
    struct Repo {
        full_name: Option<String>,
    }
    #[derive(Deserialize)]
    struct Project {
        path_with_namespace: Option<String>,
    }
    #[derive(Deserialize)]
    struct Organization {
        login: Option<String>,
        username: Option<String>,
    }
    #[derive(Deserialize)]
    struct Probe {
        repository: Option<Repo>,
        project: Option<Project>,
        organization: Option<Organization>,
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("body is not JSON: {e}")))?;
    let name = match provider {
        Provider::Gitlab => probe.project.and_then(|p| p.path_with_namespace),
        _ => probe.repository.and_then(|r| r.full_name),
    };
    if let Some(name) = name {
        return Ok(Subject::Repository(name));
    }
    probe
        .organization
        .and_then(|o| o.login.or(o.username))
        .filter(|o| !o.is_empty())
        .map(Subject::Organization)
        .ok_or_else(|| {
            WebhookError::Malformed("the body names no repository and no organization".into())
        })
}

/// Checks the body was signed with `secret`, in constant time.
pub fn verify(
    provider: Provider,
    secret: &str,
    headers: &dyn Headers,
    body: &[u8],
) -> Result<(), WebhookError> {
    match provider {
        Provider::Gitlab => {
            let token = headers
                .get("x-gitlab-token")
                .ok_or(WebhookError::MissingSignature("X-Gitlab-Token"))?;
            if bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
                Ok(())
            } else {
                Err(WebhookError::BadSignature)
            }
        }
        Provider::Github => {
            let sig = headers
                .get("x-hub-signature-256")
                .ok_or(WebhookError::MissingSignature("X-Hub-Signature-256"))?;
            let hex = sig
                .strip_prefix("sha256=")
                .ok_or(WebhookError::BadSignature)?;
            check_hmac(secret, hex, body)
        }
        Provider::Gitea | Provider::Forgejo => {
            let sig = headers
                .get("x-forgejo-signature")
                .or_else(|| headers.get("x-gitea-signature"))
                .ok_or(WebhookError::MissingSignature("X-Gitea-Signature"))?;
            check_hmac(secret, sig, body)
        }
    }
}

fn check_hmac(secret: &str, hex: &str, body: &[u8]) -> Result<(), WebhookError> {
    let expected = decode_hex(hex.trim()).ok_or(WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| WebhookError::BadSignature)
}

/// `sha256=<hex>` of `body` under `secret`, as GitHub signs (tests sign with it too).
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac takes any key");
    mac.update(body);
    format!("sha256={}", encode_hex(&mac.finalize().into_bytes()))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The forge's id for this delivery (the same on redelivery); a hash of the
/// body when the forge sends none.
pub fn delivery_id(provider: Provider, headers: &dyn Headers, body: &[u8]) -> String {
    let names: &[&str] = match provider {
        Provider::Github => &["x-github-delivery"],
        Provider::Gitea | Provider::Forgejo => &["x-forgejo-delivery", "x-gitea-delivery"],
        Provider::Gitlab => &["x-gitlab-event-uuid", "idempotency-key"],
    };
    names
        .iter()
        .find_map(|n| headers.get(n))
        .map(str::to_string)
        .unwrap_or_else(|| format!("body-{}", encode_hex(&Sha256::digest(body))))
}

/// The event name header.
pub fn event_name(provider: Provider, headers: &dyn Headers) -> Option<String> {
    let names: &[&str] = match provider {
        Provider::Github => &["x-github-event"],
        Provider::Gitea | Provider::Forgejo => &["x-forgejo-event", "x-gitea-event"],
        Provider::Gitlab => &["x-gitlab-event"],
    };
    names
        .iter()
        .find_map(|n| headers.get(n))
        .map(str::to_string)
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// What a verified webhook asks for. A build's commit id and ref are
/// checked here, before anything stores or runs them: a signed body can
/// still carry `--upload-pack=...` where a commit id belongs.
pub fn classify(provider: Provider, event: &str, body: &[u8]) -> Result<Verdict, WebhookError> {
    let verdict = match provider {
        Provider::Github => classify_github(event, body),
        Provider::Gitea | Provider::Forgejo => classify_gitea(event, body),
        Provider::Gitlab => classify_gitlab(event, body),
    }?;
    if let Verdict::Build(b) = &verdict {
        if !slipway_runner::git::is_object_id(&b.sha) {
            return Err(WebhookError::Malformed(format!(
                "`{event}` body: `{}` is not a commit id (40 or 64 lowercase hex digits)",
                b.sha.escape_debug()
            )));
        }
        if !slipway_runner::git::is_ref_name(&b.git_ref) {
            return Err(WebhookError::Malformed(format!(
                "`{event}` body: `{}` is not a git ref name",
                b.git_ref.escape_debug()
            )));
        }
    }
    Ok(verdict)
}

fn classify_github(event: &str, body: &[u8]) -> Result<Verdict, WebhookError> {
    let parsed = WebhookEvent::try_from_header_and_body(event, body)
        .map_err(|e| WebhookError::Malformed(format!("`{event}` body: {e}")))?;
    match parsed.specific {
        WebhookEventPayload::Ping(_) => Ok(Verdict::Ping),
        WebhookEventPayload::Push(push) => {
            let author = push
                .head_commit
                .as_ref()
                .and_then(|c| c.author.username.clone())
                .or_else(|| parsed.sender.as_ref().map(|s| s.login.clone()));
            Ok(push_verdict(&push.r#ref, &push.after, push.deleted, author))
        }
        WebhookEventPayload::PullRequest(pr) => {
            let action = serde_json::to_value(&pr.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", pr.action).to_lowercase());
            let build = matches!(
                pr.action,
                PullRequestWebhookEventAction::Opened
                    | PullRequestWebhookEventAction::Synchronize
                    | PullRequestWebhookEventAction::Reopened
            );
            if pr.action == PullRequestWebhookEventAction::Closed {
                return Ok(Verdict::Closed { number: pr.number });
            }
            if !build {
                return Ok(Verdict::Ignored(format!(
                    "pull request action `{action}` does not build"
                )));
            }
            let head = &pr.pull_request.head;
            let base = &pr.pull_request.base;
            let head_repo = head.repo.as_ref().and_then(|r| r.full_name.clone());
            let base_repo = base.repo.as_ref().and_then(|r| r.full_name.clone());
            Ok(Verdict::Build(BuildRequest {
                event: "pull_request".into(),
                git_ref: format!("refs/pull/{}/head", pr.number),
                sha: head.sha.clone(),
                branch: Some(head.ref_field.clone()),
                tag: None,
                pull_request: Some(Box::new(PullRequestInfo {
                    number: pr.number,
                    action,
                    target_branch: base.ref_field.clone(),
                    // A deleted fork's head names no repository: it is
                    // still someone else's code.
                    from_fork: head_repo.is_none() || head_repo != base_repo,
                    head_repo,
                })),
                author: pr.pull_request.user.as_ref().map(|u| u.login.clone()),
            }))
        }
        _ => Ok(Verdict::Ignored(format!("event `{event}` does not build"))),
    }
}

fn push_verdict(git_ref: &str, after: &str, deleted: bool, author: Option<String>) -> Verdict {
    if deleted || after == ZERO_SHA {
        return Verdict::Ignored(format!("`{git_ref}` was deleted: nothing to build"));
    }
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        Verdict::Build(BuildRequest {
            event: "push".into(),
            git_ref: git_ref.into(),
            sha: after.into(),
            branch: Some(branch.into()),
            tag: None,
            pull_request: None,
            author,
        })
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        Verdict::Build(BuildRequest {
            event: "tag".into(),
            git_ref: git_ref.into(),
            sha: after.into(),
            branch: None,
            tag: Some(tag.into()),
            pull_request: None,
            author,
        })
    } else {
        Verdict::Ignored(format!(
            "push to `{git_ref}`, which is neither a branch nor a tag"
        ))
    }
}

/// Gitea and Forgejo send GitHub-shaped bodies; only the fields we use are read.
fn classify_gitea(event: &str, body: &[u8]) -> Result<Verdict, WebhookError> {
    /// Gitea's users carry both `login` and `username` (its documented
    /// bodies do); a commit's author only `username`. One serde alias
    /// cannot take both: it answers "duplicate field".
    #[derive(Deserialize)]
    struct Login {
        login: Option<String>,
        username: Option<String>,
    }
    impl Login {
        fn name(self) -> Option<String> {
            self.login.filter(|l| !l.is_empty()).or(self.username)
        }
    }
    #[derive(Deserialize)]
    struct Commit {
        author: Option<Login>,
    }
    #[derive(Deserialize)]
    struct Push {
        r#ref: String,
        after: String,
        #[serde(default)]
        deleted: bool,
        head_commit: Option<Commit>,
        pusher: Option<Login>,
    }
    #[derive(Deserialize)]
    struct Branch {
        r#ref: String,
        sha: String,
        repo_id: Option<u64>,
        repo: Option<Repository>,
    }
    #[derive(Deserialize)]
    struct Repository {
        full_name: Option<String>,
    }
    #[derive(Deserialize)]
    struct Pr {
        head: Branch,
        base: Branch,
        user: Option<Login>,
    }
    #[derive(Deserialize)]
    struct PrEvent {
        action: String,
        number: u64,
        pull_request: Pr,
    }
    let malformed = |e: serde_json::Error| WebhookError::Malformed(format!("`{event}` body: {e}"));
    match event {
        "push" => {
            let p: Push = serde_json::from_slice(body).map_err(malformed)?;
            let author = p
                .head_commit
                .and_then(|c| c.author)
                .and_then(Login::name)
                .or_else(|| p.pusher.and_then(Login::name));
            Ok(push_verdict(&p.r#ref, &p.after, p.deleted, author))
        }
        "pull_request" => {
            let p: PrEvent = serde_json::from_slice(body).map_err(malformed)?;
            match p.action.as_str() {
                "opened" | "synchronized" | "synchronize" | "reopened" => {
                    Ok(Verdict::Build(BuildRequest {
                        event: "pull_request".into(),
                        git_ref: format!("refs/pull/{}/head", p.number),
                        sha: p.pull_request.head.sha,
                        branch: Some(p.pull_request.head.r#ref),
                        tag: None,
                        pull_request: Some(Box::new(PullRequestInfo {
                            number: p.number,
                            action: p.action.clone(),
                            target_branch: p.pull_request.base.r#ref,
                            from_fork: p.pull_request.head.repo_id.is_none()
                                || p.pull_request.head.repo_id != p.pull_request.base.repo_id,
                            head_repo: p.pull_request.head.repo.and_then(|r| r.full_name),
                        })),
                        author: p.pull_request.user.and_then(Login::name),
                    }))
                }
                "closed" => Ok(Verdict::Closed { number: p.number }),
                other => Ok(Verdict::Ignored(format!(
                    "pull request action `{other}` does not build"
                ))),
            }
        }
        other => Ok(Verdict::Ignored(format!("event `{other}` does not build"))),
    }
}

fn classify_gitlab(event: &str, body: &[u8]) -> Result<Verdict, WebhookError> {
    #[derive(Deserialize)]
    struct Push {
        r#ref: String,
        after: String,
        user_username: Option<String>,
    }
    #[derive(Deserialize)]
    struct User {
        username: Option<String>,
    }
    #[derive(Deserialize)]
    struct Attrs {
        iid: u64,
        action: Option<String>,
        source_branch: String,
        target_branch: String,
        last_commit: Option<Commit>,
        source_project_id: Option<u64>,
        target_project_id: Option<u64>,
        source: Option<Project>,
    }
    #[derive(Deserialize)]
    struct Project {
        path_with_namespace: Option<String>,
    }
    #[derive(Deserialize)]
    struct Commit {
        id: String,
    }
    #[derive(Deserialize)]
    struct Mr {
        object_attributes: Attrs,
        user: Option<User>,
    }
    let malformed = |e: serde_json::Error| WebhookError::Malformed(format!("`{event}` body: {e}"));
    match event {
        "Push Hook" | "Tag Push Hook" => {
            let p: Push = serde_json::from_slice(body).map_err(malformed)?;
            Ok(push_verdict(&p.r#ref, &p.after, false, p.user_username))
        }
        "Merge Request Hook" => {
            let m: Mr = serde_json::from_slice(body).map_err(malformed)?;
            let author = m.user.and_then(|u| u.username);
            let a = m.object_attributes;
            let action = a.action.unwrap_or_default();
            match action.as_str() {
                "open" | "update" | "reopen" => {
                    let sha = a.last_commit.map(|c| c.id).ok_or_else(|| {
                        WebhookError::Malformed("merge request without last_commit".into())
                    })?;
                    Ok(Verdict::Build(BuildRequest {
                        event: "pull_request".into(),
                        git_ref: format!("refs/merge-requests/{}/head", a.iid),
                        sha,
                        branch: Some(a.source_branch),
                        tag: None,
                        pull_request: Some(Box::new(PullRequestInfo {
                            number: a.iid,
                            action,
                            target_branch: a.target_branch,
                            from_fork: a.source_project_id.is_none()
                                || a.source_project_id != a.target_project_id,
                            head_repo: a.source.and_then(|p| p.path_with_namespace),
                        })),
                        author,
                    }))
                }
                "close" | "merge" => Ok(Verdict::Closed { number: a.iid }),
                other => Ok(Verdict::Ignored(format!(
                    "merge request action `{other}` does not build"
                ))),
            }
        }
        other => Ok(Verdict::Ignored(format!("event `{other}` does not build"))),
    }
}

/// A forge's documented webhook body, `tests/fixtures/webhooks/<path>` in
/// the repository (sources and licences in the README there).
#[cfg(test)]
pub(crate) fn forge_fixture(path: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/webhooks")
        .join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// A real GitHub webhook body (octokit/webhooks' examples).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    forge_fixture(&format!("github/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct H(HashMap<String, String>);
    impl Headers for H {
        fn get(&self, name: &str) -> Option<&str> {
            self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
        }
    }
    fn headers(pairs: &[(&str, &str)]) -> H {
        H(pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect())
    }

    use crate::forge::webhook::fixture;

    #[test]
    fn github_signatures_are_checked_against_the_exact_body() {
        let body = fixture("push.branch-created.json");
        let good = sign_github("s3cret", &body);
        assert_eq!(
            verify(
                Provider::Github,
                "s3cret",
                &headers(&[("X-Hub-Signature-256", &good)]),
                &body
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Provider::Github,
                "other",
                &headers(&[("X-Hub-Signature-256", &good)]),
                &body
            ),
            Err(WebhookError::BadSignature)
        );
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(
            verify(
                Provider::Github,
                "s3cret",
                &headers(&[("X-Hub-Signature-256", &good)]),
                &tampered
            ),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify(Provider::Github, "s3cret", &headers(&[]), &body),
            Err(WebhookError::MissingSignature("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(
                Provider::Github,
                "s3cret",
                &headers(&[("X-Hub-Signature-256", "sha256=zz")]),
                &body
            ),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn gitea_and_gitlab_signatures() {
        let body = b"{\"a\":1}";
        let hex = sign_github("k", body)
            .trim_start_matches("sha256=")
            .to_string();
        assert_eq!(
            verify(
                Provider::Gitea,
                "k",
                &headers(&[("X-Gitea-Signature", &hex)]),
                body
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Provider::Forgejo,
                "k",
                &headers(&[("X-Forgejo-Signature", &hex)]),
                body
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Provider::Gitlab,
                "k",
                &headers(&[("X-Gitlab-Token", "k")]),
                body
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                Provider::Gitlab,
                "k",
                &headers(&[("X-Gitlab-Token", "x")]),
                body
            ),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn real_github_bodies_classify() {
        assert_eq!(
            classify(Provider::Github, "ping", &fixture("ping.json")),
            Ok(Verdict::Ping)
        );
        let Verdict::Build(push) = classify(
            Provider::Github,
            "push",
            &fixture("push.branch-created.json"),
        )
        .unwrap() else {
            panic!("push builds")
        };
        assert_eq!(push.event, "push");
        assert_eq!(push.branch.as_deref(), Some("master"));
        assert_eq!(push.sha, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert_eq!(
            push.author.as_deref(),
            Some("Codertocat"),
            "head commit's author"
        );
        for (file, action) in [
            ("pull_request.opened.json", "opened"),
            ("pull_request.synchronize.json", "synchronize"),
        ] {
            let Verdict::Build(pr) =
                classify(Provider::Github, "pull_request", &fixture(file)).unwrap()
            else {
                panic!("{file} builds")
            };
            let info = pr.pull_request.unwrap();
            assert_eq!(
                (
                    info.number,
                    info.action.as_str(),
                    info.target_branch.as_str()
                ),
                (2, action, "master")
            );
            assert_eq!(pr.git_ref, "refs/pull/2/head");
            assert_eq!(pr.branch.as_deref(), Some("changes"));
            assert_eq!(
                pr.author.as_deref(),
                Some("Codertocat"),
                "the pull request's author"
            );
            assert!(!info.from_fork);
            assert_eq!(info.head_repo.as_deref(), Some("Codertocat/Hello-World"));
        }
        assert_eq!(
            classify(
                Provider::Github,
                "pull_request",
                &fixture("pull_request.closed.json")
            ),
            Ok(Verdict::Closed { number: 2 })
        );
        assert_eq!(
            subject(Provider::Github, &fixture("push.branch-created.json")).unwrap(),
            Subject::Repository("Codertocat/Hello-World".into())
        );
    }

    #[test]
    fn deletions_tags_and_garbage() {
        let deleted = br#"{"ref":"refs/heads/x","before":"a","after":"0000000000000000000000000000000000000000","deleted":true}"#;
        assert_eq!(
            classify(Provider::Gitea, "push", deleted),
            Ok(Verdict::Ignored(
                "`refs/heads/x` was deleted: nothing to build".into()
            ))
        );
        let tag = br#"{"ref":"refs/tags/v1.0","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246"}"#;
        let Ok(Verdict::Build(b)) = classify(Provider::Gitlab, "Tag Push Hook", tag) else {
            panic!()
        };
        assert_eq!((b.event.as_str(), b.tag.as_deref()), ("tag", Some("v1.0")));
        assert!(matches!(
            classify(Provider::Github, "push", b"{\"ref\": 5}"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            subject(Provider::Github, b"not json"),
            Err(WebhookError::Malformed(_))
        ));
        assert_eq!(
            classify(Provider::Gitea, "issues", b"{}"),
            Ok(Verdict::Ignored("event `issues` does not build".into()))
        );
    }

    fn build(provider: Provider, event: &str, path: &str) -> BuildRequest {
        match classify(provider, event, &forge_fixture(path)) {
            Ok(Verdict::Build(b)) => b,
            other => panic!("{path}: expected a build, got {other:?}"),
        }
    }

    #[test]
    fn gitea_and_forgejo_documented_pushes_build_though_users_carry_login_and_username() {
        for (provider, path, owner) in [
            (Provider::Gitea, "gitea/push.json", "gitea"),
            (Provider::Forgejo, "forgejo/push.json", "forgejo"),
        ] {
            let body = forge_fixture(path);
            assert_eq!(
                subject(provider, &body),
                Ok(Subject::Repository(format!("{owner}/webhooks")))
            );
            let b = build(provider, "push", path);
            assert_eq!(
                (b.event.as_str(), b.git_ref.as_str(), b.branch.as_deref()),
                ("push", "refs/heads/develop", Some("develop"))
            );
            assert_eq!(b.sha, "bffeb74224043ba2feb48d137756c8a9331c449a");
            assert_eq!(b.author.as_deref(), Some(owner), "{path}: the pusher");
        }
    }

    #[test]
    fn a_gitea_pull_request_from_a_fork_builds_its_head() {
        let b = build(
            Provider::Gitea,
            "pull_request",
            "gitea/pull_request.opened.json",
        );
        assert_eq!(b.git_ref, "refs/pull/2/head");
        assert_eq!(b.sha, "48e773f892a831faa47c0a160d1b7f0cd369ae2a");
        assert_eq!(b.author.as_deref(), Some("example2"));
        let pr = b.pull_request.expect("a pull request");
        assert_eq!((pr.number, pr.target_branch.as_str()), (2, "master"));
        assert!(pr.from_fork, "head repo 2, base repo 1");
        assert_eq!(
            pr.head_repo.as_deref(),
            Some("example2/example"),
            "the fork's owner"
        );
    }

    #[test]
    fn gitlab_documented_push_tag_and_merge_request() {
        let push = forge_fixture("gitlab/push.json");
        assert_eq!(
            subject(Provider::Gitlab, &push),
            Ok(Subject::Repository("mike/diaspora".into()))
        );
        let b = build(Provider::Gitlab, "Push Hook", "gitlab/push.json");
        assert_eq!(
            (b.branch.as_deref(), b.sha.as_str(), b.author.as_deref()),
            (
                Some("master"),
                "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                Some("jsmith")
            )
        );
        let t = build(Provider::Gitlab, "Tag Push Hook", "gitlab/tag_push.json");
        assert_eq!(
            (t.event.as_str(), t.tag.as_deref(), t.author),
            ("tag", Some("v1.0.0"), None)
        );
        let mr = build(
            Provider::Gitlab,
            "Merge Request Hook",
            "gitlab/merge_request.opened.json",
        );
        assert_eq!(mr.git_ref, "refs/merge-requests/1/head");
        assert_eq!(mr.sha, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
        assert_eq!(mr.branch.as_deref(), Some("ms-viewport"));
        assert_eq!(mr.author.as_deref(), Some("root"));
        let pr = mr.pull_request.expect("a merge request");
        assert_eq!((pr.number, pr.target_branch.as_str()), (1, "master"));
        assert!(!pr.from_fork, "source and target project are both 14");
        assert_eq!(
            pr.head_repo.as_deref(),
            Some("awesome_space/awesome_project")
        );
    }

    /// Issue 14: a signed body's commit id or ref reached `git fetch` as
    /// an option. Both are refused as malformed, before anything is stored.
    #[test]
    fn commit_ids_and_refs_that_git_could_read_as_options_are_malformed() {
        let body = String::from_utf8(fixture("push.branch-created.json")).unwrap();
        let evil_sha = body.replace(
            "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "--upload-pack=sh -c \\\"id > pwned\\\"; git-upload-pack",
        );
        assert!(matches!(
            classify(Provider::Github, "push", evil_sha.as_bytes()),
            Err(WebhookError::Malformed(m)) if m.contains("is not a commit id")
        ));
        let evil_ref = body.replace("refs/heads/master", "refs/heads/--upload-pack=x");
        assert!(matches!(
            classify(Provider::Github, "push", evil_ref.as_bytes()),
            Err(WebhookError::Malformed(m)) if m.contains("is not a git ref name")
        ));
        let short = br#"{"ref":"refs/heads/main","after":"abc"}"#;
        assert!(matches!(
            classify(Provider::Gitea, "push", short),
            Err(WebhookError::Malformed(_))
        ));
    }

    /// Issue 14: a pull request whose fork was deleted (`head.repo: null`,
    /// or no head repository id) was read as "not a fork".
    #[test]
    fn a_pull_request_from_a_deleted_fork_is_from_a_fork() {
        // Each path is set to null; where the forge names both sides by id,
        // both go (None == None was read as "same repository").
        let from_fork = |provider, event, path: &str, clear: &[&[&str]]| {
            let mut v: serde_json::Value = serde_json::from_slice(&forge_fixture(path)).unwrap();
            for keys in clear {
                let mut at = &mut v;
                for k in &keys[..keys.len() - 1] {
                    at = &mut at[*k];
                }
                at[keys[keys.len() - 1]] = serde_json::Value::Null;
            }
            let body = serde_json::to_vec(&v).unwrap();
            match classify(provider, event, &body) {
                Ok(Verdict::Build(b)) => b.pull_request.expect("a pull request").from_fork,
                other => panic!("{path}: {other:?}"),
            }
        };
        assert!(from_fork(
            Provider::Github,
            "pull_request",
            "github/pull_request.opened.json",
            &[&["pull_request", "head", "repo"]]
        ));
        assert!(from_fork(
            Provider::Gitea,
            "pull_request",
            "gitea/pull_request.opened.json",
            &[
                &["pull_request", "head", "repo_id"],
                &["pull_request", "base", "repo_id"]
            ]
        ));
        assert!(from_fork(
            Provider::Gitlab,
            "Merge Request Hook",
            "gitlab/merge_request.opened.json",
            &[
                &["object_attributes", "source_project_id"],
                &["object_attributes", "target_project_id"]
            ]
        ));
    }

    #[test]
    fn an_organization_ping_names_the_organization_not_a_repository() {
        let body = fixture("ping.organization.json");
        assert_eq!(
            subject(Provider::Github, &body),
            Ok(Subject::Organization("Octocoders".into()))
        );
        assert_eq!(classify(Provider::Github, "ping", &body), Ok(Verdict::Ping));
        assert!(matches!(
            subject(Provider::Github, b"{\"zen\": \"x\"}"),
            Err(WebhookError::Malformed(m)) if m.contains("no repository and no organization")
        ));
    }

    #[test]
    fn authors_from_gitea_and_gitlab_bodies() {
        let gitea = br#"{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","head_commit":{"author":{"name":"Ann","username":"ann"}},"pusher":{"login":"pat"}}"#;
        let Ok(Verdict::Build(b)) = classify(Provider::Gitea, "push", gitea) else {
            panic!()
        };
        assert_eq!(
            b.author.as_deref(),
            Some("ann"),
            "the commit's author, not the pusher"
        );
        let pushed = br#"{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","pusher":{"login":"pat"}}"#;
        let Ok(Verdict::Build(b)) = classify(Provider::Gitea, "push", pushed) else {
            panic!()
        };
        assert_eq!(b.author.as_deref(), Some("pat"), "else the pusher");
        let gitlab = br#"{"ref":"refs/heads/main","after":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","user_username":"gil"}"#;
        let Ok(Verdict::Build(b)) = classify(Provider::Gitlab, "Push Hook", gitlab) else {
            panic!()
        };
        assert_eq!(b.author.as_deref(), Some("gil"));
    }
}
