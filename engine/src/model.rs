//! What a pipeline is, once parsed and validated.

use std::time::Duration;

use crate::pattern::glob_match;

/// A validated pipeline: steps in file order, every `needs` resolvable, no cycle.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pipeline {
    pub name: String,
    /// Variables for every step, in file order (a step's own `env` wins).
    pub env: Vec<(String, String)>,
    /// Containers started before the first step and reachable by their name.
    pub services: Vec<Service>,
    pub steps: Vec<Step>,
    /// Which forge events start this pipeline on the server; `None`: all of them.
    pub on: Option<On>,
    /// What a pull request's green build is deployed as, on the server.
    pub preview: Option<Preview>,
    /// Labels a runner must have to take a run of this pipeline
    /// (`runs_on: [linux, large]`); empty: any runner.
    #[serde(default)]
    pub runs_on: Vec<String>,
}

/// `preview:`: the image a build step pushed, run per pull request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Preview {
    /// The build step whose pushed digest is deployed.
    pub step: String,
    /// The port the app listens on in its container.
    pub port: u16,
    /// Answering 2xx here means ready; `None`: accepting connections does.
    pub health: Option<String>,
    pub env: Vec<(String, String)>,
}

/// `on:` — the events (and refs) that start a pipeline on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct On {
    /// `None`: pushes do not start the pipeline.
    pub push: Option<RefFilter>,
    /// Filters on the pull request's target branch.
    pub pull_request: Option<RefFilter>,
    pub manual: bool,
}

/// Branch and tag patterns. As on GitHub, naming only branches means tag
/// pushes do not run, and the other way round; naming neither runs both.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefFilter {
    pub branches: Vec<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    /// Overrides the image's command; empty keeps the image's own.
    pub commands: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub name: String,
    /// Empty for a build step.
    pub image: String,
    /// Empty for a build step.
    pub commands: Vec<String>,
    /// Builds an image instead of running commands.
    pub build: Option<Build>,
    /// Directories restored before the step and saved after it succeeds.
    pub cache: Vec<Cache>,
    /// Globs of workspace files kept with the run after the step succeeds.
    pub artifacts: Vec<String>,
    /// A deploy step: runs only when an image is promoted to this
    /// environment, never in the pipeline's own runs.
    pub environment: Option<String>,
    pub needs: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Names of secrets given to the step as variables; their values are masked in logs.
    pub secrets: Vec<String>,
    pub timeout: Option<Duration>,
    /// Extra attempts after a failure (not after a timeout or cancel).
    pub retries: u32,
    /// A failure of this step neither fails the run nor skips its dependents.
    pub allow_failure: bool,
    pub when: When,
    /// Limits of the step's container; what it leaves unset comes from
    /// the server (or `slipway run`).
    pub resources: Resources,
    /// Where the step is declared, for messages about it at run time.
    pub line: usize,
}

/// `resources:` of a step, or a server's defaults or maximums. `None`
/// sets no limit of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// Bytes of memory, swap included: a step over it is killed rather
    /// than slowing the machine down by swapping.
    pub memory: Option<u64>,
    /// Thousandths of a CPU (`cpus: 1.5` is 1500), so limits compare exactly.
    pub millicpus: Option<u64>,
    /// Processes and threads alive at once.
    pub pids: Option<u64>,
}

impl Resources {
    /// Each limit set here, else the one in `defaults`.
    pub fn or(self, defaults: Resources) -> Resources {
        Resources {
            memory: self.memory.or(defaults.memory),
            millicpus: self.millicpus.or(defaults.millicpus),
            pids: self.pids.or(defaults.pids),
        }
    }

    /// Each limit lowered to the one in `max`; one unset here is `max`'s.
    pub fn min(self, max: Resources) -> Resources {
        let cap = |limit: Option<u64>, max: Option<u64>| match (limit, max) {
            (Some(l), Some(m)) => Some(l.min(m)),
            (l, m) => l.or(m),
        };
        Resources {
            memory: cap(self.memory, max.memory),
            millicpus: cap(self.millicpus, max.millicpus),
            pids: cap(self.pids, max.pids),
        }
    }

    /// The limits set here that are above the ones set in `max`, each as
    /// `(key, asked, allowed)` in the words a user wrote them in.
    pub fn above(&self, max: &Resources) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        let mut check = |key, asked: Option<u64>, allowed: Option<u64>, show: fn(u64) -> String| {
            if let (Some(a), Some(m)) = (asked, allowed)
                && a > m
            {
                out.push((key, show(a), show(m)));
            }
        };
        check("memory", self.memory, max.memory, crate::size::format_size);
        check("cpus", self.millicpus, max.millicpus, format_cpus);
        check("pids", self.pids, max.pids, |n| n.to_string());
        out
    }
}

/// `1500` thousandths as `1.5`, the way `cpus:` is written.
pub fn format_cpus(millicpus: u64) -> String {
    let text = format!("{}.{:03}", millicpus / 1000, millicpus % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `build:` of a step: an image built by the daemon from the workspace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Build {
    /// Directory of the workspace sent as the build context.
    pub context: String,
    /// Relative to the context.
    pub dockerfile: String,
    pub target: Option<String>,
    /// Values may use `${VAR}`.
    pub args: Vec<(String, String)>,
    /// May use `${VAR}`; the first is the one pushed and recorded.
    pub tags: Vec<String>,
    pub push: bool,
    /// Images whose layers may be reused (inline cache in a registry).
    pub cache_from: Vec<String>,
    /// A tag the image is also pushed to, with inline cache metadata, so a
    /// builder with an empty local cache can reuse its layers.
    pub cache_to: Option<String>,
}

/// One `cache:` entry of a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cache {
    pub key: crate::template::KeyTemplate,
    /// Workspace-relative directories or files.
    pub paths: Vec<String>,
    /// Prefixes: on a miss, the newest entry whose key starts with one.
    pub restore_keys: Vec<String>,
}

/// Conditions under which a step runs; an empty list places no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct When {
    pub event: Vec<String>,
    pub branch: Vec<String>,
}

/// What started a run: the facts `when:` conditions are checked against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trigger {
    pub event: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// For pull requests: the branch they want to merge into.
    pub target_branch: Option<String>,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            event: "push".into(),
            branch: None,
            tag: None,
            target_branch: None,
        }
    }
}

/// Events a step may name in `when: { event: [...] }`.
pub const EVENTS: &[&str] = &["push", "pull_request", "tag", "manual"];

impl When {
    pub fn matches(&self, trigger: &Trigger) -> bool {
        let event_ok = self.event.is_empty() || self.event.contains(&trigger.event);
        let branch_ok = self.branch.is_empty()
            || trigger
                .branch
                .as_deref()
                .is_some_and(|b| self.branch.iter().any(|p| glob_match(p, b)));
        event_ok && branch_ok
    }

    /// Why a trigger does not match, for the skip message of a step.
    pub fn explain(&self, trigger: &Trigger) -> String {
        let mut parts = Vec::new();
        if !self.event.is_empty() {
            parts.push(format!("event in [{}]", self.event.join(", ")));
        }
        if !self.branch.is_empty() {
            parts.push(format!("branch in [{}]", self.branch.join(", ")));
        }
        let branch = trigger.branch.as_deref().unwrap_or("<none>");
        format!(
            "when: {} (this run: event {}, branch {branch})",
            parts.join(" and "),
            trigger.event
        )
    }
}

impl RefFilter {
    fn matches_ref(&self, branch: Option<&str>, tag: Option<&str>) -> bool {
        let any = |patterns: &[String], name: &str| patterns.iter().any(|p| glob_match(p, name));
        match (branch, tag) {
            (_, Some(tag)) => {
                (self.tags.is_empty() && self.branches.is_empty()) || any(&self.tags, tag)
            }
            (Some(branch), None) => {
                (self.branches.is_empty() && self.tags.is_empty()) || any(&self.branches, branch)
            }
            (None, None) => self.branches.is_empty() && self.tags.is_empty(),
        }
    }
}

impl On {
    /// `Err` carries why the trigger does not start the pipeline.
    pub fn accepts(&self, t: &Trigger) -> Result<(), String> {
        let refused = |what: String| Err(format!("`on:` does not include {what}"));
        match t.event.as_str() {
            "push" | "tag" => match &self.push {
                None => refused("push".into()),
                Some(f) if f.matches_ref(t.branch.as_deref(), t.tag.as_deref()) => Ok(()),
                Some(_) => match (&t.tag, &t.branch) {
                    (Some(tag), _) => refused(format!("pushes of tag `{tag}`")),
                    (None, Some(branch)) => refused(format!("pushes to branch `{branch}`")),
                    (None, None) => refused("this push".into()),
                },
            },
            "pull_request" => match &self.pull_request {
                None => refused("pull_request".into()),
                Some(f) if f.branches.is_empty() => Ok(()),
                Some(f) => match &t.target_branch {
                    Some(target) if f.branches.iter().any(|p| glob_match(p, target)) => Ok(()),
                    Some(target) => refused(format!("pull requests into `{target}`")),
                    None => refused("pull requests without a target branch".into()),
                },
            },
            "manual" if self.manual => Ok(()),
            other => refused(format!("`{other}` events")),
        }
    }
}

impl Pipeline {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The named steps and every step they need, directly or not: what must
    /// run again for them, since steps share one workspace.
    pub fn with_needs<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut stack: Vec<String> = names.into_iter().map(String::from).collect();
        while let Some(name) = stack.pop() {
            if let Some(step) = self.step(&name)
                && out.insert(name)
            {
                stack.extend(step.needs.iter().cloned());
            }
        }
        out
    }

    /// For each step, whether its `when:` excludes it from a run with this trigger.
    /// The pipeline a run executes: without deploy steps.
    pub fn without_deploy_steps(&self) -> Pipeline {
        Pipeline {
            steps: self
                .steps
                .iter()
                .filter(|s| s.environment.is_none())
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// What a promotion to `environment` runs: its deploy steps only
    /// (`None` when it has none).
    pub fn deploy_steps(&self, environment: &str) -> Option<Pipeline> {
        let steps: Vec<Step> = self
            .steps
            .iter()
            .filter(|s| s.environment.as_deref() == Some(environment))
            .cloned()
            .collect();
        (!steps.is_empty()).then(|| Pipeline {
            steps,
            ..self.clone()
        })
    }

    pub fn excluded(&self, trigger: &Trigger) -> Vec<bool> {
        self.steps
            .iter()
            .map(|s| !s.when.matches(trigger))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_limit_wins_over_the_default_and_is_checked_against_the_max() {
        let step = Resources {
            memory: Some(8 << 30),
            millicpus: Some(500),
            pids: None,
        };
        let defaults = Resources {
            memory: Some(2 << 30),
            millicpus: Some(2000),
            pids: Some(1024),
        };
        assert_eq!(
            step.or(defaults),
            Resources {
                memory: Some(8 << 30),
                millicpus: Some(500),
                pids: Some(1024),
            }
        );
        let max = Resources {
            memory: Some(4 << 30),
            millicpus: Some(250),
            pids: Some(100),
        };
        assert_eq!(
            step.or(defaults).above(&max),
            [
                ("memory", "8.0 GiB".to_string(), "4.0 GiB".to_string()),
                ("cpus", "0.5".to_string(), "0.25".to_string()),
                ("pids", "1024".to_string(), "100".to_string()),
            ]
        );
        assert!(step.above(&Resources::default()).is_empty());
        assert_eq!(
            defaults.min(max),
            Resources {
                memory: Some(2 << 30),
                millicpus: Some(250),
                pids: Some(100),
            }
        );
        assert_eq!(Resources::default().min(max), max);
        assert_eq!(format_cpus(2000), "2");
    }

    #[test]
    fn when_matches_event_and_branch_globs() {
        let when = When {
            event: vec!["push".into()],
            branch: vec!["main".into(), "release/*".into()],
        };
        let t = |e: &str, b: Option<&str>| Trigger {
            event: e.into(),
            branch: b.map(Into::into),
            ..Trigger::default()
        };
        assert!(when.matches(&t("push", Some("main"))));
        assert!(when.matches(&t("push", Some("release/2.0"))));
        assert!(!when.matches(&t("push", Some("feature/x"))));
        assert!(!when.matches(&t("pull_request", Some("main"))));
        assert!(!when.matches(&t("push", None)));
        assert!(When::default().matches(&t("tag", None)));
    }

    #[test]
    fn on_filters_follow_branch_tag_and_target_rules() {
        let on = On {
            push: Some(RefFilter {
                branches: vec!["main".into(), "release/*".into()],
                tags: vec![],
            }),
            pull_request: Some(RefFilter {
                branches: vec!["main".into()],
                tags: vec![],
            }),
            manual: false,
        };
        let push = |branch: Option<&str>, tag: Option<&str>| Trigger {
            event: if tag.is_some() {
                "tag".into()
            } else {
                "push".into()
            },
            branch: branch.map(Into::into),
            tag: tag.map(Into::into),
            target_branch: None,
        };
        assert_eq!(on.accepts(&push(Some("main"), None)), Ok(()));
        assert_eq!(on.accepts(&push(Some("release/1"), None)), Ok(()));
        assert_eq!(
            on.accepts(&push(Some("dev"), None)),
            Err("`on:` does not include pushes to branch `dev`".into())
        );
        assert_eq!(
            on.accepts(&push(None, Some("v1"))),
            Err("`on:` does not include pushes of tag `v1`".into())
        );
        let pr = |target: &str| Trigger {
            event: "pull_request".into(),
            branch: Some("feature".into()),
            tag: None,
            target_branch: Some(target.into()),
        };
        assert_eq!(on.accepts(&pr("main")), Ok(()));
        assert_eq!(
            on.accepts(&pr("dev")),
            Err("`on:` does not include pull requests into `dev`".into())
        );
        let everything = On {
            push: Some(RefFilter::default()),
            ..On::default()
        };
        assert_eq!(everything.accepts(&push(None, Some("v1"))), Ok(()));
        assert_eq!(
            everything.accepts(&pr("x")),
            Err("`on:` does not include pull_request".into())
        );
    }

    #[test]
    fn with_needs_closes_over_needs_transitively() {
        let p = crate::parse("p.yml", "steps:\n  a: {image: x, commands: [x]}\n  b: {image: x, commands: [x], needs: [a]}\n  c: {image: x, commands: [x], needs: [b]}\n  d: {image: x, commands: [x]}\n").pipeline.unwrap();
        assert_eq!(
            p.with_needs(["c"]).into_iter().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(
            p.with_needs(["d", "nope"]).into_iter().collect::<Vec<_>>(),
            ["d"]
        );
    }
}
