//! Directory caches are scoped like GitHub Actions' (issue 14): a pull
//! request reads its own scope, then its base branch's, then the default
//! branch's, and saves only in its own, which the default branch never
//! reads. Real webhooks, git, Docker and the server's cache on disk.

use slipway_tests::{
    BUSYBOX, REPO, Server, TempDir, docker, git_commit, git_repo, leftovers, pr_from, push, send,
    start_with, wait_done,
};

/// One step: prints `restored=<who>` from what it found in `deps/`
/// (restored by the cache, keyed by `lock.txt`, any `deps-` entry on a
/// miss) or `restored=none`, then puts `who.txt` there.
fn pipeline() -> String {
    format!(
        "steps:
  deps:
    image: {BUSYBOX}
    cache:
      - key: \"deps-{{{{ hash 'lock.txt' }}}}\"
        paths: [deps]
        restore_keys: [deps-]
    commands:
      - 'echo \"restored=$(cat deps/who 2>/dev/null || echo none)\"'
      - mkdir -p deps && cp who.txt deps/who
"
    )
}

/// A repository whose default branch is `master`, and a server building it.
async fn repo_and_server(tag: &str) -> (TempDir, Server) {
    let repo_dir = TempDir::new(tag);
    git_repo(
        &repo_dir,
        "master",
        &[(".slipway.yml", &pipeline()), ("who.txt", "nobody\n")],
    );
    let bare = repo_dir.path().join("origin.git");
    let server = start_with(
        &format!("file://{}", bare.display()),
        "default_branch = \"master\"\n",
    )
    .await;
    (repo_dir, server)
}

/// A commit writing `lock.txt` and `who.txt`, pushed to `git_ref`.
fn commit(repo_dir: &TempDir, git_ref: &str, lock: &str, who: &str) -> String {
    git_commit(
        repo_dir,
        &[git_ref],
        &[("lock.txt", lock), ("who.txt", &format!("{who}\n"))],
    )
}

/// Pull request #2 (the fixture's) for `head`; from a fork if `fork`.
async fn pull_request(server: &Server, head: &str, fork: bool, delivery: &str) -> String {
    let from = if fork { "mallory/Hello-World" } else { REPO };
    let (status, json) = send(server, "pull_request", delivery, pr_from(head, from)).await;
    assert_eq!(status, 202, "{json}");
    json["run"].as_str().unwrap().to_string()
}

async fn push_run(server: &Server, sha: &str, delivery: &str) -> String {
    let (status, json) = push(server, sha, delivery).await;
    assert_eq!(status, 202, "{json}");
    json["run"].as_str().unwrap().to_string()
}

/// Whether a line of `log` (the step's output, not its echoed command) is
/// `restored=<who>`.
fn restored(log: &str, who: &str) -> bool {
    log.lines()
        .any(|l| l.trim_end() == format!("restored={who}"))
}

/// Waits for the run; it must succeed. Returns the `deps` step's log.
async fn finished_log(server: &Server, id: &str) -> String {
    let run = wait_done(&server.store, id).await;
    let log = server.store.read_log(id, "deps").unwrap();
    assert_eq!(run.status.as_str(), "success", "{log}");
    assert_eq!(leftovers(&docker().await, id).await, Vec::<String>::new());
    log
}

/// The reproduction of issue 14: a fork's pull request saved
/// `deps-<hash>`, and the default branch restored it through
/// `restore_keys: [deps-]`. Now the fork's entry stays in its own scope.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_branch_does_not_restore_what_a_forks_pull_request_saved() {
    docker().await;
    let (repo_dir, server) = repo_and_server("origin-cache-fork").await;
    let fork_head = commit(&repo_dir, "refs/pull/2/head", "fork\n", "from-a-fork");
    let id = pull_request(&server, &fork_head, true, "fork-pr").await;
    let fork_log = finished_log(&server, &id).await;
    assert!(
        restored(&fork_log, "none") && fork_log.contains("` saved"),
        "{fork_log}"
    );

    let main = commit(&repo_dir, "refs/heads/master", "main\n", "from-main");
    let id = push_run(&server, &main, "push-after-fork").await;
    let log = finished_log(&server, &id).await;
    assert!(
        restored(&log, "none") && !log.contains("from-a-fork"),
        "the fork's file must not be in the default branch's workspace: {log}"
    );
    assert!(
        log.contains(": miss (scopes searched: Codertocat/Hello-World:refs/heads/master)"),
        "{log}"
    );
    assert!(
        fork_log.contains("saved in scope `Codertocat/Hello-World:pr-2`"),
        "{fork_log}"
    );
    assert!(
        log.contains("saved in scope `Codertocat/Hello-World:refs/heads/master`"),
        "{log}"
    );
    server.shutdown.cancel();
}

/// A pull request from a branch of the repository starts from the default
/// branch's cache; the default branch never starts from the pull request's.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_restores_the_default_branchs_cache_but_not_the_other_way_round() {
    docker().await;
    let (repo_dir, server) = repo_and_server("origin-cache-pr").await;
    let main = commit(&repo_dir, "refs/heads/master", "main 1\n", "from-main");
    let id = push_run(&server, &main, "push-1").await;
    let log = finished_log(&server, &id).await;
    assert!(restored(&log, "none"), "{log}");

    let head = commit(&repo_dir, "refs/pull/2/head", "pr\n", "from-the-pr");
    let id = pull_request(&server, &head, false, "same-repo-pr").await;
    let pr_log = finished_log(&server, &id).await;
    assert!(restored(&pr_log, "from-main"), "{pr_log}");

    // The pull request's entry is the newest `deps-` one; flat, it won.
    let main = commit(&repo_dir, "refs/heads/master", "main 2\n", "from-main-2");
    let id = push_run(&server, &main, "push-2").await;
    let log = finished_log(&server, &id).await;
    assert!(
        restored(&log, "from-main") && !log.contains("from-the-pr"),
        "{log}"
    );
    assert!(
        pr_log.contains("from scope `Codertocat/Hello-World:refs/heads/master`")
            && pr_log.contains("saved in scope `Codertocat/Hello-World:pr-2`"),
        "{pr_log}"
    );
    server.shutdown.cancel();
}
