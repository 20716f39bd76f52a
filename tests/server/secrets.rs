//! Secrets on the server (issue 15): set through the API (never read
//! back), sealed at rest with a key file outside the data dir, given only
//! to the runs their scope and filters allow, masked in logs; a key that
//! does not open the store stops the server at start; rotation.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use slipway_tests::{
    BUSYBOX, READER, REPO, Server, TOKENS, TempDir, WRITER, docker, git_repo, push, remove_images,
    slipway_bin, start_in, start_with, wait_done,
};

use crate::promotion::{env, request, wait_promotion};

const ADMIN: &str = "admin-token-0123456789";
const MAINTAINER: &str = "maint-token-0123456789";

/// wendy (write), rita (read), ada (admin), mo (write, maintains REPO).
fn tokens() -> String {
    format!(
        "{TOKENS}[[tokens]]\nuser = \"ada\"\ntoken = \"{ADMIN}\"\nscope = \"admin\"\n[[tokens]]\nuser = \"mo\"\ntoken = \"{MAINTAINER}\"\nscope = \"write\"\nmaintains = [\"{REPO}\"]\n"
    )
}

/// `[server]` lines that put the key in `keys` (outside the data dir).
fn key_at(keys: &TempDir) -> String {
    format!(
        "[server]\nsecrets_key = \"{}\"\n",
        keys.path().join("secrets.key").display()
    )
}

async fn set(server: &Server, token: &str, body: Value) -> (u16, Value) {
    server
        .api("PUT", "/api/v1/secrets", token, &body.to_string())
        .await
}

/// Pushes `sha` and waits for its run to end: its id and record.
async fn pushed(
    server: &Server,
    sha: &str,
    delivery: &str,
) -> (String, slipway_api::store::RunRecord) {
    let (status, json) = push(server, sha, delivery).await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    (id, run)
}

/// Every file under `dir`, as bytes, with its path.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const API_KEY: &str = "api-k3y-2f9c71d0e4";

/// A secret set through the API reaches a push run's step (which proves
/// it by comparing), masked in its log; the API never returns it; the data
/// dir holds it only sealed; set and remove are audited; only an admin or
/// the repository's maintainer may set it.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_set_through_the_api_reaches_a_push_run_masked_and_is_stored_only_sealed() {
    docker().await;
    let repo_dir = TempDir::new("origin-secrets-api");
    let pipeline = format!(
        "steps:
  call:
    image: {BUSYBOX}
    secrets: [API_KEY]
    commands:
      - 'test \"$API_KEY\" = {API_KEY} && echo the step has the key'
      - 'echo \"key: $API_KEY\"'
"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let keys = TempDir::new("keys-api");
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!("{}{}", tokens(), key_at(&keys)),
    )
    .await;

    let body = json!({"repo": REPO, "name": "API_KEY", "value": API_KEY});
    let (status, answer) = set(&server, READER, body.clone()).await;
    assert_eq!(status, 403, "a reader may not: {answer}");
    let (status, answer) = set(&server, WRITER, body.clone()).await;
    assert_eq!(
        status, 403,
        "a writer who maintains nothing may not: {answer}"
    );
    assert!(answer.to_string().contains("maintains"), "{answer}");
    let (status, answer) = set(
        &server,
        MAINTAINER,
        json!({"name": "GLOBAL", "value": "long-enough"}),
    )
    .await;
    assert_eq!(status, 403, "server-wide needs an admin: {answer}");
    let (status, answer) = set(
        &server,
        MAINTAINER,
        json!({"repo": REPO, "name": "PIN", "value": "123"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer.to_string().contains("shorter than 4"), "{answer}");
    let (status, answer) = set(&server, MAINTAINER, body.clone()).await;
    assert_eq!(status, 201, "the maintainer may: {answer}");
    assert!(!answer.to_string().contains(API_KEY), "{answer}");
    assert_eq!(answer["set_by"], "mo");
    let (status, answer) = set(&server, ADMIN, body).await;
    assert_eq!(status, 200, "replaced by the admin: {answer}");

    let (status, list) = server.api("GET", "/api/v1/secrets", ADMIN, "").await;
    assert_eq!(status, 200, "{list}");
    assert!(!list.to_string().contains(API_KEY), "{list}");
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "API_KEY")
        .cloned()
        .unwrap_or_else(|| panic!("listed: {list}"));
    assert_eq!(row["scope"], REPO);
    assert_eq!(row["source"], "api");
    assert_eq!(row["set_by"], "ada");
    let (status, list) = server.api("GET", "/api/v1/secrets", WRITER, "").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!([]), "wendy may manage none, so sees none");

    let (id, run) = pushed(&server, &sha, "secrets-api-1").await;
    let log = server.store.read_log(&id, "call").unwrap_or_default();
    assert_eq!(run.status.as_str(), "success", "{:?} {log}", run.error);
    assert!(log.contains("the step has the key"), "{log}");
    assert!(log.contains("key: ********"), "{log}");
    assert!(!log.contains(API_KEY), "{log}");

    // Flushed, so what sled holds is on disk: nowhere the value in clear.
    server.store.flush().unwrap();
    let data = files(server.data_dir());
    assert!(!data.is_empty());
    for (path, bytes) in &data {
        assert!(
            !holds(bytes, API_KEY.as_bytes()),
            "{} holds the value",
            path.display()
        );
    }
    assert!(
        keys.path().join("secrets.key").exists(),
        "the key is where the config says, outside the data dir"
    );

    let (status, _) = server
        .api(
            "DELETE",
            &format!("/api/v1/secrets?repo={REPO}&name=API_KEY"),
            MAINTAINER,
            "",
        )
        .await;
    assert_eq!(status, 204);
    let (status, audit) = server.api("GET", "/api/v1/audit", READER, "").await;
    assert_eq!(status, 200, "{audit}");
    assert!(!audit.to_string().contains(API_KEY), "{audit}");
    let entries: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["secret"] == "API_KEY")
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["user"].as_str().unwrap().to_string(),
                a["repo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("secret-set", "mo"),
        ("secret-set", "ada"),
        ("secret-removed", "mo"),
    ]
    .iter()
    .map(|(a, u)| (a.to_string(), u.to_string(), REPO.to_string()))
    .collect();
    assert_eq!(entries, expected);

    // Removed: the step's secret is defined nowhere, and the run says so.
    let (_, run) = pushed(&server, &sha, "secrets-api-2").await;
    assert_eq!(run.status.as_str(), "error");
    assert!(
        run.error
            .as_deref()
            .unwrap_or_default()
            .contains("needs secret `API_KEY`, which is defined for none of"),
        "{:?}",
        run.error
    );
    server.shutdown.cancel();
}

/// A secret limited to branches (set through the API) and one limited to
/// events (in the config): a push to `master` gets neither, and those
/// steps are skipped with the reason while the rest of the run goes on.
#[tokio::test(flavor = "multi_thread")]
async fn filters_keep_a_secret_from_runs_outside_its_events_and_branches() {
    docker().await;
    let repo_dir = TempDir::new("origin-secrets-filters");
    let pipeline = format!(
        "steps:
  test:
    image: {BUSYBOX}
    commands: ['echo tested']
  release:
    image: {BUSYBOX}
    secrets: [RELEASE_KEY]
    commands: ['echo released']
  publish:
    image: {BUSYBOX}
    secrets: [NPM_TOKEN]
    commands: ['echo published']
  shared:
    image: {BUSYBOX}
    secrets: [SHARED_TOKEN]
    commands: ['test \"$SHARED_TOKEN\" = shared-v4lue && echo shared ok']
"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!(
            "[repos.secrets]\nNPM_TOKEN = {{ value = \"npm-t0ken-value\", events = [\"tag\"] }}\n{}[[secrets]]\nname = \"SHARED_TOKEN\"\nvalue = \"shared-v4lue\"\nbranches = [\"master\"]\n",
            tokens()
        ),
    )
    .await;
    let (status, answer) = set(
        &server,
        ADMIN,
        json!({"repo": REPO, "name": "RELEASE_KEY", "value": "rel-k3y-value", "branches": ["release/*"]}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = set(
        &server,
        ADMIN,
        json!({"repo": REPO, "name": "NPM_TOKEN", "value": "other-value"}),
    )
    .await;
    assert_eq!(status, 409, "defined in the config file: {answer}");

    let (id, run) = pushed(&server, &sha, "secrets-filters").await;
    assert_eq!(run.status.as_str(), "success", "{:?}", run.error);
    let steps: Vec<(&str, &str)> = run
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("test", "success"),
            ("release", "skipped"),
            ("publish", "skipped"),
            ("shared", "success"),
        ]
    );
    let release = server.store.read_log(&id, "release").unwrap_or_default();
    assert!(
        release.contains("needs secret `RELEASE_KEY`, which this run does not get")
            && release.contains("set by ada")
            && release.contains("limited to branches [release/*] (this run: branch master)"),
        "{release}"
    );
    let publish = server.store.read_log(&id, "publish").unwrap_or_default();
    assert!(
        publish.contains("the config file")
            && publish.contains("limited to events [tag] (this run: push)"),
        "{publish}"
    );
    server.shutdown.cancel();
}

/// An environment's secret reaches the deploy step of a promotion into
/// it, over the repository's secret of the same name; the build run's own
/// steps get the repository's value, and a step that lists a name only the
/// environment has is skipped saying so.
#[tokio::test(flavor = "multi_thread")]
async fn an_environment_secret_reaches_only_the_deploy_step_of_its_promotion() {
    docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let repo_dir = TempDir::new("origin-secrets-env");
    let pipeline = format!(
        "steps:
  image:
    build:
      tags: [\"{host}/acme/web:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
  check:
    image: {BUSYBOX}
    secrets: [DEPLOY_TOKEN]
    commands: ['test \"$DEPLOY_TOKEN\" = repo-level-t0ken && echo build has the repository token']
  smoke:
    image: {BUSYBOX}
    secrets: [STAGING_ONLY]
    commands: ['echo never']
  deploy-staging:
    image: {BUSYBOX}
    environment: staging
    secrets: [DEPLOY_TOKEN, STAGING_ONLY]
    commands:
      - 'test \"$DEPLOY_TOKEN\" = staging-t0ken && test \"$STAGING_ONLY\" = staging-0nly && echo deploy has the staging tokens'
      - 'echo \"token: $DEPLOY_TOKEN\"'
"
    );
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[
            (".slipway.yml", &pipeline),
            (
                "Dockerfile",
                &format!("FROM {BUSYBOX}\nRUN echo env-secrets > /app\n"),
            ),
        ],
    );
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!(
            "{}[repos.secrets]\nDEPLOY_TOKEN = \"repo-level-t0ken\"\n[[tokens]]\nuser = \"ada\"\ntoken = \"{ADMIN}\"\nscope = \"admin\"\n",
            crate::promotion::config(&host, 0, "")
        ),
    )
    .await;
    for (name, value) in [
        ("DEPLOY_TOKEN", "staging-t0ken"),
        ("STAGING_ONLY", "staging-0nly"),
    ] {
        let (status, answer) = crate::promotion::api(
            &server,
            "PUT",
            "/api/v1/secrets",
            "alice",
            json!({"repo": REPO, "environment": "staging", "name": name, "value": value}),
        )
        .await;
        // alice writes but maintains nothing: the admin sets it.
        assert_eq!(status, 403, "{answer}");
        let (status, answer) = set(
            &server,
            ADMIN,
            json!({"repo": REPO, "environment": "staging", "name": name, "value": value}),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(answer["scope"], format!("{REPO}:staging"));
    }

    let (id, run) = pushed(&server, &sha, "secrets-env").await;
    assert_eq!(run.status.as_str(), "success", "{:?}", run.error);
    let check = server.store.read_log(&id, "check").unwrap_or_default();
    assert!(check.contains("build has the repository token"), "{check}");
    let smoke = server.store.read_log(&id, "smoke").unwrap_or_default();
    assert!(
        smoke.contains("only the deploy steps of environment `staging`"),
        "{smoke}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env(&server, "dev").await["current"].is_null() {
        assert!(std::time::Instant::now() < deadline, "dev got nothing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, p) = request(&server, "dave", json!({"to": "staging"})).await;
    assert_eq!(status, 201, "{p}");
    let done = wait_promotion(&server, p["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let deploy_run = server
        .store
        .list_runs(50)
        .unwrap()
        .into_iter()
        .find(|r| r.deploy.is_some())
        .expect("the promotion's deploy run");
    let log = server
        .store
        .read_log(&deploy_run.id, "deploy-staging")
        .unwrap_or_default();
    assert!(log.contains("deploy has the staging tokens"), "{log}");
    assert!(log.contains("token: ********"), "{log}");
    assert!(!log.contains("staging-t0ken"), "{log}");
    server.shutdown.cancel();
    remove_images(&[format!("{host}/acme/web:{sha}")]).await;
}

/// `slipway serve` with the config, until it exits or `wait` passes;
/// its exit status (None: still running, killed) and stderr.
fn serve_briefly(config: &Path, data: &Path, wait: Duration) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(slipway_bin())
        .args([
            "--data-dir",
            &data.display().to_string(),
            "serve",
            "--config",
        ])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start slipway serve");
    let deadline = std::time::Instant::now() + wait;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}

/// The key file guards the store: without it, or with another key, the
/// server refuses to start and names the file; `slipway secret rotate-key`
/// re-encrypts with a new key, after which the old key opens nothing and
/// runs still get the value.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_key_stops_the_server_at_start_and_rotation_re_encrypts() {
    docker().await;
    let repo_dir = TempDir::new("origin-secrets-key");
    let pipeline = format!(
        "steps:
  call:
    image: {BUSYBOX}
    secrets: [API_KEY]
    commands: ['test \"$API_KEY\" = {API_KEY} && echo the step has the key']
"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let clone_url = format!("file://{}", bare.display());
    let keys = TempDir::new("keys-rotate");
    let extra = format!("{}{}", tokens(), key_at(&keys));
    let server = start_with(&clone_url, &extra).await;
    let (status, answer) = set(
        &server,
        ADMIN,
        json!({"repo": REPO, "name": "API_KEY", "value": API_KEY}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let data_dir = server.stop().await;
    let data = data_dir.path().to_path_buf();

    // The binary, on the same data dir, with the key missing, then wrong.
    let key = keys.path().join("secrets.key");
    let original = std::fs::read(&key).unwrap();
    let config = keys.path().join("slipway.toml");
    let config_text = format!(
        "{}{}{}",
        slipway_tests::repo_config(&clone_url),
        tokens(),
        key_at(&keys)
    );
    std::fs::write(&config, &config_text).unwrap();
    std::fs::remove_file(&key).unwrap();
    let (code, err) = serve_briefly(&config, &data.join("db"), Duration::from_secs(20));
    assert!(code.is_some_and(|c| c != 0), "refused: {code:?} {err}");
    assert!(
        err.contains(&key.display().to_string()) && err.contains("missing"),
        "{err}"
    );
    assert!(
        !key.exists(),
        "no new key was made over secrets that need the old one"
    );
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let (code, err) = serve_briefly(&config, &data.join("db"), Duration::from_secs(20));
    assert!(code.is_some_and(|c| c != 0), "refused: {code:?} {err}");
    assert!(
        err.contains(&key.display().to_string()) && err.contains("is not the key"),
        "{err}"
    );

    // Rotation, by the binary, with the right key back in place.
    std::fs::write(&key, &original).unwrap();
    let out = std::process::Command::new(slipway_bin())
        .args([
            "--data-dir",
            &data.join("db").display().to_string(),
            "secret",
            "rotate-key",
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("rotate-key");
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("re-encrypted 1 secret(s)"), "{said}");
    let rotated = std::fs::read(&key).unwrap();
    assert_ne!(rotated, original, "a new key");
    std::fs::write(&key, &original).unwrap();
    let (code, err) = serve_briefly(&config, &data.join("db"), Duration::from_secs(20));
    assert!(
        code.is_some_and(|c| c != 0),
        "the old key opens nothing: {code:?} {err}"
    );
    assert!(err.contains("is not the key"), "{err}");
    std::fs::write(&key, &rotated).unwrap();

    let server = start_in(data_dir, &clone_url, &extra).await;
    let (id, run) = pushed(&server, &sha, "secrets-rotated").await;
    let log = server.store.read_log(&id, "call").unwrap_or_default();
    assert_eq!(run.status.as_str(), "success", "{:?} {log}", run.error);
    assert!(log.contains("the step has the key"), "{log}");
    server.shutdown.cancel();
}

/// `slipway secret set` reads the value from stdin (never an argument),
/// `ls` shows names and who set them, never values, and `rm` removes.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sets_lists_and_removes_a_secret_with_the_value_from_stdin() {
    let repo_dir = TempDir::new("origin-secrets-cli");
    let (bare, _) = git_repo(&repo_dir, "master", &[(".slipway.yml", "steps: {}\n")]);
    let server = start_with(&format!("file://{}", bare.display()), &tokens()).await;
    let url = server.url();
    let cli = move |args: &[&str], stdin: &str| {
        let mut child = std::process::Command::new(slipway_bin())
            .args(args)
            .env("SLIPWAY_SERVER", &url)
            .env("SLIPWAY_TOKEN", MAINTAINER)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("slipway");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            input.write_all(stdin.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let value = "cli-s3cret-from-stdin";
    let (ok, said) = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || {
            cli(
                &["secret", "set", REPO, "CLI_TOKEN", "--events", "push,tag"],
                &format!("{value}\n"),
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("set CLI_TOKEN for {REPO}")),
        "{said}"
    );
    let (ok, said) = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || cli(&["secret", "set", REPO, "EMPTY"], "")
    })
    .await
    .unwrap();
    assert!(!ok && said.contains("no value on stdin"), "{said}");
    let (ok, listed) = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || cli(&["secret", "ls"], "")
    })
    .await
    .unwrap();
    assert!(ok, "{listed}");
    assert!(
        listed.contains("CLI_TOKEN")
            && listed.contains("mo ")
            && listed.contains("events=push,tag"),
        "{listed}"
    );
    assert!(!listed.contains(value), "{listed}");
    let stored = server
        .store
        .secret(
            &slipway_api::store::SecretScope::Repo { repo: REPO.into() },
            "CLI_TOKEN",
        )
        .unwrap()
        .expect("stored");
    assert_eq!(stored.filter.events, ["push", "tag"]);
    let (ok, said) = tokio::task::spawn_blocking({
        let cli = cli.clone();
        move || cli(&["secret", "rm", REPO, "CLI_TOKEN"], "")
    })
    .await
    .unwrap();
    assert!(ok, "{said}");
    let (ok, said) =
        tokio::task::spawn_blocking(move || cli(&["secret", "rm", REPO, "CLI_TOKEN"], ""))
            .await
            .unwrap();
    assert!(
        !ok && said.contains("no secret CLI_TOKEN was set"),
        "{said}"
    );
    server.shutdown.cancel();
}
