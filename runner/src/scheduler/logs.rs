//! Events out: Slipway's own log lines, and a step's output as masked lines.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Shared;
use crate::backend::LogChunk;
use crate::event::{LogStream, RunEvent};
use crate::mask::LineSplitter;

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

/// Turns raw output chunks into masked lines, one splitter per stream so
/// interleaved stdout and stderr never glue half-lines together.
pub(super) async fn pump_logs<B>(
    mut rx: mpsc::Receiver<LogChunk>,
    step: String,
    shared: Arc<Shared<B>>,
) {
    let mut out = LineSplitter::masking(shared.masker.clone());
    let mut err = LineSplitter::masking(shared.masker.clone());
    while let Some((stream, bytes)) = rx.recv().await {
        let splitter = if stream == LogStream::Stderr {
            &mut err
        } else {
            &mut out
        };
        let mut lines = Vec::new();
        splitter.push(&bytes, |l| lines.push(l));
        emit_masked(&shared, &step, stream, lines).await;
    }
    for (stream, splitter) in [(LogStream::Stdout, &mut out), (LogStream::Stderr, &mut err)] {
        emit_masked(&shared, &step, stream, splitter.finish()).await;
    }
}

async fn emit_masked<B>(
    shared: &Shared<B>,
    step: &str,
    stream: LogStream,
    lines: impl IntoIterator<Item = String>,
) {
    for line in lines {
        let line = shared.masker.mask(&line).into_owned();
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

    use crate::event::RunEvent;
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
}
