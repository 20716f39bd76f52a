//! Promotions: images move by digest through dev, staging and prod behind
//! their approvals; users and the environments of the repository under test.

use std::time::{Duration, Instant};

use slipway_tests::forge::FakeForge;
use slipway_tests::{
    BUSYBOX, REPO, Server, TempDir, docker, git_repo, push, restart, start_with, wait_done,
};

use serde_json::{Value, json};

pub const USERS: &str = "[[tokens]]\nuser = \"alice\"\ntoken = \"alice-token-0123456789\"\nscope = \"write\"\n[[tokens]]\nuser = \"bob\"\ntoken = \"bob-token-0123456789xx\"\nscope = \"write\"\n[[tokens]]\nuser = \"carol\"\ntoken = \"carol-token-0123456789\"\nscope = \"write\"\n[[tokens]]\nuser = \"dave\"\ntoken = \"dave-token-01234567890\"\nscope = \"write\"\n[[tokens]]\nuser = \"rita\"\ntoken = \"rita-token-01234567890\"\nscope = \"read\"\n";

pub fn token(user: &str) -> &'static str {
    match user {
        "alice" => "alice-token-0123456789",
        "bob" => "bob-token-0123456789xx",
        "carol" => "carol-token-0123456789",
        "dave" => "dave-token-01234567890",
        _ => "rita-token-01234567890",
    }
}

/// The repository's settings: dev (auto), staging (one approver of
/// alice/bob, no self-approval), prod (two of alice/bob/carol).
pub fn config(host: &str, staging_approvals: usize, prod: &str) -> String {
    format!(
        "default_branch = \"master\"
[[repos.environments]]
name = \"dev\"
image = \"{host}/acme/web\"
tag = \"dev\"
auto = true
[[repos.environments]]
name = \"staging\"
image = \"{host}/acme/web-staging\"
tag = \"staging\"
from = \"dev\"
approvals = {staging_approvals}
approvers = [\"alice\", \"bob\"]
prevent_self_approval = true
[[repos.environments]]
name = \"prod\"
image = \"{host}/acme/web-prod\"
tag = \"prod\"
from = \"staging\"
{prod}
{USERS}"
    )
}

/// A registry, and a bare repository whose `master` commit (`sha`)
/// builds and pushes an image; `marker` makes each test's image its own.
pub fn promotion_repo(
    tag: &str,
    marker: &str,
) -> (slipway_tests::Registry, TempDir, std::path::PathBuf, String) {
    repo_for(slipway_tests::Registry::start(), tag, marker)
}

/// [`promotion_repo`] on a registry of the test's choosing.
pub fn repo_for(
    registry: slipway_tests::Registry,
    tag: &str,
    marker: &str,
) -> (slipway_tests::Registry, TempDir, std::path::PathBuf, String) {
    let repo_dir = TempDir::new(tag);
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[
            (".slipway.yml", &pipeline(&registry.host)),
            (
                "Dockerfile",
                &format!("FROM {BUSYBOX}\nRUN echo {marker} > /app\n"),
            ),
        ],
    );
    (registry, repo_dir, bare, sha)
}

pub fn pipeline(host: &str) -> String {
    format!(
        "steps:
  image:
    build:
      tags: [\"{host}/acme/web:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
  deploy-staging:
    image: {BUSYBOX}
    environment: staging
    commands: ['echo \"deploying $SLIPWAY_IMAGE to $SLIPWAY_ENVIRONMENT\"']
"
    )
}

/// An API request as `user`.
pub async fn api(
    server: &Server,
    method: &str,
    path: &str,
    user: &str,
    body: Value,
) -> (u16, Value) {
    server
        .api(method, path, token(user), &body.to_string())
        .await
}

/// `user` asks for a promotion (`{"to": env}`, and a digest if not dev's).
pub async fn request(server: &Server, user: &str, body: Value) -> (u16, Value) {
    let promotions = format!("/api/v1/repos/{REPO}/promotions");
    api(server, "POST", &promotions, user, body).await
}

/// Waits until `env` holds a digest, or the promotion into it ends otherwise.
pub async fn wait_promotion(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, p) = api(
            server,
            "GET",
            &format!("/api/v1/promotions/{id}"),
            "rita",
            Value::Null,
        )
        .await;
        if ["succeeded", "failed", "rejected", "expired"]
            .contains(&p["status"].as_str().unwrap_or(""))
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "promotion {id} still {}",
            p["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn env(server: &Server, name: &str) -> Value {
    let (status, envs) = api(
        server,
        "GET",
        &format!("/api/v1/repos/{REPO}/environments"),
        "rita",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{envs}");
    envs.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap()
}

/// Pushes a commit and waits for its run and the automatic promotion
/// to dev; returns the digest built.
pub async fn build_into_dev(
    server: &Server,
    registry: &slipway_tests::Registry,
    sha: &str,
) -> String {
    let (status, json) = push(server, sha, &format!("promo-{sha}")).await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    assert_eq!(
        run.status.as_str(),
        "success",
        "{}",
        server.store.read_log(&id, "image").unwrap()
    );
    let built = run.steps[0]
        .output
        .clone()
        .expect("the build step's output");
    let digest = built.split_once('@').unwrap().1.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env(server, "dev").await["current"]["digest"] != digest.as_str() {
        assert!(
            Instant::now() < deadline,
            "dev never got {digest}: {:?}",
            server.store.get_run(&id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        registry.manifest_digest("acme/web", "dev").as_deref(),
        Some(digest.as_str())
    );
    digest
}

#[tokio::test(flavor = "multi_thread")]
async fn images_move_by_digest_through_dev_staging_and_prod_behind_their_gates() {
    docker().await;
    let (registry, _repo_dir, bare, sha) = promotion_repo("origin-promote", "app");
    let host = registry.host.clone();
    let server = start_with(
        &format!("file://{}", bare.display()),
        &config(&host, 1, "approvals = 2\napprovers = [\"alice\", \"bob\", \"carol\"]\nprevent_self_approval = true"),
    )
    .await;
    let digest = build_into_dev(&server, &registry, &sha).await;

    // A digest that never reached dev is refused, with the reason.
    let (status, body) = request(&server, "dave", json!({"to": "staging", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never reached `dev`"),
        "{body}"
    );
    // A reader cannot ask.
    let (status, _) = request(&server, "rita", json!({"to": "staging"})).await;
    assert_eq!(status, 403);

    // Staging: dave asks (default: dev's digest); a non-approver and a
    // reader are refused; alice approves; the deploy step runs.
    let (status, p) = request(&server, "dave", json!({"to": "staging"})).await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["status"], "pending");
    assert_eq!(p["digest"], digest.as_str());
    let id = p["id"].as_str().unwrap().to_string();
    let (status, body) = request(&server, "carol", json!({"to": "staging"})).await;
    assert_eq!(status, 409, "one open promotion per environment: {body}");
    let approve = format!("/api/v1/promotions/{id}/approve");
    let (status, body) = api(&server, "POST", &approve, "dave", json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an approver of `staging`")
    );
    let (status, _) = api(&server, "POST", &approve, "carol", json!({})).await;
    assert_eq!(status, 403, "an approver of prod is no approver of staging");
    let (status, _) = api(&server, "POST", &approve, "rita", json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = api(
        &server,
        "POST",
        &approve,
        "alice",
        json!({"comment": "looks good"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let done = wait_promotion(&server, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        registry
            .manifest_digest("acme/web-staging", "staging")
            .as_deref(),
        Some(digest.as_str())
    );
    let staging = env(&server, "staging").await;
    assert_eq!(staging["current"]["digest"], digest.as_str());
    assert_eq!(
        staging["current"]["image"],
        format!("{host}/acme/web-staging@{digest}")
    );
    let deploy = server
        .store
        .list_runs(50)
        .unwrap()
        .into_iter()
        .find(|r| r.event == "promotion")
        .expect("a deploy run");
    assert_eq!(deploy.status.as_str(), "success");
    assert!(
        deploy.steps.iter().all(|s| s.name == "deploy-staging"),
        "only deploy steps run"
    );
    let log = server.store.read_log(&deploy.id, "deploy-staging").unwrap();
    assert!(
        log.contains(&format!(
            "deploying {host}/acme/web-staging@{digest} to staging"
        )),
        "{log}"
    );
    // The normal run never ran the deploy step.
    assert!(
        server
            .store
            .list_runs(50)
            .unwrap()
            .iter()
            .filter(|r| r.event == "push")
            .all(|r| r.steps.iter().all(|s| s.name != "deploy-staging"))
    );

    // Prod: two distinct approvers; the requester may not approve.
    let (status, p) = request(&server, "alice", json!({"to": "prod"})).await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let approve = format!("/api/v1/promotions/{id}/approve");
    let (status, body) = api(&server, "POST", &approve, "alice", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("forbids approving one's own"),
        "{body}"
    );
    let (status, p) = api(&server, "POST", &approve, "bob", json!({})).await;
    assert_eq!(
        (status, p["status"].as_str()),
        (200, Some("pending")),
        "{p}"
    );
    let (status, body) = api(&server, "POST", &approve, "bob", json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        registry.manifest_digest("acme/web-prod", "prod").is_none(),
        "nothing moves before the second approval"
    );
    let (status, _) = api(&server, "POST", &approve, "carol", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");
    assert_eq!(
        registry.manifest_digest("acme/web-prod", "prod").as_deref(),
        Some(digest.as_str())
    );

    // The audit log tells the story and no endpoint can change it.
    let (_, audit) = api(&server, "GET", "/api/v1/audit", "rita", Value::Null).await;
    let story: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["environment"].as_str().unwrap(),
                a["user"].as_str().unwrap(),
                a["action"].as_str().unwrap()
            )
        })
        .collect();
    for line in [
        "dev slipway requested",
        "dev slipway promoted",
        "staging dave requested",
        "staging alice approved",
        "staging slipway promoted",
        "prod alice requested",
        "prod bob approved",
        "prod carol approved",
        "prod slipway promoted",
    ] {
        assert!(story.iter().any(|s| s == line), "no `{line}` in {story:#?}");
    }
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["digest"] == digest.as_str())
    );
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, _) = api(&server, method, "/api/v1/audit", "alice", json!([])).await;
        assert_eq!(status, 405, "{method} /api/v1/audit");
    }
    let (_, again) = api(&server, "GET", "/api/v1/audit", "rita", Value::Null).await;
    assert_eq!(again, audit);
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_approvals_promote_once_outages_fail_retryably_and_restarts_keep_requests() {
    docker().await;
    let (mut registry, _repo_dir, bare, sha) = promotion_repo("origin-promote-2", "two");
    let host = registry.host.clone();
    let url = format!("file://{}", bare.display());
    // Staging needs one of alice/bob; prod needs nobody.
    let settings = config(&host, 1, "");
    let server = start_with(&url, &settings).await;
    let digest = build_into_dev(&server, &registry, &sha).await;

    // A pending request survives a restart of the server.
    let (_, p) = request(&server, "carol", json!({"to": "staging"})).await;
    let id = p["id"].as_str().unwrap().to_string();
    let server = restart(server, &url, &settings).await;
    let (_, p) = api(
        &server,
        "GET",
        &format!("/api/v1/promotions/{id}"),
        "rita",
        Value::Null,
    )
    .await;
    assert_eq!(p["status"], "pending", "{p}");

    // Two approvers at the same instant: one promotion.
    let approve = format!("/api/v1/promotions/{id}/approve");
    let (a, b) = tokio::join!(
        api(&server, "POST", &approve, "alice", json!({})),
        api(&server, "POST", &approve, "bob", json!({}))
    );
    let mut codes = [a.0, b.0];
    codes.sort();
    assert_eq!(codes, [200, 409], "{a:?} {b:?}");
    assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");
    let (_, audit) = api(&server, "GET", "/api/v1/audit", "rita", Value::Null).await;
    let started = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["promotion"] == id.as_str() && e["action"] == "promoting")
        .count();
    assert_eq!(started, 1, "{audit:#}");

    // The registry is down: the promotion fails with the reason, prod
    // keeps what it had (nothing); after the outage a retry succeeds.
    registry.stop();
    let (status, p) = request(&server, "dave", json!({"to": "prod"})).await;
    assert_eq!(status, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let failed = wait_promotion(&server, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains(&host),
        "the error names the registry: {failed}"
    );
    assert!(env(&server, "prod").await["current"].is_null());
    registry.restart();
    let (status, body) = api(
        &server,
        "POST",
        &format!("/api/v1/promotions/{id}/retry"),
        "dave",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");
    assert_eq!(
        env(&server, "prod").await["current"]["digest"],
        digest.as_str()
    );
    assert_eq!(
        registry.manifest_digest("acme/web-prod", "prod").as_deref(),
        Some(digest.as_str())
    );
    server.shutdown.cancel();
}

/// A server of the repository at `bare` (staging needs no approval) that
/// logs in to the registry at `host` as `ci` with `password`; the
/// repository lists the host, so its trusted runs get the login.
async fn start_logged_in(bare: &std::path::Path, host: &str, password: &str) -> Server {
    start_logged_in_with(bare, host, password, "").await
}

/// [`start_logged_in`] with `repo_lines` in the repository's table.
pub async fn start_logged_in_with(
    bare: &std::path::Path,
    host: &str,
    password: &str,
    repo_lines: &str,
) -> Server {
    start_with(
        &format!("file://{}", bare.display()),
        &format!(
            "registries = [\"{host}\"]\n{repo_lines}{}[[registries]]\nhost = \"{host}\"\nusername = \"ci\"\npassword = \"{password}\"\n",
            config(host, 0, "")
        ),
    )
    .await
}

/// The registry answers nobody without a login: the build's push and the
/// promotion's copy both use the `[[registries]]` login of the config.
#[tokio::test(flavor = "multi_thread")]
async fn builds_and_promotions_log_in_to_a_registry_that_requires_it() {
    docker().await;
    let (registry, _repo_dir, bare, sha) = repo_for(
        slipway_tests::Registry::start_with_login("ci", "s3cret-pass-1"),
        "origin-promote-auth",
        "auth",
    );
    let host = registry.host.clone();
    let h = host.clone();
    let (status, _) =
        tokio::task::spawn_blocking(move || slipway_tests::http("GET", &h, "/v2/", &[], b""))
            .await
            .unwrap();
    assert_eq!(status, 401, "the registry must refuse anonymous clients");
    let server = start_logged_in(&bare, &host, "s3cret-pass-1").await;
    let digest = build_into_dev(&server, &registry, &sha).await;
    let (status, p) = request(&server, "dave", json!({"to": "staging"})).await;
    assert_eq!(status, 201, "{p}");
    let done = wait_promotion(&server, p["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        registry
            .manifest_digest("acme/web-staging", "staging")
            .as_deref(),
        Some(digest.as_str())
    );
    server.shutdown.cancel();
}

/// Issue 14: a fork's pull request got the server's registry logins, and
/// pushed to the prod environment's tag. Untrusted now: its build step has
/// no login, so the registry refuses the push; the API says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_from_a_fork_gets_no_registry_login() {
    docker().await;
    let (registry, repo_dir, bare, _) = repo_for(
        slipway_tests::Registry::start_with_login("ci", "s3cret-pass-2"),
        "origin-promote-fork",
        "fork",
    );
    let host = registry.host.clone();
    // The fork's commit, fetched as the pull request's head.
    let head = slipway_tests::git_commit(
        &repo_dir,
        &["refs/pull/2/head"],
        &[(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo from-a-fork > /app\n"),
        )],
    );
    let server = start_logged_in(&bare, &host, "s3cret-pass-2").await;
    let body = slipway_tests::pr_from(&head, "mallory/Hello-World");
    let (status, json) = slipway_tests::send(&server, "pull_request", "fork-pr", body).await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    let log = server.store.read_log(&id, "image").unwrap();
    assert_eq!(run.status.as_str(), "failed", "{log}");
    assert!(
        log.contains("no basic auth credentials"),
        "the registry refused the push for want of a login: {log}"
    );
    let (_, view) = api(
        &server,
        "GET",
        &format!("/api/v1/runs/{id}"),
        "rita",
        Value::Null,
    )
    .await;
    assert_eq!(view["trusted"], false, "{view}");
    assert!(view["trust"].as_str().unwrap().contains("fork"), "{view}");
    server.shutdown.cancel();
}

/// Issue 14, the end of the fork story: a registry that takes anonymous
/// pushes lets a fork's pull request push an image, but nothing moves it
/// into an environment: not `auto` dev, and not a writer naming its digest
/// for dev (the one environment that takes digests from runs).
#[tokio::test(flavor = "multi_thread")]
async fn a_digest_a_forks_pull_request_pushed_is_never_promoted() {
    docker().await;
    let (registry, repo_dir, bare, _) = promotion_repo("origin-promote-fork-digest", "trunk");
    let host = registry.host.clone();
    let head = slipway_tests::git_commit(
        &repo_dir,
        &["refs/pull/2/head"],
        &[(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo from-a-fork > /app\n"),
        )],
    );
    let server = start_with(&format!("file://{}", bare.display()), &config(&host, 0, "")).await;
    let body = slipway_tests::pr_from(&head, "mallory/Hello-World");
    let (status, json) = slipway_tests::send(&server, "pull_request", "fork-digest", body).await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    assert_eq!(
        run.status.as_str(),
        "success",
        "the open registry took the fork's push: {}",
        server.store.read_log(&id, "image").unwrap()
    );
    let digest = run.steps[0]
        .output
        .clone()
        .expect("the build step's output")
        .split_once('@')
        .unwrap()
        .1
        .to_string();
    assert_eq!(
        registry.manifest_digest("acme/web", &head).as_deref(),
        Some(digest.as_str()),
        "the fork's image is in the registry"
    );

    let (status, refused) = request(&server, "dave", json!({"to": "dev", "digest": digest})).await;
    assert!(
        (400..500).contains(&status),
        "a pull request's digest must be refused: {status} {refused}"
    );
    assert!(
        refused.to_string().contains("pull request #2"),
        "the refusal says why: {refused}"
    );
    // dev is `auto`, yet the fork's green run put nothing there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(env(&server, "dev").await["current"].is_null());
    assert!(env(&server, "staging").await["current"].is_null());
    assert_eq!(
        registry.manifest_digest("acme/web-staging", "staging"),
        None
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deploy_leaves_the_environment_and_its_tag_where_they_were() {
    docker().await;
    let (registry, repo_dir, bare, sha) = promotion_repo("origin-promote-3", "three");
    let host = registry.host.clone();
    let forge = FakeForge::start().await;
    // Staging needs no approval here.
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!(
            "api_url = \"{}\"\napi_token = \"gh-token\"\n{}",
            forge.url,
            config(&host, 0, "")
        ),
    )
    .await;
    let first = build_into_dev(&server, &registry, &sha).await;
    let (_, p) = request(&server, "dave", json!({"to": "staging"})).await;
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(wait_promotion(&server, &id).await["status"], "succeeded");

    // The next commit's deploy step fails.
    let failing = pipeline(&host).replace(
        "commands: ['echo \"deploying $SLIPWAY_IMAGE to $SLIPWAY_ENVIRONMENT\"']",
        "commands: ['echo deploy breaks', 'exit 3']",
    );
    assert_ne!(failing, pipeline(&host));
    let sha2 = slipway_tests::git_commit(
        &repo_dir,
        &["refs/heads/master"],
        &[
            (".slipway.yml", &failing),
            (
                "Dockerfile",
                &format!("FROM {BUSYBOX}\nRUN echo four > /app\n"),
            ),
        ],
    );
    let second = build_into_dev(&server, &registry, &sha2).await;
    assert_ne!(first, second);
    let (_, p) = request(&server, "dave", json!({"to": "staging"})).await;
    let id = p["id"].as_str().unwrap().to_string();
    let failed = wait_promotion(&server, &id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("deploy run"),
        "{failed}"
    );
    let staging = env(&server, "staging").await;
    assert_eq!(
        staging["current"]["digest"],
        first.as_str(),
        "staging keeps its digest"
    );
    assert_eq!(
        registry
            .manifest_digest("acme/web-staging", "staging")
            .as_deref(),
        Some(first.as_str()),
        "the tag points back at what staging holds"
    );

    // The forge saw each promotion as a deployment of its commit to the
    // environment: in progress, then success, or failure for the second.
    let states = |sha: &str, env: &str| forge.deployment_states(sha, env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while states(&sha2, "staging").len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", forge.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(states(&sha, "staging"), ["in_progress", "success"]);
    assert_eq!(states(&sha2, "staging"), ["in_progress", "failure"]);
    assert_eq!(states(&sha, "dev"), ["in_progress", "success"]);
    server.shutdown.cancel();
}
