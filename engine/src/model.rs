//! What a pipeline is, once parsed and validated.

use std::time::Duration;

use crate::pattern::glob_match;

/// A validated pipeline: steps in file order, every `needs` resolvable, no cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    /// Variables for every step, in file order (a step's own `env` wins).
    pub env: Vec<(String, String)>,
    /// Containers started before the first step and reachable by their name.
    pub services: Vec<Service>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    /// Overrides the image's command; empty keeps the image's own.
    pub commands: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub image: String,
    pub commands: Vec<String>,
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
    /// Where the step is declared, for messages about it at run time.
    pub line: usize,
}

/// Conditions under which a step runs; an empty list places no condition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    pub event: Vec<String>,
    pub branch: Vec<String>,
}

/// What started a run: the facts `when:` conditions are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub event: String,
    pub branch: Option<String>,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            event: "push".into(),
            branch: None,
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

impl Pipeline {
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// For each step, whether its `when:` excludes it from a run with this trigger.
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
    fn when_matches_event_and_branch_globs() {
        let when = When {
            event: vec!["push".into()],
            branch: vec!["main".into(), "release/*".into()],
        };
        let t = |e: &str, b: Option<&str>| Trigger {
            event: e.into(),
            branch: b.map(Into::into),
        };
        assert!(when.matches(&t("push", Some("main"))));
        assert!(when.matches(&t("push", Some("release/2.0"))));
        assert!(!when.matches(&t("push", Some("feature/x"))));
        assert!(!when.matches(&t("pull_request", Some("main"))));
        assert!(!when.matches(&t("push", None)));
        assert!(When::default().matches(&t("tag", None)));
    }
}
