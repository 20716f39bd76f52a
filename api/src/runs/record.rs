//! Turns runner events into what the store keeps: the run record with its
//! step states, and log chunks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use slipway_engine::Pipeline;
use slipway_runner::{LogStream, RunEvent};

use crate::ids::now_ms;
use crate::store::{RunRecord, RunStatus, StepRecord, StepStatus, Store, StoreError};

/// Log lines are written in chunks of at most this many bytes per step, so a
/// chatty step costs a few sled writes per second, not one per line.
const CHUNK_BYTES: usize = 16 * 1024;

/// Buffered lines reach the store, and whoever follows the run live, at
/// most this late.
pub const LIVE_LOG_DELAY: Duration = Duration::from_millis(200);

/// A new run record with every step pending.
pub fn new_run(
    id: &str,
    pipeline: &Pipeline,
    file: &str,
    event: &str,
    branch: Option<&str>,
) -> RunRecord {
    RunRecord {
        id: id.into(),
        pipeline: pipeline.name.clone(),
        file: file.into(),
        event: event.into(),
        branch: branch.map(Into::into),
        status: RunStatus::Running,
        created_ms: now_ms(),
        finished_ms: None,
        error: None,
        steps: step_records(pipeline),
        source: None,
        notes: Vec::new(),
        rerun: None,
        deploy: None,
    }
}

/// Every step of a pipeline, pending.
pub fn step_records(pipeline: &Pipeline) -> Vec<StepRecord> {
    pipeline
        .steps
        .iter()
        .map(|s| StepRecord {
            name: s.name.clone(),
            needs: s.needs.clone(),
            status: StepStatus::Pending,
            exit_code: None,
            attempts: 0,
            started_ms: None,
            finished_ms: None,
            output: None,
            artifacts: Vec::new(),
        })
        .collect()
}

pub struct Recorder {
    store: Store,
    run_id: String,
    /// Lines not yet written, per step.
    pending: HashMap<String, String>,
    /// When the oldest of those lines arrived.
    pending_since: Option<Instant>,
    /// Written with the final status, in the same update, so nobody sees
    /// the run ended without it (e.g. who cancelled it).
    final_error: Option<String>,
}

impl Recorder {
    pub fn new(store: Store, run_id: &str) -> Recorder {
        Recorder {
            store,
            run_id: run_id.into(),
            pending: HashMap::new(),
            pending_since: None,
            final_error: None,
        }
    }

    /// An error to record together with the final status.
    pub fn set_final_error(&mut self, error: Option<String>) {
        self.final_error = error;
    }

    /// How long until buffered lines are due to be written; `None` when
    /// nothing is buffered.
    pub fn next_flush(&self) -> Option<Duration> {
        self.pending_since
            .map(|since| LIVE_LOG_DELAY.saturating_sub(since.elapsed()))
    }

    /// Writes buffered lines if they have waited long enough.
    pub fn flush_if_due(&mut self) -> Result<(), StoreError> {
        if self.next_flush() == Some(Duration::ZERO) {
            self.flush_logs()?;
        }
        Ok(())
    }

    pub fn apply(&mut self, event: &RunEvent) -> Result<(), StoreError> {
        match event {
            RunEvent::Log { step, stream, line } => {
                let buf = self.pending.entry(step.clone()).or_default();
                if *stream == LogStream::System {
                    buf.push_str("slipway: ");
                }
                buf.push_str(line);
                buf.push('\n');
                self.pending_since.get_or_insert_with(Instant::now);
                if buf.len() >= CHUNK_BYTES {
                    self.flush_step(step)?;
                }
            }
            RunEvent::StepStarted { step, attempt } => {
                let attempt = *attempt;
                self.update_step(step, |s| {
                    s.status = StepStatus::Running;
                    s.attempts = attempt;
                    s.started_ms.get_or_insert_with(now_ms);
                })?;
            }
            RunEvent::StepFinished {
                step,
                status,
                exit_code,
                attempts,
                ..
            } => {
                self.flush_step(step)?;
                self.update_step(step, |s| {
                    s.status = status.into();
                    s.exit_code = *exit_code;
                    s.attempts = *attempts;
                    s.finished_ms = Some(now_ms());
                })?;
            }
            RunEvent::StepSettled { step, status } => {
                self.flush_step(step)?;
                self.update_step(step, |s| s.status = status.into())?;
            }
            RunEvent::RunError { message } => {
                let message = message.clone();
                self.store
                    .update_run(&self.run_id, |r| r.error = Some(message))?;
            }
            RunEvent::RunFinished { status, .. } => {
                self.flush_logs()?;
                let error = self.final_error.take();
                self.store.update_run(&self.run_id, |r| {
                    if error.is_some() {
                        r.error = error;
                    }
                    r.status = (*status).into();
                    r.finished_ms = Some(now_ms());
                })?;
                self.store.flush()?;
            }
            RunEvent::StepOutput { step, image } => {
                let image = image.clone();
                self.update_step(step, |s| s.output = Some(image))?;
            }
            RunEvent::Artifacts { step, files } => {
                let files = files.clone();
                self.update_step(step, |s| s.artifacts = files)?;
            }
            RunEvent::RunStarted { .. }
            | RunEvent::ImagePull { .. }
            | RunEvent::ServiceStarted { .. } => {}
        }
        Ok(())
    }

    /// Writes every buffered log line.
    pub fn flush_logs(&mut self) -> Result<(), StoreError> {
        let steps: Vec<String> = self.pending.keys().cloned().collect();
        for step in steps {
            self.flush_step(&step)?;
        }
        self.pending_since = None;
        Ok(())
    }

    fn flush_step(&mut self, step: &str) -> Result<(), StoreError> {
        if let Some(chunk) = self.pending.remove(step)
            && !chunk.is_empty()
        {
            self.store.append_log(&self.run_id, step, &chunk)?;
        }
        Ok(())
    }

    fn update_step(
        &self,
        step: &str,
        change: impl FnOnce(&mut StepRecord),
    ) -> Result<(), StoreError> {
        self.store.update_run(&self.run_id, |r| {
            if let Some(s) = r.steps.iter_mut().find(|s| s.name == step) {
                change(s);
            }
        })?;
        Ok(())
    }
}
