//! What the benchmarks measure with: Docker's own start times, the
//! resident memory of a process, percentiles.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio::sync::mpsc;

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

pub fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Container `start` events: (value of label `key`, or the container id) -> time in ns.
pub fn watch_starts(
    docker: bollard::Docker,
    key: &'static str,
) -> mpsc::UnboundedReceiver<(String, i64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), vec!["start".to_string()]),
        ]);
        let mut events = docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        while let Some(Ok(e)) = events.next().await {
            let Some(actor) = e.actor else { continue };
            let attrs = actor.attributes.unwrap_or_default();
            let name = attrs.get(key).cloned().or(actor.id).unwrap_or_default();
            if tx.send((name, e.time_nano.unwrap_or(0))).is_err() {
                break;
            }
        }
    });
    rx
}
