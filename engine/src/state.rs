//! The run state machine: which steps may start, and what a finished step
//! means for the steps that need it. Pure bookkeeping, O(edges) per run.

use std::collections::VecDeque;
use std::fmt;

use crate::dag::Plan;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StepStatus {
    Pending,
    Running,
    Success,
    Failed,
    Skipped(SkipReason),
    Cancelled,
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SkipReason {
    /// The step's `when:` does not match this run.
    Condition,
    /// A step it needs (directly or not) failed; names the step that failed.
    Upstream(String),
}

/// How an executed step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Success,
    Failed,
    TimedOut,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RunStatus {
    Running,
    Success,
    Failed,
    Cancelled,
}

impl StepStatus {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }

    /// The word used in summaries, logs and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Success => "success",
            StepStatus::Failed => "failed",
            StepStatus::Skipped(_) => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RunStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct RunState {
    status: Vec<StepStatus>,
    /// Needs of each step not yet satisfied; a step is ready at zero.
    needs_left: Vec<usize>,
    allow_failure: Vec<bool>,
    /// Steps `when:` (or the caller) excludes: settled as skipped when
    /// their needs are met, never run.
    excluded: Vec<bool>,
    ready: VecDeque<usize>,
    /// Steps not yet in a terminal status.
    open: usize,
    cancelled: bool,
}

impl RunState {
    /// `allow_failure[i]` and `excluded[i]` (by `when:`) for each step of the plan.
    pub fn new(plan: &Plan, allow_failure: Vec<bool>, excluded: &[bool]) -> RunState {
        let n = plan.len();
        assert_eq!(
            allow_failure.len(),
            n,
            "allow_failure must cover every step"
        );
        assert_eq!(excluded.len(), n, "excluded must cover every step");
        let mut state = RunState {
            status: vec![StepStatus::Pending; n],
            needs_left: (0..n).map(|i| plan.needs(i).len()).collect(),
            allow_failure,
            excluded: excluded.to_vec(),
            ready: VecDeque::new(),
            open: n,
            cancelled: false,
        };
        // Excluded steps are settled up front, in dependency order, so that a
        // skipped-by-condition step satisfies what needs it.
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| state.needs_left[i] == 0).collect();
        while let Some(i) = queue.pop_front() {
            if excluded[i] {
                state.settle(i, StepStatus::Skipped(SkipReason::Condition));
                for &d in plan.dependents(i) {
                    state.needs_left[d] -= 1;
                    if state.needs_left[d] == 0 {
                        queue.push_back(d);
                    }
                }
            } else {
                state.ready.push_back(i);
            }
        }
        state
    }

    /// The next step allowed to start, now marked running.
    pub fn pop_ready(&mut self) -> Option<usize> {
        let i = self.ready.pop_front()?;
        self.status[i] = StepStatus::Running;
        Some(i)
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Records how a running step ended. Returns the steps this settled
    /// without running them (skipped or cancelled), for reporting.
    pub fn finish(&mut self, plan: &Plan, step: usize, outcome: StepOutcome) -> Vec<usize> {
        assert_eq!(
            self.status[step],
            StepStatus::Running,
            "only a running step can finish"
        );
        let status = match outcome {
            StepOutcome::Success => StepStatus::Success,
            StepOutcome::Failed => StepStatus::Failed,
            StepOutcome::TimedOut => StepStatus::TimedOut,
            StepOutcome::Cancelled => StepStatus::Cancelled,
        };
        self.settle(step, status);
        let passes = match outcome {
            StepOutcome::Success => true,
            StepOutcome::Failed | StepOutcome::TimedOut => self.allow_failure[step],
            StepOutcome::Cancelled => false,
        };
        if passes {
            // An excluded step whose needs are now met is settled instead
            // of started, and satisfies what needs it in turn: exclusion
            // holds downstream of steps that run, not only at the roots.
            let mut settled = Vec::new();
            let mut met = vec![step];
            while let Some(done) = met.pop() {
                for &d in plan.dependents(done) {
                    self.needs_left[d] -= 1;
                    if self.needs_left[d] == 0
                        && self.status[d] == StepStatus::Pending
                        && !self.cancelled
                    {
                        if self.excluded[d] {
                            self.settle(d, StepStatus::Skipped(SkipReason::Condition));
                            settled.push(d);
                            met.push(d);
                        } else {
                            self.ready.push_back(d);
                        }
                    }
                }
            }
            settled.sort_unstable();
            return settled;
        }
        // Everything downstream of a failure is skipped now, not later, so
        // the user sees the consequence at once and the run can end as soon
        // as independent branches are done.
        let mut settled = Vec::new();
        let mut stack: Vec<usize> = plan.dependents(step).to_vec();
        let reason = if self.cancelled || outcome == StepOutcome::Cancelled {
            StepStatus::Cancelled
        } else {
            StepStatus::Skipped(SkipReason::Upstream(plan.name(step).to_string()))
        };
        while let Some(d) = stack.pop() {
            if self.status[d] == StepStatus::Pending {
                self.settle(d, reason.clone());
                self.ready.retain(|&r| r != d);
                settled.push(d);
                stack.extend_from_slice(plan.dependents(d));
            }
        }
        settled.sort_unstable();
        settled
    }

    /// Cancels the run: every step not started is cancelled now (returned);
    /// running steps are cancelled by the caller, then reported with `finish`.
    pub fn cancel(&mut self) -> Vec<usize> {
        self.cancelled = true;
        self.ready.clear();
        let pending: Vec<usize> = (0..self.status.len())
            .filter(|&i| self.status[i] == StepStatus::Pending)
            .collect();
        for &i in &pending {
            self.settle(i, StepStatus::Cancelled);
        }
        pending
    }

    fn settle(&mut self, step: usize, status: StepStatus) {
        debug_assert!(!self.status[step].is_terminal());
        self.status[step] = status;
        self.open -= 1;
    }

    pub fn status(&self, step: usize) -> &StepStatus {
        &self.status[step]
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    /// True once every step is in a terminal status.
    pub fn is_finished(&self) -> bool {
        self.open == 0
    }

    pub fn run_status(&self) -> RunStatus {
        if !self.is_finished() {
            return RunStatus::Running;
        }
        if self.cancelled {
            return RunStatus::Cancelled;
        }
        let failed = self.status.iter().enumerate().any(|(i, s)| {
            matches!(s, StepStatus::Failed | StepStatus::TimedOut) && !self.allow_failure[i]
                || matches!(
                    s,
                    StepStatus::Cancelled | StepStatus::Skipped(SkipReason::Upstream(_))
                )
        });
        if failed {
            RunStatus::Failed
        } else {
            RunStatus::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn setup(src: &str, excluded: &[bool]) -> (Plan, RunState) {
        let p = parse("p.yml", src).pipeline.expect("valid");
        let plan = Plan::new(&p).unwrap();
        let allow = p.steps.iter().map(|s| s.allow_failure).collect();
        let state = RunState::new(&plan, allow, excluded);
        (plan, state)
    }

    const PIPE: &str = "\
steps:
  build: {image: x, commands: [true]}
  test: {image: x, commands: [true], needs: [build]}
  lint: {image: x, commands: [true], allow_failure: true}
  ship: {image: x, commands: [true], needs: [test, lint]}
  docs: {image: x, commands: [true]}
";

    fn drain(s: &mut RunState) -> Vec<usize> {
        std::iter::from_fn(|| s.pop_ready()).collect()
    }

    #[test]
    fn failure_skips_dependents_while_independent_steps_finish() {
        let (plan, mut s) = setup(PIPE, &[false; 5]);
        assert_eq!(drain(&mut s), [0, 2, 4]);
        assert_eq!(s.finish(&plan, 0, StepOutcome::Failed), [1, 3]);
        assert_eq!(
            s.status(3),
            &StepStatus::Skipped(SkipReason::Upstream("build".into()))
        );
        assert!(!s.is_finished());
        s.finish(&plan, 2, StepOutcome::Success);
        s.finish(&plan, 4, StepOutcome::Success);
        assert!(s.is_finished());
        assert_eq!(s.run_status(), RunStatus::Failed);
    }

    #[test]
    fn allowed_failure_lets_dependents_run_and_the_run_pass() {
        let (plan, mut s) = setup(PIPE, &[false; 5]);
        drain(&mut s);
        s.finish(&plan, 0, StepOutcome::Success);
        assert_eq!(drain(&mut s), [1]);
        s.finish(&plan, 2, StepOutcome::TimedOut);
        s.finish(&plan, 1, StepOutcome::Success);
        assert_eq!(drain(&mut s), [3]);
        s.finish(&plan, 3, StepOutcome::Success);
        s.finish(&plan, 4, StepOutcome::Success);
        assert_eq!(s.run_status(), RunStatus::Success);
        assert_eq!(s.status(2), &StepStatus::TimedOut);
    }

    #[test]
    fn excluded_steps_satisfy_their_dependents() {
        let (plan, mut s) = setup(PIPE, &[true, false, true, false, false]);
        assert_eq!(s.status(0), &StepStatus::Skipped(SkipReason::Condition));
        assert_eq!(drain(&mut s), [4, 1]);
        s.finish(&plan, 1, StepOutcome::Success);
        assert_eq!(drain(&mut s), [3]);
        s.finish(&plan, 3, StepOutcome::Success);
        s.finish(&plan, 4, StepOutcome::Success);
        assert_eq!(s.run_status(), RunStatus::Success);
    }

    /// A step excluded by `when:` that needs a step that runs was started
    /// anyway once its need was met (a `when: {branch: main}` deploy after
    /// the tests ran on every pull request). It is settled instead.
    #[test]
    fn an_excluded_step_after_a_step_that_runs_is_skipped_not_started() {
        let (plan, mut s) = setup(PIPE, &[false, true, false, true, false]);
        assert_eq!(drain(&mut s), [0, 2, 4]);
        assert_eq!(
            s.finish(&plan, 0, StepOutcome::Success),
            [1],
            "test, settled, not started"
        );
        assert_eq!(s.status(1), &StepStatus::Skipped(SkipReason::Condition));
        assert!(!s.has_ready(), "test is excluded: nothing to start");
        assert_eq!(
            s.finish(&plan, 2, StepOutcome::Success),
            [3],
            "ship too, now that lint is done"
        );
        assert_eq!(s.status(3), &StepStatus::Skipped(SkipReason::Condition));
        s.finish(&plan, 4, StepOutcome::Success);
        assert!(s.is_finished());
        assert_eq!(s.run_status(), RunStatus::Success);
    }

    #[test]
    fn cancel_settles_pending_and_running_steps_report_cancelled() {
        let (plan, mut s) = setup(PIPE, &[false; 5]);
        assert_eq!(s.pop_ready(), Some(0));
        assert_eq!(s.cancel(), [1, 2, 3, 4]);
        assert_eq!(s.pop_ready(), None);
        assert!(s.finish(&plan, 0, StepOutcome::Cancelled).is_empty());
        assert!(s.is_finished());
        assert_eq!(s.run_status(), RunStatus::Cancelled);
    }

    #[test]
    fn a_step_with_two_needs_waits_for_both() {
        let (plan, mut s) = setup(PIPE, &[false; 5]);
        drain(&mut s);
        s.finish(&plan, 0, StepOutcome::Success);
        assert_eq!(drain(&mut s), [1]);
        s.finish(&plan, 1, StepOutcome::Success);
        assert!(!s.has_ready(), "ship still waits for lint");
        s.finish(&plan, 2, StepOutcome::Success);
        assert_eq!(drain(&mut s), [3]);
    }
}
