//! What the scheduler's tests share: a pipeline from YAML, options, and a
//! run on the fake backend to its end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use slipway_engine::{Pipeline, StepStatus, Trigger, parse};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{RunOptions, RunReport, execute};
use crate::backend::Workspace;
use crate::event::RunEvent;
use crate::fake::FakeBackend;

pub fn pipeline(src: &str) -> Pipeline {
    let parsed = parse("test.yml", src);
    parsed
        .pipeline
        .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics))
}

pub fn options(jobs: usize) -> RunOptions {
    RunOptions {
        run_id: "r1".into(),
        jobs,
        trigger: Trigger {
            event: "push".into(),
            branch: Some("main".into()),
            ..Trigger::default()
        },
        secrets: HashMap::new(),
        workspace: Workspace::Empty,
        env: Vec::new(),
        skip: Vec::new(),
        files: Default::default(),
        cache_scope: crate::cache::CacheScope::single(crate::cache::LOCAL_SCOPE),
        credentials: Default::default(),
        limits: Default::default(),
    }
}

/// Runs to the end, collecting every event.
pub async fn go(
    fake: &Arc<FakeBackend>,
    p: &Pipeline,
    opts: RunOptions,
    cancel: CancellationToken,
) -> (RunReport, Vec<RunEvent>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = rx.recv().await {
            all.push(e);
        }
        all
    });
    let report = execute(fake.clone(), p, opts, tx, cancel)
        .await
        .expect("run");
    (report, collect.await.unwrap())
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn status_of<'a>(r: &'a RunReport, step: &str) -> &'a StepStatus {
    &r.steps.iter().find(|s| s.name == step).unwrap().status
}
