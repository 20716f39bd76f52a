//! Statuses as they are stored and sent: enums with the snake_case words
//! the store and the JSON API have always used, so a typo is a compile
//! error instead of a status nobody matches (the UI once styled `timeout`
//! while the API sent `timed_out`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Success,
    Failed,
    /// It could not run: no pipeline file, an invalid one, a vanished repository.
    Error,
    Cancelled,
    /// `on:` refused the event.
    Skipped,
    /// The server stopped (crashed) while it ran.
    Interrupted,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    #[default]
    Pending,
    Running,
    Success,
    Failed,
    Skipped,
    Cancelled,
    TimedOut,
}

/// Where a promotion request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    Pending,
    Approved,
    Promoting,
    Succeeded,
    Failed,
    Rejected,
    Expired,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Failed,
        RunStatus::Error,
        RunStatus::Cancelled,
        RunStatus::Skipped,
        RunStatus::Interrupted,
    ];

    /// `queued` and `running` runs may still change; every other status is final.
    pub fn is_ended(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Error => "error",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The status named by `word` (a filter in a query string).
    pub fn parse(word: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

impl StepStatus {
    pub const ALL: [StepStatus; 7] = [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Success,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Cancelled,
        StepStatus::TimedOut,
    ];

    pub fn is_ended(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Success => "success",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::TimedOut => "timed_out",
        }
    }
}

impl PromotionStatus {
    pub const ALL: [PromotionStatus; 7] = [
        PromotionStatus::Pending,
        PromotionStatus::Approved,
        PromotionStatus::Promoting,
        PromotionStatus::Succeeded,
        PromotionStatus::Failed,
        PromotionStatus::Rejected,
        PromotionStatus::Expired,
    ];

    /// Still open: waiting for approvals, or on its way.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            PromotionStatus::Pending | PromotionStatus::Approved | PromotionStatus::Promoting
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PromotionStatus::Pending => "pending",
            PromotionStatus::Approved => "approved",
            PromotionStatus::Promoting => "promoting",
            PromotionStatus::Succeeded => "succeeded",
            PromotionStatus::Failed => "failed",
            PromotionStatus::Rejected => "rejected",
            PromotionStatus::Expired => "expired",
        }
    }
}

impl From<slipway_engine::RunStatus> for RunStatus {
    fn from(s: slipway_engine::RunStatus) -> RunStatus {
        match s {
            slipway_engine::RunStatus::Running => RunStatus::Running,
            slipway_engine::RunStatus::Success => RunStatus::Success,
            slipway_engine::RunStatus::Failed => RunStatus::Failed,
            slipway_engine::RunStatus::Cancelled => RunStatus::Cancelled,
        }
    }
}

impl From<&slipway_engine::StepStatus> for StepStatus {
    fn from(s: &slipway_engine::StepStatus) -> StepStatus {
        match s {
            slipway_engine::StepStatus::Pending => StepStatus::Pending,
            slipway_engine::StepStatus::Running => StepStatus::Running,
            slipway_engine::StepStatus::Success => StepStatus::Success,
            slipway_engine::StepStatus::Failed => StepStatus::Failed,
            slipway_engine::StepStatus::Skipped(_) => StepStatus::Skipped,
            slipway_engine::StepStatus::Cancelled => StepStatus::Cancelled,
            slipway_engine::StepStatus::TimedOut => StepStatus::TimedOut,
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
display_as_str!(RunStatus, StepStatus, PromotionStatus);

#[cfg(test)]
mod tests {
    use super::*;

    /// The words on disk and on the wire are the ones stored before these
    /// were enums: existing data reads the same.
    #[test]
    fn statuses_keep_their_stored_words() {
        for s in RunStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(
                serde_json::from_value::<RunStatus>(s.as_str().into()).unwrap(),
                s
            );
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        for s in StepStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in PromotionStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(
            serde_json::to_value(StepStatus::TimedOut).unwrap(),
            "timed_out"
        );
        let words: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            words,
            [
                "queued",
                "running",
                "success",
                "failed",
                "error",
                "cancelled",
                "skipped",
                "interrupted"
            ]
        );
        assert!(RunStatus::Interrupted.is_ended() && !RunStatus::Queued.is_ended());
    }
}
