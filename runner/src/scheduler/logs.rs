//! Events out: Slipway's own log lines, and a step's output as masked
//! lines, up to the step's log cap.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Shared;
use crate::backend::LogChunk;
use crate::event::{LogStream, RunEvent};
use crate::mask::LineSplitter;
use slipway_engine::size::format_size;

/// Slipway's own lines in a step's log.
pub(super) async fn emit_system(events: &mpsc::Sender<RunEvent>, step: &str, lines: Vec<String>) {
    for line in lines {
        emit(
            events,
            RunEvent::Log {
                step: step.to_string(),
                stream: LogStream::System,
                line,
            },
        )
        .await;
    }
}

pub(super) async fn emit(events: &mpsc::Sender<RunEvent>, event: RunEvent) {
    // A consumer that went away must not stop the run (or its cleanup).
    let _ = events.send(event).await;
}

/// What a step may still write to its log, carried from one attempt to
/// the next: a step printing without end would otherwise fill the store
/// and every follower's screen.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogBudget {
    /// `None`: no cap.
    cap: Option<u64>,
    used: u64,
    /// The truncation line is written; nothing of the step's output is kept after it.
    exhausted: bool,
}

impl LogBudget {
    pub(super) fn new(cap: Option<u64>) -> LogBudget {
        LogBudget {
            cap,
            used: 0,
            exhausted: false,
        }
    }

    /// Counts a line of output and says whether it is kept: `Err` with the
    /// line to write instead for the first that is not.
    fn take(&mut self, line: &str) -> Result<(), Option<String>> {
        if self.exhausted {
            return Err(None);
        }
        let Some(cap) = self.cap else {
            return Ok(());
        };
        let used = self.used + line.len() as u64 + 1;
        if used <= cap {
            self.used = used;
            return Ok(());
        }
        self.exhausted = true;
        Err(Some(format!(
            "log truncated: this step wrote more than {}; the rest is not kept (the step keeps running)",
            format_size(cap)
        )))
    }
}

/// Turns raw output chunks into masked lines, one splitter per stream so
/// interleaved stdout and stderr never glue half-lines together. Past the
/// budget, output is still read (so the container never waits on us) but
/// dropped. Returns what is left of the budget.
pub(super) async fn pump_logs<B>(
    mut rx: mpsc::Receiver<LogChunk>,
    step: String,
    shared: Arc<Shared<B>>,
    mut budget: LogBudget,
) -> LogBudget {
    let mut out = LineSplitter::masking(shared.masker.clone());
    let mut err = LineSplitter::masking(shared.masker.clone());
    while let Some((stream, bytes)) = rx.recv().await {
        if budget.exhausted {
            continue;
        }
        let splitter = if stream == LogStream::Stderr {
            &mut err
        } else {
            &mut out
        };
        let mut lines = Vec::new();
        splitter.push(&bytes, |l| lines.push(l));
        emit_masked(&shared, &step, stream, lines, &mut budget).await;
    }
    for (stream, splitter) in [(LogStream::Stdout, &mut out), (LogStream::Stderr, &mut err)] {
        emit_masked(&shared, &step, stream, splitter.finish(), &mut budget).await;
    }
    budget
}

async fn emit_masked<B>(
    shared: &Shared<B>,
    step: &str,
    stream: LogStream,
    lines: impl IntoIterator<Item = String>,
    budget: &mut LogBudget,
) {
    for line in lines {
        let line = shared.masker.mask(&line).into_owned();
        let (stream, line) = match budget.take(&line) {
            Ok(()) => (stream, line),
            Err(Some(notice)) => (LogStream::System, notice),
            Err(None) => return,
        };
        emit(
            &shared.events,
            RunEvent::Log {
                step: step.to_string(),
                stream,
                line,
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use crate::event::{LogStream, RunEvent};
    use crate::fake::{FakeBackend, FakeStep};
    use crate::scheduler::testing::{go, options, pipeline};

    #[tokio::test(start_paused = true)]
    async fn secret_values_are_masked_in_output() {
        let src = "steps:\n  deploy: {image: i, commands: [x], secrets: [TOKEN]}\n";
        let fake = FakeBackend::new();
        fake.script(
            "deploy",
            FakeStep {
                output: vec!["token is s3cr3t-value!".into()],
                ..Default::default()
            },
        );
        let mut opts = options(1);
        opts.secrets.insert("TOKEN".into(), "s3cr3t-value".into());
        let (_, events) = go(&fake, &pipeline(src), opts, CancellationToken::new()).await;
        let lines: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { line, .. } => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(lines, ["token is ********!"]);
    }

    /// Issue 14: output had no cap; now it stops at the cap with one line
    /// saying so, across retries too, and the step's fate is its own.
    #[tokio::test(start_paused = true)]
    async fn output_past_the_cap_is_dropped_after_one_line_saying_so() {
        let src = "steps:\n  noisy: {image: i, commands: [x], retries: 1}\n";
        let fake = FakeBackend::new();
        fake.script(
            "noisy",
            FakeStep {
                exits: vec![1, 0],
                output: (0..100).map(|i| format!("line {i:03}")).collect(),
                ..Default::default()
            },
        );
        let mut opts = options(1);
        // 9 bytes a line with its newline: 100 lines in the first attempt
        // fit, the second attempt's 12th does not.
        opts.limits.log_max_bytes = Some(1000);
        let (report, events) = go(&fake, &pipeline(src), opts, CancellationToken::new()).await;
        assert_eq!(report.status, slipway_engine::RunStatus::Success);
        let output: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { stream, line, .. } if *stream != LogStream::System => {
                    Some(line.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(output.len(), 111);
        assert_eq!(output.last(), Some(&"line 010"));
        let notices: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log {
                    stream: LogStream::System,
                    line,
                    ..
                } if line.starts_with("log truncated") => Some(line.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            notices,
            [
                "log truncated: this step wrote more than 1000 B; the rest is not kept (the step keeps running)"
            ]
        );
    }
}
