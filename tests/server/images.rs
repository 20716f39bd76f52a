//! Issue 14: what an untrusted run builds stays inside that run; the step
//! images of trusted runs are what the operator (or the registry) has.

use slipway_tests::{
    BUSYBOX, TempDir, docker, git_commit, git_repo, image_id, operator_image, pr_from, push,
    remove_images, send, start_with, wait_done,
};

/// A fork's pull request built an image tagged with the name of a trusted
/// pipeline's step image; the daemon kept the tag, and the next push to
/// the default branch ran the fork's image as its step.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_pull_request_cannot_replace_the_image_a_trusted_pipeline_runs() {
    docker().await;
    let victim = format!("slipway.test/victim-{}:1", slipway_api::ids::new_run_id());
    let genuine = operator_image(&victim, "genuine");
    let repo_dir = TempDir::new("origin-images-fork");
    let (bare, trusted_sha) = git_repo(
        &repo_dir,
        "master",
        &[(
            ".slipway.yml",
            &format!("steps:\n  who: {{image: '{victim}', commands: [cat /whoami]}}\n"),
        )],
    );
    // The fork's head brings its own pipeline: a build under that name.
    let fork_sha = git_commit(
        &repo_dir,
        &["refs/pull/2/head"],
        &[
            (
                ".slipway.yml",
                &format!("steps:\n  image:\n    build: {{ tags: ['{victim}'] }}\n"),
            ),
            (
                "Dockerfile",
                &format!("FROM {BUSYBOX}\nRUN echo poisoned > /whoami\n"),
            ),
        ],
    );
    let server = start_with(
        &format!("file://{}", bare.display()),
        "default_branch = \"master\"\n",
    )
    .await;

    let body = pr_from(&fork_sha, "mallory/Hello-World");
    let (status, json) = send(&server, "pull_request", "images-fork-pr", body).await;
    assert_eq!(status, 202, "{json}");
    let fork_run = json["run"].as_str().unwrap().to_string();
    let fork = wait_done(&server.store, &fork_run).await;
    let fork_log = server.store.read_log(&fork_run, "image").unwrap();
    assert_eq!(fork.status.as_str(), "success", "{fork_log}");

    let (status, json) = push(&server, &trusted_sha, "images-trusted-push").await;
    assert_eq!(status, 202, "{json}");
    let trusted_run = json["run"].as_str().unwrap().to_string();
    let trusted = wait_done(&server.store, &trusted_run).await;
    let log = server.store.read_log(&trusted_run, "who").unwrap();
    let after = image_id(&victim);
    server.shutdown.cancel();
    remove_images(std::slice::from_ref(&victim)).await;
    assert_eq!(trusted.status.as_str(), "success", "{log}");
    assert!(
        log.contains("genuine") && !log.contains("poisoned"),
        "the trusted run ran the operator's image: {log}"
    );
    assert_eq!(after, Some(genuine), "the daemon's name is the operator's");
}
