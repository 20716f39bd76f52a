//! Remote runners as the server sees them: which are online and with
//! what, which wait for work, and which runs each holds under which
//! lease. In memory: after a restart, runners say all of it again within
//! a heartbeat, and leases are read back from the runs (`executor`).
//!
//! The rules (ARCHITECTURE.md, "Runners"):
//! - A run is handed to one runner under a new epoch, recorded on the
//!   run (`RunRecord::lease`) and flushed before the runner hears of it.
//! - Every heartbeat naming `(run, epoch)` renews that lease; a lease not
//!   renewed for `runner_lease` expires, and the run is interrupted.
//! - Anything about a run that carries another epoch, or comes from
//!   another runner, is refused: the sender is fenced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use crate::protocol::{HeartbeatReply, Held, Hello, Job};

/// A runner asking for work, until the run it gets or its wait ends.
pub struct Waiter {
    id: u64,
    pub runner: String,
    labels: Vec<String>,
    pub job: oneshot::Sender<Job>,
}

/// A run a remote runner holds.
pub struct Lease {
    pub runner: String,
    pub epoch: u64,
    expires: Instant,
    /// A cancel to pass on with the runner's next heartbeat.
    cancel: bool,
    /// Wakes whoever follows the run: it finished, or the lease expired.
    pub ended: Arc<Notify>,
    /// Set when the run's final event is stored.
    pub finished: bool,
    /// Held while a batch is stored, so batches of one run are applied
    /// one at a time and in order; also holds the stored count.
    pub record: Arc<tokio::sync::Mutex<Recording>>,
    /// Which caches the run may read and the scope it writes, as the
    /// server decided (`None` after a restart: caches go unshared).
    pub cache_scope: Option<slipway_runner::cache::CacheScope>,
}

/// What of a run's event stream is stored.
pub struct Recording {
    pub recorder: crate::runs::record::Recorder,
    pub acked: u64,
}

#[derive(Debug, Clone)]
struct Online {
    hello: Hello,
    last_seen: Instant,
    last_seen_ms: u64,
}

#[derive(Default)]
struct State {
    online: HashMap<String, Online>,
    waiting: Vec<Waiter>,
    next_waiter: u64,
    leases: HashMap<String, Lease>,
    /// Why a queued run has not started, by run id.
    pending: HashMap<String, String>,
}

pub struct Dispatch {
    lease: Duration,
    state: Mutex<State>,
    /// The executor's wake-up: a runner asking for work may let a queued run start.
    wake: Arc<Notify>,
}

/// A runner as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerState {
    pub online: bool,
    pub labels: Vec<String>,
    pub capacity: usize,
    pub busy: usize,
    pub version: String,
    pub unhealthy: Option<String>,
    pub last_seen_ms: Option<u64>,
    pub runs: Vec<String>,
}

/// The built-in runner, as the matching sees it.
pub struct Local<'a> {
    pub labels: &'a [String],
    pub unhealthy: Option<String>,
    pub busy: usize,
    pub capacity: usize,
}

impl Dispatch {
    pub fn new(lease: Duration, wake: Arc<Notify>) -> Dispatch {
        Dispatch {
            lease,
            state: Mutex::default(),
            wake,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lease_time(&self) -> Duration {
        self.lease
    }

    /// Notes that `runner` is alive and what it has.
    pub fn seen(&self, runner: &str, hello: &Hello) {
        self.state().online.insert(
            runner.to_string(),
            Online {
                hello: hello.clone(),
                last_seen: Instant::now(),
                last_seen_ms: crate::ids::now_ms(),
            },
        );
    }

    /// `runner` waits for a run; the receiver gets one if the executor
    /// finds a run for it. Call [`Dispatch::stop_waiting`] with the id
    /// when the wait ends either way.
    pub fn wait_for_job(&self, runner: &str, labels: &[String]) -> (u64, oneshot::Receiver<Job>) {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.state();
            state.next_waiter += 1;
            let id = state.next_waiter;
            state.waiting.push(Waiter {
                id,
                runner: runner.to_string(),
                labels: labels.to_vec(),
                job: tx,
            });
            id
        };
        self.wake.notify_one();
        (id, rx)
    }

    /// Whether some runner waits for work.
    pub fn has_waiters(&self) -> bool {
        self.state().waiting.iter().any(|w| !w.job.is_closed())
    }

    pub fn stop_waiting(&self, id: u64) {
        self.state().waiting.retain(|w| w.id != id);
    }

    /// A waiting runner that has every label in `runs_on` and a free slot.
    pub fn take_waiter(&self, runs_on: &[String]) -> Option<Waiter> {
        let mut state = self.state();
        let State {
            waiting,
            leases,
            online,
            ..
        } = &mut *state;
        let at = waiting.iter().position(|w| {
            let busy = leases.values().filter(|l| l.runner == w.runner).count();
            let capacity = online.get(&w.runner).map_or(0, |o| o.hello.capacity);
            !w.job.is_closed() && busy < capacity && runs_on.iter().all(|l| w.labels.contains(l))
        })?;
        Some(waiting.remove(at))
    }

    /// Why a run that asks for `runs_on` cannot start now, in words a
    /// user can act on.
    pub fn why_waiting(&self, runs_on: &[String], local: Option<&Local<'_>>) -> String {
        let state = self.state();
        let now = Instant::now();
        let mut total = 0;
        let mut matching = 0;
        let mut unhealthy = 0;
        if let Some(local) = local {
            total += 1;
            if runs_on.iter().all(|l| local.labels.contains(l)) {
                matching += 1;
                if local.unhealthy.is_some() {
                    unhealthy += 1;
                }
            }
        }
        for online in state.online.values() {
            if now.duration_since(online.last_seen) > self.lease {
                continue;
            }
            total += 1;
            if runs_on.iter().all(|l| online.hello.labels.contains(l)) {
                matching += 1;
                if online.hello.unhealthy.is_some() {
                    unhealthy += 1;
                }
            }
        }
        if total == 0 {
            return "no runner is online".into();
        }
        if matching == 0 {
            let missing: Vec<String> = runs_on
                .iter()
                .filter(|l| {
                    !local.is_some_and(|c| c.labels.contains(l))
                        && !state.online.values().any(|o| {
                            now.duration_since(o.last_seen) <= self.lease
                                && o.hello.labels.contains(l)
                        })
                })
                .map(|l| format!("`{l}`"))
                .collect();
            return if missing.is_empty() {
                format!(
                    "no online runner has all of the labels {}",
                    runs_on
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!("no online runner has label {}", missing.join(", "))
            };
        }
        if unhealthy == matching {
            return format!(
                "the {} matching runner{} {} unhealthy (Docker daemon not answering)",
                matching,
                if matching == 1 { "" } else { "s" },
                if matching == 1 { "is" } else { "are" }
            );
        }
        if matching == 1 {
            "the one matching runner is busy".into()
        } else {
            format!("all {matching} matching runners busy")
        }
    }

    pub fn set_pending(&self, run_id: &str, why: String) {
        self.state().pending.insert(run_id.to_string(), why);
    }

    pub fn clear_pending(&self, run_id: &str) {
        self.state().pending.remove(run_id);
    }

    /// Why a queued run waits, if the executor has looked at it.
    pub fn pending(&self, run_id: &str) -> Option<String> {
        self.state().pending.get(run_id).cloned()
    }

    /// Forgets pending reasons of runs no longer queued.
    pub fn keep_pending(&self, queued: &HashSet<String>) {
        self.state().pending.retain(|id, _| queued.contains(id));
    }

    /// `runner` now holds `run_id` under `epoch`, with `acked` of its
    /// events stored; the lease runs from now.
    pub fn hold(
        &self,
        run_id: &str,
        runner: &str,
        epoch: u64,
        recording: Recording,
        cache_scope: Option<slipway_runner::cache::CacheScope>,
    ) -> Arc<Notify> {
        let ended = Arc::new(Notify::new());
        self.state().leases.insert(
            run_id.to_string(),
            Lease {
                runner: runner.to_string(),
                epoch,
                expires: Instant::now() + self.lease,
                cancel: false,
                ended: ended.clone(),
                finished: false,
                record: Arc::new(tokio::sync::Mutex::new(recording)),
                cache_scope,
            },
        );
        ended
    }

    /// The recording of `run_id` if `runner` holds it under `epoch`;
    /// `None` means the sender is fenced.
    pub fn recording(
        &self,
        run_id: &str,
        runner: &str,
        epoch: u64,
    ) -> Option<Arc<tokio::sync::Mutex<Recording>>> {
        let state = self.state();
        let lease = state.leases.get(run_id)?;
        (lease.runner == runner && lease.epoch == epoch && !lease.finished)
            .then(|| lease.record.clone())
    }

    /// The cache scope of `run_id` if `runner` holds it under `epoch`
    /// (outer `None`: fenced; inner `None`: no scope known).
    pub fn cache_scope(
        &self,
        run_id: &str,
        runner: &str,
        epoch: u64,
    ) -> Option<Option<slipway_runner::cache::CacheScope>> {
        let state = self.state();
        let lease = state.leases.get(run_id)?;
        (lease.runner == runner && lease.epoch == epoch).then(|| lease.cache_scope.clone())
    }

    /// The run's final event is stored: the lease ends with it.
    pub fn finished(&self, run_id: &str) {
        if let Some(lease) = self.state().leases.remove(run_id) {
            lease.ended.notify_one();
        }
    }

    /// Renews the leases `runner` names and says what it must stop.
    pub fn heartbeat(&self, runner: &str, hello: &Hello, runs: &[Held]) -> HeartbeatReply {
        self.seen(runner, hello);
        let mut reply = HeartbeatReply::default();
        let mut state = self.state();
        let until = Instant::now() + self.lease;
        for held in runs {
            match state.leases.get_mut(&held.run_id) {
                Some(lease) if lease.runner == runner && lease.epoch == held.epoch => {
                    lease.expires = until;
                    if lease.cancel {
                        reply.cancel.push(held.run_id.clone());
                    }
                }
                _ => reply.fenced.push(held.run_id.clone()),
            }
        }
        reply
    }

    /// Passes a cancel on to the runner holding `run_id` (next heartbeat).
    pub fn cancel(&self, run_id: &str) {
        if let Some(lease) = self.state().leases.get_mut(run_id) {
            lease.cancel = true;
        }
    }

    /// Ends every lease not renewed in time; returns `(run, runner)` of each.
    pub fn expire(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        let mut state = self.state();
        let gone: Vec<String> = state
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter()
            .filter_map(|id| {
                let lease = state.leases.remove(&id)?;
                lease.ended.notify_one();
                Some((id, lease.runner))
            })
            .collect()
    }

    /// Whether any remote runner has been heard from within a lease.
    pub fn any_online(&self) -> bool {
        self.state()
            .online
            .values()
            .any(|o| o.last_seen.elapsed() <= self.lease)
    }

    /// Whether `run_id` is held by a remote runner.
    pub fn is_held(&self, run_id: &str) -> bool {
        self.state().leases.contains_key(run_id)
    }

    /// Runs `runner` holds.
    pub fn runs_of(&self, runner: &str) -> Vec<String> {
        let mut runs: Vec<String> = self
            .state()
            .leases
            .iter()
            .filter(|(_, l)| l.runner == runner)
            .map(|(id, _)| id.clone())
            .collect();
        runs.sort();
        runs
    }

    /// What the API shows of `runner`.
    pub fn runner_state(&self, runner: &str) -> RunnerState {
        let runs = self.runs_of(runner);
        let state = self.state();
        let online = state.online.get(runner);
        RunnerState {
            online: online.is_some_and(|o| o.last_seen.elapsed() <= self.lease),
            labels: online.map(|o| o.hello.labels.clone()).unwrap_or_default(),
            capacity: online.map_or(0, |o| o.hello.capacity),
            busy: runs.len(),
            version: online.map(|o| o.hello.version.clone()).unwrap_or_default(),
            unhealthy: online.and_then(|o| o.hello.unhealthy.clone()),
            last_seen_ms: online.map(|o| o.last_seen_ms),
            runs,
        }
    }

    /// Forgets a runner that was removed: it can claim nothing more.
    pub fn forget(&self, runner: &str) {
        let mut state = self.state();
        state.online.remove(runner);
        state.waiting.retain(|w| w.runner != runner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(labels: &[&str], capacity: usize) -> Hello {
        Hello {
            name: None,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            capacity,
            version: "t".into(),
            unhealthy: None,
        }
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    fn recording() -> Recording {
        let dir = std::env::temp_dir().join(format!("slipway-disp-{}", crate::ids::new_run_id()));
        Recording {
            recorder: crate::runs::record::Recorder::new(
                crate::store::Store::open(&dir).unwrap(),
                "r",
            ),
            acked: 0,
        }
    }

    #[test]
    fn a_pending_run_says_which_label_no_runner_has_or_that_all_are_busy() {
        let d = Dispatch::new(Duration::from_secs(5), Arc::default());
        assert_eq!(d.why_waiting(&[], None), "no runner is online");
        d.seen("a", &hello(&["linux"], 1));
        d.seen("b", &hello(&["linux", "large"], 1));
        assert_eq!(
            d.why_waiting(&labels(&["linux", "gpu"]), None),
            "no online runner has label `gpu`"
        );
        assert_eq!(
            d.why_waiting(&labels(&["linux"]), None),
            "all 2 matching runners busy"
        );
        assert_eq!(
            d.why_waiting(&labels(&["large"]), None),
            "the one matching runner is busy"
        );
        let local = Local {
            labels: &[],
            unhealthy: Some("x".into()),
            busy: 0,
            capacity: 4,
        };
        assert_eq!(
            d.why_waiting(&[], Some(&local)),
            "all 3 matching runners busy"
        );
    }

    #[test]
    fn a_waiting_runner_gets_only_runs_its_labels_and_free_slots_allow() {
        let d = Dispatch::new(Duration::from_secs(5), Arc::default());
        d.seen("small", &hello(&["linux"], 1));
        let (_id, _rx) = d.wait_for_job("small", &labels(&["linux"]));
        assert!(d.take_waiter(&labels(&["large"])).is_none());
        let w = d.take_waiter(&labels(&["linux"])).expect("matches");
        assert_eq!(w.runner, "small");
        // Busy: its one slot is taken by a lease.
        d.hold("r1", "small", 7, recording(), None);
        let (_id2, _rx2) = d.wait_for_job("small", &labels(&["linux"]));
        assert!(d.take_waiter(&[]).is_none(), "capacity 1, one run held");
    }

    #[test]
    fn a_lease_is_renewed_by_heartbeats_and_another_epoch_is_fenced() {
        let d = Dispatch::new(Duration::from_millis(50), Arc::default());
        d.hold("r1", "a", 3, recording(), None);
        let held = |epoch| {
            vec![Held {
                run_id: "r1".into(),
                epoch,
            }]
        };
        assert_eq!(
            d.heartbeat("a", &hello(&[], 1), &held(3)),
            HeartbeatReply::default()
        );
        assert_eq!(d.heartbeat("a", &hello(&[], 1), &held(2)).fenced, ["r1"]);
        assert_eq!(d.heartbeat("b", &hello(&[], 1), &held(3)).fenced, ["r1"]);
        d.cancel("r1");
        assert_eq!(d.heartbeat("a", &hello(&[], 1), &held(3)).cancel, ["r1"]);
        assert!(d.expire().is_empty(), "just renewed");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(d.expire(), [("r1".to_string(), "a".to_string())]);
        assert!(d.recording("r1", "a", 3).is_none(), "expired: fenced");
        assert_eq!(d.heartbeat("a", &hello(&[], 1), &held(3)).fenced, ["r1"]);
    }
}
