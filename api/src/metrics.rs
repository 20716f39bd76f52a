//! Prometheus metrics, in the text exposition format. Counters are atomics
//! bumped where things happen; gauges are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the step duration histogram.
const BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

#[derive(Default)]
pub struct Metrics {
    webhooks: Mutex<BTreeMap<&'static str, u64>>,
    runs_finished: Mutex<BTreeMap<String, u64>>,
    step_buckets: [AtomicU64; BUCKETS.len()],
    step_count: AtomicU64,
    /// Sum of step durations, in milliseconds.
    step_sum_ms: AtomicU64,
    /// Why the Docker daemon is not answering, as the last probe found.
    docker_not_answering: Mutex<Option<String>>,
}

impl Metrics {
    /// What the last probe of the Docker daemon found (`Err`: why it is
    /// not answering).
    pub fn set_docker(&self, health: Result<(), String>) {
        *self
            .docker_not_answering
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = health.err();
    }

    /// Why the Docker daemon is not answering, if it is not.
    pub fn docker(&self) -> Option<String> {
        self.docker_not_answering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn webhook(&self, outcome: &'static str) {
        *self
            .webhooks
            .lock()
            .expect("metrics")
            .entry(outcome)
            .or_default() += 1;
    }

    pub fn run_finished(&self, status: crate::store::RunStatus) {
        *self
            .runs_finished
            .lock()
            .expect("metrics")
            .entry(status.to_string())
            .or_default() += 1;
    }

    pub fn step_finished(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.step_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.step_count.fetch_add(1, Ordering::Relaxed);
        self.step_sum_ms
            .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// The exposition text, with the gauges read now.
    pub fn render(&self, queued: usize, running: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP slipway_webhooks_total Webhooks received, by outcome.\n# TYPE slipway_webhooks_total counter\n");
        for (outcome, n) in self.webhooks.lock().expect("metrics").iter() {
            let _ = writeln!(out, "slipway_webhooks_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP slipway_runs_finished_total Runs that ended, by status.\n# TYPE slipway_runs_finished_total counter\n");
        for (status, n) in self.runs_finished.lock().expect("metrics").iter() {
            let _ = writeln!(
                out,
                "slipway_runs_finished_total{{status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP slipway_queue_depth Runs accepted and not started.\n# TYPE slipway_queue_depth gauge\nslipway_queue_depth {queued}"
        );
        let _ = writeln!(
            out,
            "# HELP slipway_runs_running Runs in progress.\n# TYPE slipway_runs_running gauge\nslipway_runs_running {running}"
        );
        let _ = writeln!(
            out,
            "# HELP slipway_docker_healthy Whether the Docker daemon answered its last probe in time.\n# TYPE slipway_docker_healthy gauge\nslipway_docker_healthy {}",
            u8::from(self.docker().is_none())
        );
        out.push_str("# HELP slipway_step_duration_seconds How long steps took.\n# TYPE slipway_step_duration_seconds histogram\n");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "slipway_step_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.step_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.step_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "slipway_step_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "slipway_step_duration_seconds_sum {}",
            self.step_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(out, "slipway_step_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunStatus;

    #[test]
    fn renders_counters_gauges_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.webhook("accepted");
        m.webhook("accepted");
        m.webhook("bad_signature");
        m.run_finished(RunStatus::Success);
        m.step_finished(Duration::from_millis(700));
        m.step_finished(Duration::from_secs(45));
        let text = m.render(3, 1);
        for line in [
            "slipway_webhooks_total{outcome=\"accepted\"} 2",
            "slipway_webhooks_total{outcome=\"bad_signature\"} 1",
            "slipway_runs_finished_total{status=\"success\"} 1",
            "slipway_queue_depth 3",
            "slipway_runs_running 1",
            "slipway_step_duration_seconds_bucket{le=\"0.5\"} 0",
            "slipway_step_duration_seconds_bucket{le=\"1\"} 1",
            "slipway_step_duration_seconds_bucket{le=\"60\"} 2",
            "slipway_step_duration_seconds_bucket{le=\"+Inf\"} 2",
            "slipway_step_duration_seconds_sum 45.7",
            "slipway_step_duration_seconds_count 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }
}
