//! What a run reports while it happens. Consumers (the CLI, the store, the
//! server's live streams) see the same sequence.

use std::time::Duration;

use slipway_engine::{RunStatus, StepStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines written by Slipway itself into a step's log (pull progress, errors).
    System,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    RunStarted {
        run_id: String,
        steps: Vec<String>,
    },
    /// Progress of pulling an image that was missing locally.
    ImagePull {
        image: String,
        status: String,
    },
    ServiceStarted {
        service: String,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    /// One line of a step's output, secrets already masked.
    Log {
        step: String,
        stream: LogStream,
        line: String,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        exit_code: Option<i64>,
        duration: Duration,
        attempts: u32,
    },
    /// What a build step pushed: `repository@sha256:...`.
    StepOutput {
        step: String,
        image: String,
    },
    /// Files a step kept with the run (workspace-relative paths, sizes).
    Artifacts {
        step: String,
        files: Vec<(String, u64)>,
    },
    /// A step that ended without running: skipped or cancelled.
    StepSettled {
        step: String,
        status: StepStatus,
    },
    /// The run failed around its steps (setup, services); steps were not run.
    RunError {
        message: String,
    },
    RunFinished {
        status: RunStatus,
        duration: Duration,
    },
    /// How long one phase of getting the run going took (`images`,
    /// `network+workspace`, `first container`; a runner adds `checkout`):
    /// where the time between a push and the first step goes.
    Phase {
        phase: String,
        took: Duration,
    },
}
