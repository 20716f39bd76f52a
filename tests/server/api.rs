//! The JSON API and the CLI through it: cancel (writers only), rerun of
//! failed steps, trigger by ref, follow, and a run's image and artifacts.

use slipway_tests::{
    BUSYBOX, READER, REPO, TOKENS, TempDir, WRITER, docker, git_repo, leftovers, push,
    remove_images, slow_pipeline, start_with, wait_done, wait_step_running,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_cancels_a_running_run_and_a_reader_may_not() {
    let d = docker().await;
    let repo_dir = TempDir::new("origin-cancel");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &slow_pipeline())]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (_, json) = push(&server, &sha, "to-cancel").await;
    let id = json["run"].as_str().unwrap().to_string();
    wait_step_running(&server.store, &id).await;
    let path = format!("/api/v1/runs/{id}/cancel");
    let cancel = |token| server.api("POST", &path, token, "");
    let (status, body) = cancel(READER).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = cancel(WRITER).await;
    assert_eq!(status, 202, "{body}");
    let run = wait_done(&server.store, &id).await;
    assert_eq!(run.status.as_str(), "cancelled");
    assert_eq!(run.error.as_deref(), Some("cancelled by wendy"));
    assert_eq!(leftovers(&d, &id).await, Vec::<String>::new());
    let (status, body) = cancel(WRITER).await;
    assert_eq!(status, 409, "{body}");
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_failed_steps_reruns_them_and_what_they_need_only() {
    docker().await;
    let repo_dir = TempDir::new("origin-rerun");
    let pipeline = format!(
        "steps:\n  build: {{image: {BUSYBOX}, commands: ['echo built > out.txt']}}\n  flaky: {{image: {BUSYBOX}, needs: [build], commands: ['cat out.txt', 'test -n \"$SLIPWAY_RERUN_OF\"']}}\n  lint: {{image: {BUSYBOX}, commands: ['echo linted']}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (_, json) = push(&server, &sha, "first").await;
    let first = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &first).await.status.as_str(),
        "failed"
    );

    let (status, json) = server
        .api(
            "POST",
            &format!("/api/v1/runs/{first}/rerun?failed=true"),
            WRITER,
            "",
        )
        .await;
    assert_eq!(status, 202, "{json}");
    let again = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &again).await;
    assert_eq!(run.status.as_str(), "success", "{run:?}");
    let status_of = |name: &str| {
        run.steps
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .status
            .as_str()
    };
    assert_eq!(
        status_of("build"),
        "success",
        "flaky needs build's output: build runs again"
    );
    assert_eq!(status_of("flaky"), "success");
    assert_eq!(status_of("lint"), "skipped");
    assert_eq!(
        server.store.read_log(&again, "lint").unwrap(),
        format!("slipway: skipped: succeeded in run {first}\n")
    );
    assert!(
        server
            .store
            .read_log(&again, "flaky")
            .unwrap()
            .contains("built")
    );

    let (status, json) = server
        .api(
            "POST",
            &format!("/api/v1/runs/{again}/rerun?failed=true"),
            WRITER,
            "",
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (409, Some("nothing_failed"))
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn trigger_runs_what_a_ref_points_at() {
    docker().await;
    let repo_dir = TempDir::new("origin-trigger");
    let pipeline = format!(
        "steps:\n  show: {{image: {BUSYBOX}, commands: ['echo \"$SLIPWAY_EVENT $SLIPWAY_BRANCH $SLIPWAY_COMMIT_SHA\"']}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    // A fork's pull request head, as GitHub keeps it in the base repository.
    slipway_tests::git_commit(
        &repo_dir,
        &["refs/pull/2/head"],
        &[(".slipway.yml", &pipeline), ("fork.txt", "from a fork")],
    );
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    for fork_head in ["refs/pull/2/head", "pull/2/head"] {
        let (status, json) = server
            .api(
                "POST",
                "/api/v1/trigger",
                WRITER,
                &format!("{{\"repo\": \"{REPO}\", \"ref\": \"{fork_head}\"}}"),
            )
            .await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (422, Some("unknown_ref")),
            "a manual (trusted) run of a pull request's head is refused: {json}"
        );
    }
    assert!(server.store.list_runs(100).unwrap().is_empty());
    let (status, json) = server
        .api(
            "POST",
            "/api/v1/trigger",
            WRITER,
            &format!("{{\"repo\": \"{REPO}\", \"ref\": \"master\"}}"),
        )
        .await;
    assert_eq!(status, 202, "{json}");
    let run = wait_done(&server.store, json["run"].as_str().unwrap()).await;
    assert_eq!(
        (run.status.as_str(), run.event.as_str()),
        ("success", "manual")
    );
    assert_eq!(
        server
            .store
            .read_log(&run.id, "show")
            .unwrap()
            .lines()
            .last(),
        Some(format!("manual master {sha}").as_str())
    );
    let (status, json) = server
        .api(
            "POST",
            "/api/v1/trigger",
            WRITER,
            &format!("{{\"repo\": \"{REPO}\", \"ref\": \"nope\"}}"),
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (422, Some("unknown_ref"))
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_triggers_follows_lists_and_cancels_through_the_api() {
    docker().await;
    let repo_dir = TempDir::new("origin-cli");
    let pipeline = format!(
        "steps:\n  show: {{image: {BUSYBOX}, commands: ['echo one', 'sleep 1', 'echo two']}}\n"
    );
    let (bare, _) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let cli = |args: &[&str], token: &str| {
        let (addr, args, token) = (
            server.addr.clone(),
            args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            token.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(slipway_tests::slipway_bin())
                .args(&args)
                .env("SLIPWAY_SERVER", format!("http://{addr}"))
                .env("SLIPWAY_TOKEN", token)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (code, stdout, stderr) = cli(&["trigger", REPO, "master"], WRITER).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let id = stdout.trim().to_string();
    let (code, stdout, stderr) = cli(&["logs", &id, "-f"], READER).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("show | one") && stdout.contains("show | two"),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with(&format!("run {id} success")),
        "{stdout}"
    );
    let (_, stdout, _) = cli(&["runs"], READER).await.unwrap();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("success") && l.contains("manual")),
        "{stdout}"
    );
    let (code, _, stderr) = cli(&["cancel", &id], WRITER).await.unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("already ended: success"), "{stderr}");
    let (code, _, stderr) = cli(&["cancel", &id], READER).await.unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("forbidden"), "{stderr}");
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_image_and_artifacts_are_on_the_run_in_the_api_and_cli() {
    docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let repo_dir = TempDir::new("origin-build");
    let pipeline = format!(
        "steps:
  compile:
    image: {BUSYBOX}
    artifacts: [\"dist/**\"]
    commands: ['mkdir -p dist/sub', 'echo binary > dist/app', 'echo notes > dist/sub/notes.txt']
  image:
    needs: [compile]
    build:
      tags: [\"{host}/acme/hello:${{SLIPWAY_COMMIT_SHA}}\"]
      push: true
"
    );
    let dockerfile = format!("FROM {BUSYBOX}\nCOPY dist/app /app\n");
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[(".slipway.yml", &pipeline), ("Dockerfile", &dockerfile)],
    );
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let (status, json) = push(&server, &sha, "build-1").await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let run = wait_done(&server.store, &id).await;
    assert_eq!(
        run.status.as_str(),
        "success",
        "{}",
        server.store.read_log(&id, "image").unwrap()
    );
    let client =
        slipway_api::client::Client::new(&format!("http://{}", server.addr), Some(READER.into()))
            .unwrap();
    let view = client.get(&format!("/api/v1/runs/{id}")).await.unwrap();
    let image = view["steps"][1]["output"].as_str().unwrap().to_string();
    let digest = registry.manifest_digest("acme/hello", &sha).unwrap();
    assert_eq!(image, format!("{host}/acme/hello@{digest}"));
    let artifacts = &view["steps"][0]["artifacts"];
    assert_eq!(
        artifacts,
        &serde_json::json!([
            {"path": "dist/app", "size": 7},
            {"path": "dist/sub/notes.txt", "size": 6}
        ])
    );
    let bytes = client
        .get_bytes(&format!(
            "/api/v1/runs/{id}/artifacts/compile/dist/sub/notes.txt"
        ))
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"notes\n");
    // Only recorded artifacts are served: no way out of the run's directory.
    for path in ["dist/nope", "..%2F..%2Fdb", "../../conf"] {
        let missing = client
            .get_bytes(&format!("/api/v1/runs/{id}/artifacts/compile/{path}"))
            .await;
        assert!(
            matches!(&missing, Err(slipway_api::client::ClientError::Api { status, .. }) if *status == 404),
            "{path}: {missing:?}"
        );
    }
    // The CLI lists and downloads them.
    let out_dir = TempDir::new("artifact-download");
    let (addr, id2, target) = (
        server.addr.clone(),
        id.clone(),
        out_dir.path().join("app.bin"),
    );
    let (list, get) = tokio::task::spawn_blocking(move || {
        let cli = |args: &[&str]| {
            std::process::Command::new(slipway_tests::slipway_bin())
                .args(args)
                .env("SLIPWAY_SERVER", format!("http://{addr}"))
                .env("SLIPWAY_TOKEN", READER)
                .output()
                .unwrap()
        };
        (
            cli(&["artifacts", &id2]),
            cli(&[
                "artifacts",
                &id2,
                "compile/dist/app",
                "-o",
                target.to_str().unwrap(),
            ]),
        )
    })
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("compile/dist/app  7 bytes")
            && listed.contains("compile/dist/sub/notes.txt"),
        "{listed}"
    );
    assert_eq!(
        get.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("app.bin")).unwrap(),
        "binary\n"
    );
    remove_images(&[format!("{host}/acme/hello:{sha}")]).await;
    server.shutdown.cancel();
}
