//! Secret values in the config: inline, from an environment variable, or
//! from a file, so a config can be committed without its secrets.

use std::path::PathBuf;

use serde::Deserialize;

use super::SecretSource;
use crate::store::{SECRET_EVENTS, SecretFilter};

/// The value of a secret, `None` when none is configured; an empty or
/// unreadable one is an error message for the key that names it.
pub(super) fn resolve(source: Option<&SecretSource>) -> Result<Option<String>, String> {
    match source {
        None => Ok(None),
        Some(SecretSource::Inline(s)) if s.is_empty() => Err("is empty".into()),
        Some(SecretSource::Inline(s)) => Ok(Some(s.clone())),
        Some(SecretSource::Env { env }) => match std::env::var(env) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(format!("environment variable `{env}` is not set")),
        },
        Some(SecretSource::File { file }) => match std::fs::read_to_string(file) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            Ok(_) => Err(format!("file `{}` is empty", file.display())),
            Err(e) => Err(format!("cannot read `{}`: {e}", file.display())),
        },
    }
}

/// A secret as the config gives it: a bare value (inline string, or
/// `{ env = ... }` / `{ file = ... }`), or a table that also limits which
/// runs get it.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a value, or a table with one of `value`, `env`, `file` and optionally `events`, `branches`, `tags`"
)]
pub(super) enum RawSecret {
    Inline(String),
    Table(RawSecretTable),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecretTable {
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    branches: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// `[[secrets]]`: a server-wide secret, given to every repository's runs
/// its filter allows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerSecret {
    name: toml::Spanned<String>,
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    branches: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// A secret of the config file, resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfiguredSecret {
    pub value: String,
    pub filter: SecretFilter,
}

impl std::fmt::Debug for ConfiguredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredSecret")
            .field("value", &"********")
            .field("filter", &self.filter)
            .finish()
    }
}

pub use slipway_runner::mask::{MIN_SECRET_LEN, check_secret_value};

/// Whether `name` can be a variable in a step's environment.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a filter's events and patterns; problems are prefixed with `at`.
pub fn check_filter(filter: &SecretFilter, at: &str, problems: &mut Vec<String>) {
    for e in &filter.events {
        if !SECRET_EVENTS.contains(&e.as_str()) {
            problems.push(format!(
                "{at}.events: `{e}` is not one of {}",
                SECRET_EVENTS.join(", ")
            ));
        }
    }
    for (key, patterns) in [("branches", &filter.branches), ("tags", &filter.tags)] {
        if patterns.iter().any(|p| p.trim().is_empty()) {
            problems.push(format!("{at}.{key}: a pattern is empty"));
        }
    }
}

fn configured(
    at: &str,
    source: Option<SecretSource>,
    filter: SecretFilter,
    problems: &mut Vec<String>,
) -> Option<ConfiguredSecret> {
    check_filter(&filter, at, problems);
    let Some(source) = source else {
        problems.push(format!("{at}: give one of `value`, `env` or `file`"));
        return None;
    };
    match resolve(Some(&source)) {
        Ok(Some(value)) => match check_secret_value(&value) {
            Ok(()) => Some(ConfiguredSecret { value, filter }),
            Err(m) => {
                problems.push(format!("{at}: {m}"));
                None
            }
        },
        Ok(None) => None,
        Err(m) => {
            problems.push(format!("{at}: {m}"));
            None
        }
    }
}

fn one_source(
    at: &str,
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    problems: &mut Vec<String>,
) -> Option<SecretSource> {
    let given = [value.is_some(), env.is_some(), file.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given > 1 {
        problems.push(format!("{at}: give only one of `value`, `env` or `file`"));
        return None;
    }
    value
        .map(SecretSource::Inline)
        .or(env.map(|env| SecretSource::Env { env }))
        .or(file.map(|file| SecretSource::File { file }))
        .or_else(|| {
            problems.push(format!("{at}: give one of `value`, `env` or `file`"));
            None
        })
}

/// A repository's or environment's `secrets` table, by name; `at(span, key)`
/// locates a key for a problem.
pub(super) fn resolve_table(
    raw: &std::collections::BTreeMap<String, toml::Spanned<RawSecret>>,
    at: impl Fn(std::ops::Range<usize>, &str) -> String,
    problems: &mut Vec<String>,
) -> std::collections::BTreeMap<String, ConfiguredSecret> {
    let mut out = std::collections::BTreeMap::new();
    for (name, given) in raw {
        let here = at(given.span(), &format!("secrets.{name}"));
        if !is_variable_name(name) {
            problems.push(format!(
                "{here}: `{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"
            ));
        }
        let secret = match given.get_ref().clone() {
            RawSecret::Inline(s) => configured(
                &here,
                Some(SecretSource::Inline(s)),
                SecretFilter::default(),
                problems,
            ),
            RawSecret::Table(t) => {
                let source = one_source(&here, t.value, t.env, t.file, problems);
                let filter = SecretFilter {
                    events: t.events,
                    branches: t.branches,
                    tags: t.tags,
                };
                match source {
                    Some(s) => configured(&here, Some(s), filter, problems),
                    None => None,
                }
            }
        };
        if let Some(s) = secret {
            out.insert(name.clone(), s);
        }
    }
    out
}

/// `[[secrets]]`, by name.
pub(super) fn resolve_server(
    file: &str,
    text: &str,
    raw: Vec<RawServerSecret>,
    problems: &mut Vec<String>,
) -> std::collections::BTreeMap<String, ConfiguredSecret> {
    let mut out = std::collections::BTreeMap::new();
    for (i, s) in raw.into_iter().enumerate() {
        let (line, col) = super::line_col(text, s.name.span().start);
        let name = s.name.into_inner();
        let here = format!("{file}:{line}:{col}: secrets[{i}] ({name})");
        if !is_variable_name(&name) {
            problems.push(format!(
                "{here}.name: `{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"
            ));
        }
        if out.contains_key(&name) {
            problems.push(format!("{here}.name: declared twice"));
        }
        let source = one_source(&here, s.value, s.env, s.file, problems);
        let filter = SecretFilter {
            events: s.events,
            branches: s.branches,
            tags: s.tags,
        };
        if let Some(secret) = source.and_then(|src| configured(&here, Some(src), filter, problems))
        {
            out.insert(name, secret);
        }
    }
    out
}
