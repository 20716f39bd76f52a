//! Server-sent events: a run's events live and resumed from the last id
//! seen, and the feed of every run.

use std::time::Duration;

use slipway_tests::{BUSYBOX, READER, TOKENS, TempDir, docker, git_repo, push, start_with};

/// Reads events until `stop` says so or the stream ends.
async fn read_events(
    events: &mut slipway_api::client::EventStream,
    mut stop: impl FnMut(&slipway_api::client::SseMessage) -> bool,
) -> Vec<slipway_api::client::SseMessage> {
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .expect("an event within 60 s")
            .expect("a readable stream");
        let Some(message) = next else { return out };
        let done = stop(&message);
        out.push(message);
        if done {
            return out;
        }
    }
}

fn data(message: &slipway_api::client::SseMessage) -> serde_json::Value {
    serde_json::from_str(&message.data).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_stream_live_and_resume_from_last_event_id() {
    docker().await;
    let repo_dir = TempDir::new("origin-sse");
    let pipeline = format!(
        "steps:\n  talk: {{image: {BUSYBOX}, commands: ['echo first', 'sleep 2', 'echo second', 'echo third']}}\n  after: {{image: {BUSYBOX}, needs: [talk], commands: ['echo done']}}\n"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let client =
        slipway_api::client::Client::new(&format!("http://{}", server.addr), Some(READER.into()))
            .unwrap();
    let anonymous =
        slipway_api::client::Client::new(&format!("http://{}", server.addr), None).unwrap();
    assert!(matches!(
        anonymous.events("/api/v1/events", None).await,
        Err(slipway_api::client::ClientError::Api { status, .. }) if status == 401
    ));
    // The feed of every run, opened before the run exists.
    let mut feed = client.events("/api/v1/events", None).await.unwrap();

    let (status, json) = push(&server, &sha, "sse-1").await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();

    // Live: the first line arrives on its own, while the step still sleeps.
    let path = format!("/api/v1/runs/{id}/events");
    let mut first = client.events(&path, None).await.unwrap();
    let before = read_events(&mut first, |m| m.event == "log").await;
    let first_log = before.last().unwrap();
    let text = data(first_log)["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("first\n") && !text.contains("second"),
        "{text:?}"
    );
    assert!(
        !before
            .iter()
            .any(|m| m.event == "step" && data(m)["status"] == "success"),
        "the first line came only after the step ended: {before:?}"
    );
    drop(first);

    // Resume after the last event seen: nothing repeated, nothing missed.
    let last = first_log.id.clone().unwrap();
    let mut second = client.events(&path, Some(&last)).await.unwrap();
    let after = read_events(&mut second, |m| m.event == "end").await;
    assert_eq!(after.last().unwrap().event, "end");
    assert!(
        second.next().await.unwrap().is_none(),
        "the stream closes after `end`"
    );
    let all: Vec<_> = before
        .iter()
        .chain(&after)
        .filter(|m| m.id.is_some())
        .collect();
    let seqs: Vec<u64> = all
        .iter()
        .map(|m| m.id.as_ref().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for step in ["talk", "after"] {
        let streamed: String = all
            .iter()
            .filter(|m| m.event == "log" && data(m)["step"] == step)
            .map(|m| data(m)["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            streamed,
            server.store.read_log(&id, step).unwrap(),
            "{step}"
        );
    }
    let statuses: Vec<String> = all
        .iter()
        .filter(|m| m.event == "run" || m.event == "step")
        .map(|m| {
            let d = data(m);
            format!(
                "{} {}",
                d["step"].as_str().unwrap_or("run"),
                d["status"].as_str().unwrap()
            )
        })
        .collect();
    let position = |s: &str| {
        statuses
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("no `{s}` in {statuses:?}"))
    };
    assert!(position("talk running") < position("talk success"));
    assert!(position("talk success") < position("after running"));
    assert_eq!(statuses.last().unwrap(), "run success", "{statuses:?}");

    // A finished run replays whole and ends.
    let mut replay = client.events(&path, None).await.unwrap();
    let whole = read_events(&mut replay, |m| m.event == "end").await;
    assert_eq!(whole.iter().filter(|m| m.id.is_some()).count(), all.len());

    // The feed saw this run queue, run and succeed, and nothing of its steps.
    let seen = read_events(&mut feed, |m| data(m)["status"] == "success").await;
    assert!(
        seen.iter()
            .all(|m| m.event == "run" && data(m)["run"] == id.as_str())
    );
    let feed_statuses: Vec<_> = seen.iter().map(|m| data(m)["status"].clone()).collect();
    assert_eq!(feed_statuses, ["queued", "running", "success"]);
    assert_eq!(data(&seen[0])["sha"], sha.as_str());
    // ...and resumes after any of its ids.
    let mut resumed = client
        .events("/api/v1/events", seen[0].id.as_deref())
        .await
        .unwrap();
    let again = read_events(&mut resumed, |m| data(m)["status"] == "success").await;
    assert_eq!(again, seen[1..]);
    server.shutdown.cancel();
}
