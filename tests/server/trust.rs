//! Trust (issue 14): an untrusted run gets nothing the server holds (no
//! secret, no registry login); `trusted_pull_requests` widens or narrows
//! which pull requests are trusted; a clone token reaches git only through
//! its credential helper.

use serde_json::{Value, json};
use slipway_tests::{
    BUSYBOX, GitHttp, READER, REPO, Server, TOKENS, TempDir, WRITER, docker, git_commit, git_repo,
    pr_from, push, remove_images, send, start_with, wait_done, wait_for,
};

use crate::promotion::{repo_for, start_logged_in_with};

/// The run as the API shows it to a reader.
async fn view(server: &Server, id: &str) -> Value {
    let (status, view) = server
        .api("GET", &format!("/api/v1/runs/{id}"), READER, "")
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

/// A pull request (head `head_repo`) of a repository whose build pushes to
/// a registry that answers only the server's `[[registries]]` login;
/// `repo_lines` configure the repository. Returns the run's status, the
/// build's log and the run's API view.
async fn pull_request_build(
    tag: &str,
    repo_lines: &str,
    head_repo: &str,
) -> (String, String, Value) {
    docker().await;
    let password = format!("s3cret-{tag}");
    let (registry, repo_dir, bare, _) = repo_for(
        slipway_tests::Registry::start_with_login("ci", &password),
        &format!("origin-trust-{tag}"),
        tag,
    );
    let head = git_commit(
        &repo_dir,
        &["refs/pull/2/head"],
        &[(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo {tag}-pull-request > /app\n"),
        )],
    );
    let server = start_logged_in_with(&bare, &registry.host, &password, repo_lines).await;
    let (status, json) = send(&server, "pull_request", tag, pr_from(&head, head_repo)).await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    let log = server.store.read_log(&id, "image").unwrap_or_default();
    let view = crate::promotion::api(
        &server,
        "GET",
        &format!("/api/v1/runs/{id}"),
        "rita",
        Value::Null,
    )
    .await
    .1;
    server.shutdown.cancel();
    remove_images(&[format!("{}/acme/web:{head}", registry.host)]).await;
    (run.status.as_str().to_string(), log, view)
}

/// `trusted_pull_requests = "none"`: a pull request from a branch of the
/// repository itself, trusted by default (and before this setting), is
/// untrusted, so its build has no registry login.
#[tokio::test(flavor = "multi_thread")]
async fn trusted_pull_requests_none_makes_a_same_repo_pull_request_untrusted() {
    let (status, log, view) = pull_request_build(
        "none",
        "trusted_pull_requests = \"none\"\n",
        "Codertocat/Hello-World",
    )
    .await;
    assert_eq!(status, "failed", "{log}");
    assert!(
        log.contains("no basic auth credentials"),
        "the registry refused the push for want of a login: {log}"
    );
    assert_eq!(view["trusted"], false, "{view}");
    assert!(
        view["trust"].as_str().unwrap().contains("\"none\""),
        "{view}"
    );
}

/// A fork whose owner `trusted_pull_requests` lists is trusted: its build
/// gets the login (a fork's got none before this setting).
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_from_a_listed_fork_owners_fork_is_trusted() {
    let (status, log, view) = pull_request_build(
        "owner",
        "trusted_pull_requests = [\"acme-bot\", \"mallory\"]\n",
        "mallory/Hello-World",
    )
    .await;
    assert_eq!(status, "success", "{log}");
    assert_eq!(view["trusted"], true, "{view}");
    assert!(
        view["trust"].as_str().unwrap().contains("mallory's fork"),
        "{view}"
    );
}

const NPM_TOKEN: &str = "npm-s3cret-value-42";

/// Issue 14: a fork's step that lists a secret must never get the value.
/// Issue 15: it is skipped, with the reason in its log, and the rest of the
/// pull request's run goes on, so the PR shows why instead of failing; the
/// repository's own push gets the value (masked).
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_run_skips_the_step_that_lists_a_secret_saying_why_and_never_sees_it() {
    docker().await;
    let repo_dir = TempDir::new("origin-trust-secret");
    let pipeline = format!(
        "steps:
  test:
    image: {BUSYBOX}
    commands: ['echo testing']
  publish:
    needs: [test]
    image: {BUSYBOX}
    secrets: [NPM_TOKEN]
    commands: ['test \"$NPM_TOKEN\" = {NPM_TOKEN} && echo published with the token', 'echo \"$NPM_TOKEN\"']
"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let head = git_commit(&repo_dir, &["refs/pull/2/head"], &[("README", "fork\n")]);
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!("[repos.secrets]\nNPM_TOKEN = \"{NPM_TOKEN}\"\n{TOKENS}"),
    )
    .await;

    let (status, json) = send(
        &server,
        "pull_request",
        "fork-secret",
        pr_from(&head, "mallory/Hello-World"),
    )
    .await;
    assert_eq!(status, 202, "{json}");
    let fork = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &fork).await;
    assert_eq!(run.status.as_str(), "success", "{:?}", run.error);
    let steps: Vec<(&str, &str)> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    let log = server.store.read_log(&fork, "publish").unwrap_or_default();
    assert_eq!(
        steps,
        [("test", "success"), ("publish", "skipped")],
        "{log} {run:?}"
    );
    assert!(
        log.contains("skipped: needs secret `NPM_TOKEN`, and this run is untrusted")
            && log.contains("fork"),
        "{log}"
    );
    assert!(!log.contains("published"), "{log}");
    let fork_view = view(&server, &fork).await;
    assert_eq!(fork_view["trusted"], false, "{fork_view}");
    assert!(!fork_view.to_string().contains(NPM_TOKEN), "{fork_view}");

    let (status, json) = push(&server, &sha, "push-secret").await;
    assert_eq!(status, 202, "{json}");
    let own = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &own).await;
    let log = server.store.read_log(&own, "publish").unwrap_or_default();
    assert_eq!(run.status.as_str(), "success", "{:?} {log}", run.error);
    assert!(log.contains("published with the token"), "{log}");
    assert!(!log.contains(NPM_TOKEN), "masked: {log}");
    assert!(!view(&server, &own).await.to_string().contains(NPM_TOKEN));
    server.shutdown.cancel();
}

const CLONE_TOKEN: &str = "clone-t0ken-9f3e1c";

/// Issue 14: a clone token was only possible in `clone_url`, where argv,
/// logs and errors showed it. Now a git server that requires a login
/// (git http-backend behind busybox httpd, basic auth) is fetched with
/// `clone_token` through git's credential helper; without it the run
/// fails saying so; the token is in no run, log, error or API answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_clone_token_opens_a_git_server_that_requires_a_login_and_shows_nowhere() {
    docker().await;
    let repo_dir = TempDir::new("origin-trust-clone");
    let (_, sha) = git_repo(
        &repo_dir,
        "master",
        &[(
            ".slipway.yml",
            &format!("steps:\n  hello:\n    image: {BUSYBOX}\n    commands: [echo cloned]\n"),
        )],
    );
    let git = GitHttp::serve(repo_dir.path(), "ci", CLONE_TOKEN);
    let url = format!("{}/origin.git", git.url);

    let server = start_with(
        &url,
        &format!("clone_username = \"ci\"\nclone_token = \"{CLONE_TOKEN}\"\n{TOKENS}"),
    )
    .await;
    let (status, json) = push(&server, &sha, "clone-push").await;
    assert_eq!(status, 202, "{json}");
    let pushed = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &pushed).await;
    assert_eq!(run.status.as_str(), "success", "{:?}", run.error);
    assert!(
        server
            .store
            .read_log(&pushed, "hello")
            .unwrap()
            .contains("cloned")
    );
    // The API's trigger asks the git server which commit `master` is.
    let (status, json) = server
        .api(
            "POST",
            "/api/v1/trigger",
            WRITER,
            &json!({"repo": REPO, "ref": "master"}).to_string(),
        )
        .await;
    assert_eq!(status, 202, "{json}");
    let triggered = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &triggered).await.status.as_str(),
        "success"
    );
    let mut seen = Vec::new();
    for id in [&pushed, &triggered] {
        seen.push(view(&server, id).await.to_string());
        seen.push(server.store.read_log(id, "hello").unwrap_or_default());
    }
    seen.push(
        server
            .api("GET", "/api/v1/repos", READER, "")
            .await
            .1
            .to_string(),
    );
    server.shutdown.cancel();

    let without = start_with(&url, TOKENS).await;
    let (_, json) = push(&without, &sha, "clone-push-2").await;
    let refused = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&without.store, &refused).await;
    let error = run.error.clone().unwrap_or_default();
    assert_eq!(run.status.as_str(), "failed", "{error}");
    assert!(
        error.contains("could not read Username") && error.contains(&url),
        "git's own reason, naming the repository: {error}"
    );
    let (status, json) = without
        .api(
            "POST",
            "/api/v1/trigger",
            WRITER,
            &json!({"repo": REPO, "ref": "master"}).to_string(),
        )
        .await;
    assert_eq!(status, 422, "{json}");
    seen.push(error);
    seen.push(json.to_string());
    seen.push(view(&without, &refused).await.to_string());
    without.shutdown.cancel();
    for text in seen {
        assert!(!text.contains(CLONE_TOKEN), "the token shows: {text}");
    }
}

/// With `trusted_pull_requests = "none"` a pull request from the
/// repository's own branch is untrusted, so it gets no preview (a
/// same-repo pull request always got one before) unless
/// `previews_for_forks`.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_pull_request_gets_no_preview() {
    let _turn = crate::previews::SERIAL.lock().await;
    docker().await;
    let registry = slipway_tests::Registry::start();
    let (_repo_dir, bare, head) = crate::previews::preview_repo(&registry.host);
    let server = start_with(
        &format!("file://{}", bare.display()),
        "trusted_pull_requests = \"none\"\n[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\n",
    )
    .await;
    let (status, json) = send(
        &server,
        "pull_request",
        "pr-none-preview",
        pr_from(&head, "Codertocat/Hello-World"),
    )
    .await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &id).await.status.as_str(),
        "success"
    );
    let note = wait_for(|| {
        let run = server.store.get_run(&id).ok()??;
        run.notes.into_iter().find(|n| n.contains("preview"))
    })
    .await;
    assert!(
        note.starts_with("no preview:") && note.contains("untrusted"),
        "{note}"
    );
    assert!(server.store.preview(REPO, 2).unwrap().is_none());
    server.shutdown.cancel();
    remove_images(&[format!("{}/acme/preview:{head}", registry.host)]).await;
}
