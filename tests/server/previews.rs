//! Previews: a live container per pull request behind the preview proxy,
//! updated without errors, removed on close, on idle and over the cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_tests::forge::{Call, FakeForge};
use slipway_tests::{
    Labelled, REPO, Server, TempDir, docker, github_fixture, labelled, pr_body, pr_event,
    remove_images, restart, send, start_with,
};

/// Both tests preview the same pull request (its containers are found
/// by label), so they take turns.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// GET through the preview proxy, by host name.
fn get(proxy: &str, host: &str, path: &str) -> (u16, String) {
    slipway_tests::http("GET", proxy, path, &[("Host", host)], b"")
}

/// Where pull request #2 of `Codertocat/Hello-World` answers: a host name
/// of its own (`pr-<n>--<owner>--<name>`).
const SITE: &str = "pr-2--codertocat--hello-world.preview.test";

pub(crate) async fn wait_preview(server: &Server, sha: &str) -> slipway_api::store::PreviewRecord {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(p) = server.store.preview(REPO, 2).unwrap()
            && p.sha == sha
        {
            return p;
        }
        let notes: Vec<String> = server
            .store
            .list_runs(10)
            .unwrap()
            .into_iter()
            .flat_map(|r| r.notes.into_iter().chain(r.error))
            .collect();
        assert!(Instant::now() < deadline, "no preview of {sha}: {notes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The repository of these tests: its pull request #2 serves `commit <sha>`
/// from `acme/preview`, health-checked on `/index.html`.
pub(crate) fn preview_repo(host: &str) -> (TempDir, std::path::PathBuf, String) {
    slipway_tests::preview_repo(host, "acme/preview", Some("/index.html"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_request_gets_a_live_preview_updated_without_errors_and_removed_on_close() {
    let _turn = SERIAL.lock().await;
    let d = docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let forge = FakeForge::start().await;
    let (repo_dir, bare, first) = preview_repo(&host);
    let server = start_with(
        &format!("file://{}", bare.display()),
        &format!(
            "api_url = \"{}\"\napi_token = \"gh-token\"\n[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\n",
            forge.url
        ),
    )
    .await;
    let proxy = server.preview_addr();
    let site = SITE;
    // A network of the preview's name that is not this server's (another
    // server's, or one a crash left): Docker would find the name
    // ambiguous, so the preview joins its own network by id.
    let _ = std::process::Command::new("docker")
        .args([
            "network",
            "rm",
            "slipway-preview-codertocat--hello-world-pr-2",
        ])
        .output();
    let stranger = slipway_tests::docker_cli(&[
        "network",
        "create",
        "slipway-preview-codertocat--hello-world-pr-2",
    ]);

    // Opened: the preview serves the head commit at its own host name.
    let (status, body) = pr_event(&server, "pull_request.opened.json", &first, "pr-opened").await;
    assert_eq!(status, 202, "{body}");
    let live = wait_preview(&server, &first).await;
    assert_eq!(
        live.url,
        format!("http://{site}:{}/", proxy.rsplit(':').next().unwrap())
    );
    let p = proxy.clone();
    let (status, page) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
        .await
        .unwrap();
    assert_eq!(
        (status, page.trim()),
        (200, format!("commit {first}").as_str())
    );
    // Issue 14: by path (the proxy's one origin, shared by every preview)
    // it is not proxied unless `preview_routing = "host+path"`; the page
    // says where it is instead.
    let p = proxy.clone();
    let (status, page) = tokio::task::spawn_blocking(move || {
        get(
            &p,
            "127.0.0.1",
            "/previews/Codertocat/Hello-World/2/index.html",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 404, "{page}");
    assert!(!page.contains(&first), "proxied by path: {page}");
    assert!(
        page.contains("Path routing is off")
            && page.contains(&format!("href=\"{}index.html\"", live.url)),
        "{page}"
    );
    let p = proxy.clone();
    let (status, page) = tokio::task::spawn_blocking(move || {
        get(&p, "pr-9--codertocat--hello-world.preview.test", "/")
    })
    .await
    .unwrap();
    assert_eq!(status, 404);
    assert!(
        page.contains("Codertocat/Hello-World #2") && page.contains(&live.url),
        "the 404 names what exists: {page}"
    );
    assert!(!page.contains("/previews/"), "no path URL: {page}");

    // Synchronize: a client polling every 20 ms through the swap sees
    // no failed request, and then the new commit.
    let second = slipway_tests::git_commit(
        &repo_dir,
        &["refs/heads/changes", "refs/pull/2/head"],
        &[("NOTE", "two")],
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (p, stop, second) = (proxy.clone(), stop.clone(), second.clone());
        tokio::task::spawn_blocking(move || {
            let (mut failures, mut seen_new, mut polls) = (Vec::new(), false, 0);
            let deadline = Instant::now() + Duration::from_secs(180);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let (status, page) = get(&p, site, "/");
                polls += 1;
                if status != 200 {
                    failures.push(format!("{status}: {page}"));
                } else if page.contains(&second) {
                    seen_new = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (failures, seen_new, polls)
        })
    };
    let (status, body) =
        pr_event(&server, "pull_request.synchronize.json", &second, "pr-sync").await;
    assert_eq!(status, 202, "{body}");
    let updated = wait_preview(&server, &second).await;
    // Let the old container drain and go while the client keeps polling.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (failures, seen_new, polls) = poller.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {polls} polls failed: {failures:?}",
        failures.len()
    );
    assert!(seen_new, "the new commit was served ({polls} polls)");
    assert_ne!(updated.container, live.container);
    let containers = labelled(&d, "slipway.preview").await.containers;
    assert_eq!(containers.len(), 1, "the old container is gone");

    // One comment, edited in place.
    {
        let seen = forge.calls();
        let creates = seen
            .iter()
            .filter(|c| matches!(c, Call::CommentCreated { .. }))
            .count();
        assert_eq!(creates, 1, "{seen:?}");
        assert!(
            seen.iter().all(|c| !matches!(c, Call::CommentCreated { body, .. } | Call::CommentEdited { body, .. }
                if body.contains("/previews/"))),
            "a path URL in a comment: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|c| matches!(c, Call::CommentEdited { id, body }
                if *id == 1000 && body.contains(&second))),
            "{seen:?}"
        );
    }

    // Closed: 404, and no container or network left.
    let (status, body) = pr_event(&server, "pull_request.closed.json", &second, "pr-closed").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("closed")),
        "{body}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.store.preview(REPO, 2).unwrap().is_some() {
        assert!(Instant::now() < deadline, "the preview was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = proxy.clone();
    let (status, _) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    let Labelled {
        containers: left,
        networks: nets,
        ..
    } = labelled(&d, "slipway.preview").await;
    assert!(left.is_empty(), "{left:?}");
    assert!(nets.is_empty(), "{nets:?}");
    assert!(
        d.inspect_image(&updated.image).await.is_err(),
        "the preview image is removed"
    );
    // The forge hears about the removal just after it is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !forge
        .deployment_statuses()
        .iter()
        .any(|(_, b)| b.starts_with("inactive"))
    {
        assert!(
            Instant::now() < deadline,
            "no inactive deployment status: {:?}",
            forge.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = forge.calls();
    assert!(
        seen.iter()
            .rev()
            .find_map(|c| match c {
                Call::CommentEdited { body, .. } => Some(body),
                _ => None,
            })
            .is_some_and(|b| b.contains("removed")),
        "{seen:?}"
    );
    // A deployment per commit to `preview/pr-2`, each marked live with
    // the URL; the last one inactive after the close.
    let deployments = forge.deployments();
    assert_eq!(deployments.len(), 2, "{seen:?}");
    assert_eq!(deployments[0].1, format!("{first} preview/pr-2"));
    assert_eq!(deployments[1].1, format!("{second} preview/pr-2"));
    let statuses = forge.deployment_statuses();
    assert_eq!(statuses.len(), 3, "{seen:?}");
    assert_eq!(
        statuses[0],
        (deployments[0].0, format!("success {}", live.url))
    );
    assert_eq!(statuses[1].0, deployments[1].0);
    assert!(statuses[1].1.starts_with("success http://pr-2--"));
    assert_eq!(statuses[2], (deployments[1].0, "inactive ".to_string()));
    remove_images(&[first, second].map(|sha| format!("{host}/acme/preview:{sha}"))).await;
    server.shutdown.cancel();
    slipway_tests::docker_cli(&["network", "rm", stranger.trim()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preview_survives_a_server_restart_and_goes_when_idle_past_its_ttl() {
    let _turn = SERIAL.lock().await;
    let d = docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let (_repo_dir, bare, first) = preview_repo(&host);
    let url = format!("file://{}", bare.display());
    let settings = "[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\npreview_ttl = \"4s\"\n";
    let server = start_with(&url, settings).await;
    let site = SITE;
    let (status, body) = pr_event(&server, "pull_request.opened.json", &first, "ttl-opened").await;
    assert_eq!(status, 202, "{body}");
    let live = wait_preview(&server, &first).await;
    let server = restart(server, &url, settings).await;
    let p = server.preview_addr();
    let (status, page) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
        .await
        .unwrap();
    assert_eq!(
        (status, page.trim()),
        (200, format!("commit {first}").as_str()),
        "served after a restart"
    );
    assert_eq!(
        server.store.preview(REPO, 2).unwrap().unwrap().container,
        live.container
    );
    // Nobody asks for it now: within the TTL and a sweep it is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.store.preview(REPO, 2).unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "an idle preview outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let p = server.preview_addr();
    let (status, _) = tokio::task::spawn_blocking(move || get(&p, site, "/"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(
        d.inspect_container(&live.container, None).await.is_err(),
        "its container is gone"
    );
    remove_images(&[format!("{host}/acme/preview:{first}")]).await;
    server.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn previews_over_the_repository_cap_go_oldest_first() {
    let _turn = SERIAL.lock().await;
    let d = docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let (repo_dir, bare, first) = preview_repo(&host);
    let server = start_with(
        &format!("file://{}", bare.display()),
        // Path routing too, for setups without wildcard DNS.
        "max_previews = 1\n[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\npreview_routing = \"host+path\"\n",
    )
    .await;
    let (status, body) = pr_event(&server, "pull_request.opened.json", &first, "cap-2").await;
    assert_eq!(status, 202, "{body}");
    let two = wait_preview(&server, &first).await;
    // Pull request #3, on a commit of its own.
    let third = slipway_tests::git_commit(&repo_dir, &["refs/pull/3/head"], &[("NOTE", "three")]);
    let body = pr_body("pull_request.opened.json", &third)
        .replace("\"number\": 2", "\"number\": 3")
        .replace("/pulls/2", "/pulls/3");
    let (status, text) = send(&server, "pull_request", "cap-3", body).await;
    assert_eq!(status, 202, "{text}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.store.preview(REPO, 3).unwrap().is_none()
        || server.store.preview(REPO, 2).unwrap().is_some()
    {
        assert!(
            Instant::now() < deadline,
            "#3 did not replace #2: {:?}",
            server.store.previews()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        d.inspect_container(&two.container, None).await.is_err(),
        "#2's container is gone"
    );
    for (host, path) in [
        ("pr-3--codertocat--hello-world.preview.test", "/"),
        ("127.0.0.1", "/previews/Codertocat/Hello-World/3/index.html"),
    ] {
        let p = server.preview_addr();
        let (status, page) = tokio::task::spawn_blocking(move || get(&p, host, path))
            .await
            .unwrap();
        assert_eq!(
            (status, page.trim()),
            (200, format!("commit {third}").as_str()),
            "{path}"
        );
    }
    let three = server.store.preview(REPO, 3).unwrap().unwrap();
    let (status, body) = pr_event(&server, "pull_request.closed.json", &first, "cap-close-2").await;
    assert_eq!(status, 200, "{body}");
    // Close #3 too.
    let close3 =
        github_fixture("pull_request.closed.json").replace("\"number\": 2", "\"number\": 3");
    send(&server, "pull_request", "cap-close-3", close3).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.store.preview(REPO, 3).unwrap().is_some() {
        assert!(Instant::now() < deadline, "#3 was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.inspect_container(&three.container, None).await.is_err());
    remove_images(&[first, third].map(|sha| format!("{host}/acme/preview:{sha}"))).await;
    server.shutdown.cancel();
}
