//! A server whose Docker daemon stops answering (issue 16): it says so in
//! `/healthz`, takes no new run while it lasts, and runs what waited once
//! the daemon answers again. A binary of its own: the daemon's health is
//! one flag per process, and freezing it would hold every other server
//! test's runs too.

use std::time::{Duration, Instant};

use slipway_tests::{
    BUSYBOX, TempDir, Wedge, docker, git_repo, http, push, start_with_backend, wait_done,
};

/// `GET /healthz`: status and body.
async fn healthz(addr: &str) -> (u16, String) {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || http("GET", &addr, "/healthz", &[], b""))
        .await
        .unwrap()
}

async fn until(what: &str, secs: u64, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok().await {
        assert!(Instant::now() < deadline, "{what} within {secs}s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_whose_daemon_stops_answering_says_so_and_takes_no_run_until_it_answers() {
    docker().await;
    let repo_dir = TempDir::new("origin-wedged");
    let pipeline =
        format!("steps:\n  hello:\n    image: {BUSYBOX}\n    commands: ['echo hello']\n");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let wedge = Wedge::start();
    let server = start_with_backend(
        &format!("file://{}", bare.display()),
        "",
        wedge.backend(Duration::from_secs(2)).await,
    )
    .await;
    assert_eq!(healthz(&server.addr).await, (200, "ok".into()));

    wedge.freeze(true);
    // The probe (every 5 s, 2 s deadline) finds out.
    until(
        "/healthz saying the daemon does not answer",
        20,
        async || {
            let (status, body) = healthz(&server.addr).await;
            status == 503 && body.contains("Docker daemon not answering")
        },
    )
    .await;
    let (status, json) = push(&server, &sha, "wedged-1").await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let run = server.store.get_run(&id).unwrap().expect("the run");
    assert_eq!(
        run.status.as_str(),
        "queued",
        "no run is taken while the daemon does not answer"
    );

    wedge.freeze(false);
    until("/healthz ok again", 20, async || {
        healthz(&server.addr).await.0 == 200
    })
    .await;
    let run = wait_done(&server.store, &id).await;
    assert_eq!(run.status.as_str(), "success", "{:?}", run.error);
    server.shutdown.cancel();
}
