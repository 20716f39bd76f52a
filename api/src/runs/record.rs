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
        steps: step_records(pipeline),
        ..RunRecord::new(
            id,
            &pipeline.name,
            file,
            event,
            branch.map(Into::into),
            RunStatus::Running,
        )
    }
}

/// Every step of a pipeline, pending.
pub fn step_records(pipeline: &Pipeline) -> Vec<StepRecord> {
    pipeline
        .steps
        .iter()
        .map(|s| StepRecord::pending(&s.name, &s.needs))
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

    /// Applies every event from `events` until the channel closes, on the
    /// calling thread (sled writes block: call it off the async workers),
    /// waiting for the next event no longer than buffered log lines may wait
    /// to be seen by followers. `each` sees every event before it is
    /// applied: to print it, count it, or set the final error. Store errors
    /// do not stop the draining (the runner must never block on a full
    /// channel); the first one is returned at the end.
    pub fn drain(
        &mut self,
        events: &mut tokio::sync::mpsc::Receiver<RunEvent>,
        runtime: &tokio::runtime::Handle,
        mut each: impl FnMut(&mut Recorder, &RunEvent),
    ) -> Result<(), StoreError> {
        let mut first_error = None;
        loop {
            let event = match self.next_flush() {
                None => events.blocking_recv(),
                // The timer is made inside `block_on`, where the runtime's
                // clock is: `slipway run` drains on a thread of its own.
                Some(wait) => match runtime
                    .block_on(async { tokio::time::timeout(wait, events.recv()).await })
                {
                    Ok(event) => event,
                    Err(_) => {
                        if let Err(e) = self.flush_logs() {
                            first_error.get_or_insert(e);
                        }
                        continue;
                    }
                },
            };
            let Some(event) = event else { break };
            each(self, &event);
            if let Err(e) = self.apply(&event).and_then(|()| self.flush_if_due()) {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.flush_logs() {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
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
            RunEvent::Phase { phase, took } => {
                let phase = crate::store::Phase {
                    phase: phase.clone(),
                    micros: took.as_micros() as u64,
                };
                self.store
                    .update_run(&self.run_id, |r| r.phases.push(phase))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One drain for `slipway run` and the server: lines reach the store
    /// while the run is quiet (followers see them live), and everything is
    /// written once the channel closes.
    #[test]
    fn drain_writes_quiet_lines_live_and_everything_at_the_end() {
        let dir = std::env::temp_dir().join(format!("slipway-rec-{}", crate::ids::new_run_id()));
        let store = Store::open(&dir).unwrap();
        let parsed = slipway_engine::parse::parse(
            ".slipway.yml",
            "steps:\n  a:\n    image: x\n    commands: [a]\n",
        );
        let pipeline = parsed.pipeline.expect("valid pipeline");
        store
            .put_run(&new_run("r1", &pipeline, ".slipway.yml", "push", None))
            .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let (recorder_store, handle) = (store.clone(), runtime.handle().clone());
        let drain = std::thread::spawn(move || {
            let mut seen = 0;
            let mut recorder = Recorder::new(recorder_store, "r1");
            let result = recorder.drain(&mut rx, &handle, |_, _| seen += 1);
            (result, seen)
        });
        let line = |text: &str| RunEvent::Log {
            step: "a".into(),
            stream: LogStream::Stdout,
            line: text.into(),
        };
        tx.blocking_send(line("first")).unwrap();
        // Nothing else comes, the channel stays open: the line is written anyway.
        let deadline = Instant::now() + LIVE_LOG_DELAY * 10;
        while store.read_log("r1", "a").unwrap().is_empty() {
            assert!(Instant::now() < deadline, "a quiet line was never written");
            std::thread::sleep(Duration::from_millis(20));
        }
        tx.blocking_send(line("second")).unwrap();
        drop(tx);
        let (result, seen) = drain.join().unwrap();
        result.unwrap();
        assert_eq!(seen, 2);
        assert_eq!(store.read_log("r1", "a").unwrap(), "first\nsecond\n");
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
}
