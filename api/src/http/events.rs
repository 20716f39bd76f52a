//! Server-Sent Events: one run's events (status, steps, log lines) and every
//! run's status changes, both resumable from `Last-Event-ID`.
//!
//! Each stream has a producer task that first replays stored events after
//! the resume point, then forwards live ones from the store's broadcast.
//! It subscribes before reading the store, and skips any event at or below
//! the last seq it sent, so nothing falls between replay and live and
//! nothing is sent twice. A subscriber that lags re-reads the store.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::http::auth::Reader;
use crate::http::{ApiError, AppState};
use crate::store::{AuditEntry, Event, EventKind, PreviewChange, Store, StoreError};

/// Stored events read per store visit when replaying.
const REPLAY_PAGE: usize = 128;

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Resume after this event id (for clients that cannot set
    /// `Last-Event-ID`); the header wins when both are given.
    after: Option<u64>,
    /// Comma-separated steps whose log lines to include (run streams only);
    /// empty for none; absent for all. A page showing one step's log need
    /// not receive every step's.
    logs: Option<String>,
}

/// `GET /api/v1/runs/{id}/events`: the run's events from the start (or after
/// `Last-Event-ID`), then live ones; ends with an `end` event once the run
/// has finished.
pub async fn run_events(
    State(state): State<AppState>,
    _: Reader,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let after = resume_point(&headers, &q)?.unwrap_or(0);
    let live = state.store.subscribe();
    let run = state.store.find_run(&id)?;
    let (mut follow, rx) = Follow::new(&state, after, false);
    follow.logs = q.logs.map(|l| {
        l.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    });
    tokio::spawn(follow.run(run.id, run.status.is_ended(), live));
    Ok(sse(rx))
}

/// `GET /api/v1/events`: every run's run-level events (created, status
/// changes), live; with `Last-Event-ID`, those missed since first.
pub async fn all_events(
    State(state): State<AppState>,
    _: Reader,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let after = resume_point(&headers, &q)?;
    let live = state.store.subscribe();
    let last = match after {
        Some(a) => a,
        None => state.store.last_seq()?,
    };
    let (follow, rx) = Follow::new(&state, last, true);
    tokio::spawn(follow.feed(live));
    Ok(sse(rx))
}

#[derive(Debug, Deserialize)]
pub struct AuditEventsQuery {
    after: Option<u64>,
    /// Only this repository's entries (`owner/name`).
    repo: Option<String>,
}

/// `GET /api/v1/audit/events`: audit entries as they are written, so a
/// board of environments and promotions updates the moment anything
/// changes; with `Last-Event-ID`, those after it first.
pub async fn audit_events(
    State(state): State<AppState>,
    _: Reader,
    headers: HeaderMap,
    Query(q): Query<AuditEventsQuery>,
) -> Result<Response, ApiError> {
    let after = resume_point(
        &headers,
        &EventsQuery {
            after: q.after,
            logs: None,
        },
    )?;
    let live = state.store.subscribe_audit();
    let after = match after {
        Some(a) => a,
        None => state.store.last_audit_seq()?,
    };
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(follow_audit(
        state.store.clone(),
        tx,
        state.shutdown.clone(),
        after,
        q.repo,
        live,
    ));
    Ok(sse(rx))
}

async fn follow_audit(
    store: Store,
    tx: mpsc::Sender<SseEvent>,
    shutdown: CancellationToken,
    after: u64,
    repo: Option<String>,
    mut live: broadcast::Receiver<Arc<AuditEntry>>,
) {
    let wanted = |e: &AuditEntry| crate::http::promotions::of_repo(repo.as_deref(), &e.repo);
    let send = |e: &AuditEntry| {
        SseEvent::default()
            .id(e.seq.to_string())
            .event("audit")
            .json_data(crate::http::views::AuditEntryView::from(e.clone()))
            .ok()
    };
    // Entries are numbered, flushed and announced in order (the store
    // holds one lock across the three), so the newest seq sent is enough
    // to skip what the replay already sent.
    let mut from = after;
    loop {
        let replay = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.audit_after(from)).await
        };
        let Ok(Ok(entries)) = replay else { return };
        for e in &entries {
            from = from.max(e.seq);
            if !wanted(e) {
                continue;
            }
            let Some(event) = send(e) else { return };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = live.recv() => r,
            };
            match received {
                Ok(e) if e.seq > from => {
                    from = e.seq;
                    if !wanted(&e) {
                        continue;
                    }
                    let Some(event) = send(&e) else { return };
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Missed some: read them from the store, then go on.
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// `GET /api/v1/previews/events`: a `preview` event whenever a preview
/// appears, changes or goes, live from now (previews are current state:
/// read the list after the stream opens).
pub async fn preview_events(
    State(state): State<AppState>,
    _: Reader,
) -> Result<Response, ApiError> {
    let mut live = state.store.subscribe_previews();
    let (tx, rx) = mpsc::channel(64);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                r = live.recv() => r,
            };
            let change = match received {
                Ok(change) => change,
                // Too far behind to say what changed: say something did.
                Err(broadcast::error::RecvError::Lagged(_)) => PreviewChange {
                    repo: String::new(),
                    number: 0,
                    change: "lagged",
                },
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let Ok(event) = SseEvent::default().event("preview").json_data(&change) else {
                return;
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(sse(rx))
}

fn resume_point(headers: &HeaderMap, q: &EventsQuery) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(q.after),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "Last-Event-ID must be the id of an event this server sent",
                )
            }),
    }
}

fn sse(rx: mpsc::Receiver<SseEvent>) -> Response {
    let events = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a stream's producer needs; it stops when the client goes, the
/// server shuts down, or (for a run) the run ends.
struct Follow {
    store: Store,
    tx: mpsc::Sender<SseEvent>,
    shutdown: CancellationToken,
    last: u64,
    /// The newest event looked at, sent or filtered out: replays start
    /// after it, so a filtered stream does not read the same events again.
    seen: u64,
    /// Steps whose log events are sent; `None` sends all.
    logs: Option<Vec<String>>,
    /// The every-run feed, which never ends by itself (a run's stream
    /// ends with its run).
    feed: bool,
}

/// Whether the stream goes on after a batch.
enum Next {
    More,
    Stop,
}

impl Follow {
    /// A producer that starts after event `after` and sends every step's
    /// log lines; the receiving end goes to the client.
    fn new(state: &AppState, after: u64, feed: bool) -> (Follow, mpsc::Receiver<SseEvent>) {
        let (tx, rx) = mpsc::channel(64);
        let follow = Follow {
            store: state.store.clone(),
            tx,
            shutdown: state.shutdown.clone(),
            last: after,
            seen: after,
            logs: None,
            feed,
        };
        (follow, rx)
    }

    async fn run(mut self, run: String, ended: bool, mut live: broadcast::Receiver<Arc<Event>>) {
        let store = self.store.clone();
        let id = run.clone();
        let replay = move |last: u64, limit: usize| {
            let (store, id) = (store.clone(), id.clone());
            tokio::task::spawn_blocking(move || store.run_events_page(&id, last, limit))
        };
        if let Next::Stop = self.replay(&replay).await {
            return;
        }
        // Everything of an ended run was stored before we looked.
        if ended {
            self.end().await;
            return;
        }
        loop {
            let received = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.tx.closed() => return,
                r = live.recv() => r,
            };
            let next = match received {
                Ok(event) if event.run == run => self.send(&event).await,
                Ok(_) => Next::More,
                Err(broadcast::error::RecvError::Lagged(_)) => self.replay(&replay).await,
                Err(broadcast::error::RecvError::Closed) => Next::Stop,
            };
            if let Next::Stop = next {
                return;
            }
        }
    }

    async fn feed(mut self, mut live: broadcast::Receiver<Arc<Event>>) {
        let store = self.store.clone();
        // Run-level events only: small, read in one go.
        let replay = move |last: u64, _limit: usize| {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.feed_after(last))
        };
        if let Next::Stop = self.replay(&replay).await {
            return;
        }
        loop {
            let received = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.tx.closed() => return,
                r = live.recv() => r,
            };
            let next = match received {
                Ok(event) if matches!(event.kind, EventKind::Run { .. }) => self.send(&event).await,
                Ok(_) => Next::More,
                Err(broadcast::error::RecvError::Lagged(_)) => self.replay(&replay).await,
                Err(broadcast::error::RecvError::Closed) => Next::Stop,
            };
            if let Next::Stop = next {
                return;
            }
        }
    }

    /// Sends what is stored after the last event sent, a page at a time
    /// (`fetch` reads up to a limit of events after a seq), until a short
    /// page: a long log is never held in memory whole.
    async fn replay(
        &mut self,
        fetch: &impl Fn(u64, usize) -> tokio::task::JoinHandle<Result<Vec<Event>, StoreError>>,
    ) -> Next {
        // Events this stream filters out do not move `last`, so pages
        // are read from a cursor of their own.
        let mut from = self.last.max(self.seen);
        loop {
            let events = match fetch(from, REPLAY_PAGE).await {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read stored events");
                    return Next::Stop;
                }
                Err(_) => return Next::Stop,
            };
            let full = events.len() >= REPLAY_PAGE;
            for event in events {
                from = from.max(event.seq);
                if let Next::Stop = self.send(&event).await {
                    return Next::Stop;
                }
            }
            if !full {
                return Next::More;
            }
        }
    }

    /// Sends a run's event; a final status ends the stream.
    async fn send(&mut self, event: &Event) -> Next {
        if event.seq <= self.last {
            return Next::More;
        }
        self.seen = self.seen.max(event.seq);
        if let (EventKind::Log { step, .. }, Some(wanted)) = (&event.kind, &self.logs)
            && !wanted.contains(step)
        {
            return Next::More;
        }
        if let Next::Stop = self.forward(event).await {
            return Next::Stop;
        }
        if !self.feed && event.ends_run() {
            self.end().await;
            return Next::Stop;
        }
        Next::More
    }

    async fn forward(&mut self, event: &Event) -> Next {
        let name = match event.kind {
            EventKind::Run { .. } => "run",
            EventKind::Step { .. } => "step",
            EventKind::Log { .. } => "log",
            EventKind::Note { .. } => "note",
        };
        let Ok(sse) = SseEvent::default()
            .id(event.seq.to_string())
            .event(name)
            .json_data(event)
        else {
            return Next::Stop;
        };
        self.last = event.seq;
        match self.tx.send(sse).await {
            Ok(()) => Next::More,
            Err(_) => Next::Stop,
        }
    }

    /// No id: a client resuming after `end` resumes after the last event.
    async fn end(&self) {
        let _ = self
            .tx
            .send(SseEvent::default().event("end").data("the run has ended"))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::http::tests::test_state;
    use crate::http::{AppState, app};
    use crate::store::{PreviewRecord, Promotion, PromotionStatus, RunStatus};

    const READER: &str =
        "[[tokens]]\nuser = \"rita\"\ntoken = \"rita-token-0123456789x\"\nscope = \"read\"\n";

    /// A stream opened with rita's read token.
    async fn open(state: &AppState, uri: &str) -> Body {
        let req = Request::get(uri)
            .header("Authorization", "Bearer rita-token-0123456789x")
            .body(Body::empty())
            .unwrap();
        app(state.clone()).oneshot(req).await.unwrap().into_body()
    }

    /// A stream that ends by itself (a finished run's), read whole.
    async fn read_all(state: &AppState, uri: &str) -> String {
        let bytes = open(state, uri).await.collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Reads a stream that stays open into `text` until `done(text)`.
    async fn read_until(body: &mut Body, text: &mut String, done: impl Fn(&str) -> bool) {
        while !done(text) {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap_or_else(|_| panic!("the stream stalled after:\n{text}"))
                .expect("the stream is still open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Stores run `id` of a pipeline with steps `a` and `b`, as running.
    fn running_run(state: &AppState, id: &str) -> crate::store::RunRecord {
        let parsed = slipway_engine::parse::parse(
            ".slipway.yml",
            "steps:\n  a:\n    image: x\n    commands: [a]\n  b:\n    image: x\n    commands: [b]\n",
        );
        let pipeline = parsed.pipeline.expect("valid pipeline");
        let run = crate::runs::record::new_run(id, &pipeline, ".slipway.yml", "push", None);
        state.store.put_run(&run).unwrap();
        run
    }

    fn promotion(id: &str, repo: &str) -> Promotion {
        Promotion::pending_for_test(id, repo, "staging", "sha256:aa")
    }

    fn done(state: AppState, dir: std::path::PathBuf) {
        drop(state);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_run_stream_sends_only_the_logs_asked_for() {
        let (state, dir) = test_state(READER);
        let mut run = running_run(&state, "r1");
        state.store.append_log("r1", "a", "from a\n").unwrap();
        state.store.append_log("r1", "b", "from b\n").unwrap();
        run.status = RunStatus::Success;
        state.store.put_run(&run).unwrap();

        let all = read_all(&state, "/api/v1/runs/r1/events").await;
        assert!(all.contains("from a") && all.contains("from b"), "{all}");
        let only_b = read_all(&state, "/api/v1/runs/r1/events?logs=b").await;
        assert!(
            only_b.contains("from b") && !only_b.contains("from a"),
            "{only_b}"
        );
        assert!(
            only_b.contains("\"status\":\"success\""),
            "run events still come: {only_b}"
        );
        assert!(only_b.contains("event: end"), "{only_b}");
        let none = read_all(&state, "/api/v1/runs/r1/events?logs=").await;
        assert!(!none.contains("event: log"), "{none}");
        let both = read_all(&state, "/api/v1/runs/r1/events?logs=a,b").await;
        assert!(both.contains("from a") && both.contains("from b"), "{both}");
        done(state, dir);
    }

    /// Resuming the every-run feed replays finished runs and goes on: the
    /// end of one run is not the end of the feed.
    #[tokio::test]
    async fn a_resumed_feed_goes_past_runs_that_ended() {
        let (state, dir) = test_state(READER);
        for id in ["first", "second"] {
            let mut run = running_run(&state, id);
            run.status = RunStatus::Success;
            state.store.put_run(&run).unwrap();
        }
        let mut body = open(&state, "/api/v1/events?after=0").await;
        let mut text = String::new();
        read_until(&mut body, &mut text, |t| {
            t.matches("\"status\":\"success\"").count() == 2
        })
        .await;
        assert!(text.contains("\"run\":\"second\""), "{text}");
        assert!(!text.contains("event: end"), "{text}");
        drop(body);
        done(state, dir);
    }

    /// Writers racing still announce entries in number order, each after
    /// it is durable, so a follower may resume after the last it saw.
    #[tokio::test]
    async fn concurrent_writers_announce_audit_entries_in_order() {
        let (state, dir) = test_state("");
        let store = state.store.clone();
        let mut live = store.subscribe_audit();
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .create_promotion(&promotion(&format!("p{i}"), &format!("acme/r{i}")))
                        .unwrap()
                        .unwrap();
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let mut seqs = Vec::new();
        while seqs.len() < 8 {
            let e = live.recv().await.unwrap();
            assert!(
                e.seq <= store.last_audit_seq().unwrap(),
                "announced before durable"
            );
            seqs.push(e.seq);
        }
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
        assert_eq!(store.audit_after(seqs[3]).unwrap().len(), 4);
        done(state, dir);
    }

    #[tokio::test]
    async fn audit_entries_stream_as_they_are_written_for_one_repository() {
        let (state, dir) = test_state(READER);
        let store = state.store.clone();
        store
            .create_promotion(&promotion("p1", "acme/web"))
            .unwrap()
            .unwrap();
        let mut body = open(&state, "/api/v1/audit/events?after=0&repo=acme/web").await;
        let mut text = String::new();
        // The stored entry first, then live ones as they are committed.
        read_until(&mut body, &mut text, |t| {
            t.contains("\"action\":\"requested\"")
        })
        .await;
        store
            .create_promotion(&promotion("other", "acme/api"))
            .unwrap()
            .unwrap();
        store
            .change_promotion("p1", |p| {
                p.status = PromotionStatus::Rejected;
                Ok(("alice".into(), "rejected".into(), Some("not yet".into())))
            })
            .unwrap()
            .unwrap();
        read_until(&mut body, &mut text, |t| {
            t.contains("\"action\":\"rejected\"")
        })
        .await;
        assert!(text.contains("\"comment\":\"not yet\""), "{text}");
        assert!(text.contains("event: audit"), "{text}");
        assert!(
            !text.contains("acme/api"),
            "another repository's entry: {text}"
        );
        drop(body);
        done(state, dir);
    }

    #[tokio::test]
    async fn preview_changes_stream_as_they_are_stored() {
        let (state, dir) = test_state(READER);
        let mut body = open(&state, "/api/v1/previews/events").await;
        let preview = PreviewRecord {
            repo: "acme/web".into(),
            number: 7,
            sha: "abc".into(),
            run: "r1".into(),
            image: "r/acme/web@sha256:aa".into(),
            container: "c".into(),
            network: "n".into(),
            ip: "10.0.0.2".into(),
            port: 8080,
            url: "http://pr-7.example/".into(),
            created_ms: 1,
            updated_ms: 1,
            comment_id: None,
            deployment_id: None,
        };
        state.store.put_preview(&preview).unwrap();
        state.store.delete_preview("acme/web", 7).unwrap();
        // Deleting what is not there announces nothing.
        state.store.delete_preview("acme/web", 7).unwrap();
        let mut text = String::new();
        read_until(&mut body, &mut text, |t| t.contains("removed")).await;
        let updated = text.find("\"change\":\"updated\"").expect("updated first");
        let removed = text.find("\"change\":\"removed\"").unwrap();
        assert!(updated < removed, "{text}");
        assert!(
            text.contains("event: preview") && text.contains("\"number\":7"),
            "{text}"
        );
        drop(body);
        done(state, dir);
    }
}
