//! `[server]` limits of step containers: the defaults every step gets
//! (`step_memory`, `step_cpus`, `step_pids`), the most a step's
//! `resources:` may ask for (`max_step_*`), and the log cap
//! (`log_max_size`). Pipelines come from pull requests: without these one
//! of them could take the machine, or the store, from every other run.

use serde::Deserialize;
use slipway_engine::Resources;
use slipway_engine::size::{format_size, parse_size};
use slipway_runner::Limits;
use toml::Spanned;

use super::{RawServer, line_col};

/// What a step gets unless its `resources:` or the server's config says
/// otherwise: enough for an ordinary build, not enough to starve the
/// machine's other runs.
pub const DEFAULT_LIMITS: Limits = Limits {
    defaults: Resources {
        memory: Some(2 << 30),
        millicpus: Some(2000),
        pids: Some(1024),
    },
    log_max_bytes: Some(10 << 20),
};

/// TOML keeps `2` and `2.0` apart; for a number of CPUs both mean the same.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub(super) enum Number {
    Whole(i64),
    Fraction(f64),
}

/// The limits the server's config sets, and the most a step may ask for.
pub(super) fn resolve(
    file: &str,
    text: &str,
    raw: &RawServer,
    problems: &mut Vec<String>,
) -> (Limits, Resources) {
    let mut bad = |key: &str, at: std::ops::Range<usize>, message: String| {
        let (line, col) = line_col(text, at.start);
        problems.push(format!("{file}:{line}:{col}: server.{key}: {message}"));
    };
    let mut size = |key: &str, given: &Option<Spanned<String>>, least: u64| {
        let given = given.as_ref()?;
        match parse_size(given.get_ref()) {
            Some(n) if n >= least => Some(n),
            _ => {
                bad(
                    key,
                    given.span(),
                    format!(
                        "`{}` is not a size of at least {} (e.g. `2GiB`, `512MiB`)",
                        given.get_ref(),
                        format_size(least)
                    ),
                );
                None
            }
        }
    };
    // Docker refuses less memory, and reads 0 as "no limit".
    let least_memory = 6 << 20;
    let memory = size("step_memory", &raw.step_memory, least_memory);
    let max_memory = size("max_step_memory", &raw.max_step_memory, least_memory);
    let log_max_bytes = size("log_max_size", &raw.log_max_size, 1024);
    let mut cpus = |key: &str, given: &Option<Spanned<Number>>| {
        let given = given.as_ref()?;
        let n = match *given.get_ref() {
            Number::Whole(n) => n as f64,
            Number::Fraction(f) => f,
        };
        if n.is_finite() && n >= 0.01 {
            return Some((n * 1000.0).round() as u64);
        }
        bad(
            key,
            given.span(),
            format!("`{n}` is not a number of CPUs of at least 0.01 (e.g. `1.5`)"),
        );
        None
    };
    let millicpus = cpus("step_cpus", &raw.step_cpus);
    let max_millicpus = cpus("max_step_cpus", &raw.max_step_cpus);
    let mut pids = |key: &str, given: &Option<Spanned<i64>>| {
        let given = given.as_ref()?;
        match u64::try_from(*given.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                bad(
                    key,
                    given.span(),
                    format!(
                        "`{}` is not a whole number of at least 1 (e.g. `1024`)",
                        given.get_ref()
                    ),
                );
                None
            }
        }
    };
    let step_pids = pids("step_pids", &raw.step_pids);
    let max_pids = pids("max_step_pids", &raw.max_step_pids);

    let max = Resources {
        memory: max_memory,
        millicpus: max_millicpus,
        pids: max_pids,
    };
    let given = Resources {
        memory,
        millicpus,
        pids: step_pids,
    };
    // A default left at its built-in value must not break a server whose
    // maximum is lower: the maximum then is the default.
    let defaults = given.or(DEFAULT_LIMITS.defaults.min(max));
    for (key, asked, allowed) in given.above(&max) {
        problems.push(format!(
            "{file}: server.step_{key}: {asked} is above server.max_step_{key} ({allowed})"
        ));
    }
    let limits = Limits {
        defaults,
        log_max_bytes: log_max_bytes.or(DEFAULT_LIMITS.log_max_bytes),
    };
    (limits, max)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn steps_are_limited_out_of_the_box() {
        let c = Config::parse("s.toml", "").unwrap();
        assert_eq!(c.limits, DEFAULT_LIMITS);
        assert_eq!(c.limits.defaults.memory, Some(2 << 30));
        assert_eq!(c.limits.log_max_bytes, Some(10 << 20));
        assert_eq!(c.max_resources, Resources::default());
    }

    #[test]
    fn limits_and_maximums_are_configurable() {
        let c = Config::parse(
            "s.toml",
            "[server]\nstep_memory = \"1GiB\"\nstep_cpus = 1\nstep_pids = 256\nlog_max_size = \"1MiB\"\nmax_step_memory = \"4GiB\"\nmax_step_cpus = 2.5\nmax_step_pids = 4096\n",
        )
        .unwrap();
        assert_eq!(
            c.limits,
            Limits {
                defaults: Resources {
                    memory: Some(1 << 30),
                    millicpus: Some(1000),
                    pids: Some(256),
                },
                log_max_bytes: Some(1 << 20),
            }
        );
        assert_eq!(
            c.max_resources,
            Resources {
                memory: Some(4 << 30),
                millicpus: Some(2500),
                pids: Some(4096),
            }
        );
        // A maximum below a built-in default lowers that default.
        let c = Config::parse("s.toml", "[server]\nmax_step_pids = 100\n").unwrap();
        assert_eq!(c.limits.defaults.pids, Some(100));
    }

    #[test]
    fn bad_limits_name_the_file_line_and_key() {
        let err = Config::parse(
            "s.toml",
            "[server]\nlisten = \"127.0.0.1:1\"\nstep_memory = \"lots\"\nstep_cpus = 0\nstep_pids = -1\nlog_max_size = \"0\"\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "s.toml:3:15: server.step_memory: `lots` is not a size of at least 6.0 MiB (e.g. `2GiB`, `512MiB`)",
                "s.toml:6:16: server.log_max_size: `0` is not a size of at least 1.0 KiB (e.g. `2GiB`, `512MiB`)",
                "s.toml:4:13: server.step_cpus: `0` is not a number of CPUs of at least 0.01 (e.g. `1.5`)",
                "s.toml:5:13: server.step_pids: `-1` is not a whole number of at least 1 (e.g. `1024`)",
            ]
        );
        let err = Config::parse(
            "s.toml",
            "[server]\nstep_memory = \"8GiB\"\nmax_step_memory = \"4GiB\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "s.toml: server.step_memory: 8.0 GiB is above server.max_step_memory (4.0 GiB)"
        );
    }
}
