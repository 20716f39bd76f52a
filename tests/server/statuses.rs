//! Commit statuses reported to the forge: pending, then the outcome with a
//! link to the run; a forge that refuses them does not fail the run.

use slipway_tests::forge::FakeForge;
use slipway_tests::{
    BUSYBOX, REPO, TempDir, docker, git_repo, push, start_with, wait_done, wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn commit_statuses_go_pending_then_final_with_a_link_to_the_run() {
    docker().await;
    let forge = FakeForge::start().await;
    let repo_dir = TempDir::new("origin-status");
    let pipeline = format!("steps:\n  ok: {{image: {BUSYBOX}, commands: [true]}}\n");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let extra = format!(
        "api_url = \"{}\"\napi_token = \"forge-token-123\"\n[server]\npublic_url = \"https://ci.example.com\"\n",
        forge.url
    );
    let server = start_with(&format!("file://{}", bare.display()), &extra).await;
    let (_, json) = push(&server, &sha, "status").await;
    let id = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &id).await.status.as_str(),
        "success"
    );
    let states = wait_for(|| {
        let s = forge.commit_states();
        (s.last().map(String::as_str) == Some("success")).then_some(s)
    })
    .await;
    assert!(
        states.len() >= 2 && states[0] == "pending",
        "pending first, then the outcome: {states:?}"
    );
    let seen = forge.commit_statuses();
    let (target, auth, body) = seen.last().unwrap();
    assert_eq!(target, &format!("{REPO}@{sha}"));
    assert!(auth.ends_with("forge-token-123"), "{auth}");
    assert_eq!(body["context"], "slipway");
    assert_eq!(
        body["target_url"],
        format!("https://ci.example.com/api/v1/runs/{id}")
    );
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forge_that_refuses_statuses_does_not_fail_the_run() {
    docker().await;
    let forge = FakeForge::refusing_first(usize::MAX).await;
    let repo_dir = TempDir::new("origin-status-down");
    let pipeline = format!("steps:\n  ok: {{image: {BUSYBOX}, commands: [true]}}\n");
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let extra = format!(
        "api_url = \"{}\"\napi_token = \"forge-token-123\"\n",
        forge.url
    );
    let server = start_with(&format!("file://{}", bare.display()), &extra).await;
    let (_, json) = push(&server, &sha, "status-down").await;
    let id = json["run"].as_str().unwrap().to_string();
    assert_eq!(
        wait_done(&server.store, &id).await.status.as_str(),
        "success"
    );
    let notes = wait_for(|| {
        let run = server.store.get_run(&id).unwrap().unwrap();
        run.notes
            .iter()
            .any(|n| n.contains("passed"))
            .then_some(run.notes)
    })
    .await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("after 3 attempts") && n.contains("unavailable")),
        "{notes:?}"
    );
    assert!(
        forge.commit_statuses().len() >= 6,
        "each report was tried 3 times"
    );
    server.shutdown.cancel();
}
