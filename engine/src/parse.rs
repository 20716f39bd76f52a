//! YAML text to a [`Pipeline`], reporting every problem at once.
//!
//! We walk saphyr's span-carrying tree by hand rather than deserialising with
//! serde: serde stops at the first error, and users fixing a pipeline want
//! the whole list, each with its line and column and, where we can guess,
//! the fix.

use std::collections::HashSet;
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use crate::dag;
use crate::diagnostic::{Diagnostic, Severity};
use crate::duration::parse_duration;
use crate::model::{Build, Cache, EVENTS, On, Pipeline, RefFilter, Service, Step, When};
use crate::suggest::closest;
use crate::template::check_relative;

/// The outcome of parsing: the pipeline when it is valid, and all diagnostics.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub pipeline: Option<Pipeline>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

const TOP_KEYS: &[&str] = &["name", "env", "services", "steps", "on", "preview"];
const PREVIEW_KEYS: &[&str] = &["image", "port", "health", "env"];
const ON_EVENTS: &[&str] = &["push", "pull_request", "manual"];
const FILTER_KEYS: &[&str] = &["branches", "tags"];
const STEP_KEYS: &[&str] = &[
    "image",
    "commands",
    "needs",
    "env",
    "secrets",
    "timeout",
    "retries",
    "allow_failure",
    "when",
    "build",
    "cache",
    "artifacts",
    "environment",
];
const BUILD_KEYS: &[&str] = &[
    "context",
    "dockerfile",
    "target",
    "args",
    "tags",
    "push",
    "cache_from",
    "cache_to",
];
const CACHE_KEYS: &[&str] = &["key", "paths", "restore_keys"];
const SERVICE_KEYS: &[&str] = &["image", "env", "commands"];
const WHEN_KEYS: &[&str] = &["event", "branch"];
/// Retrying more than this hides a broken step rather than a flaky one.
const MAX_RETRIES: i64 = 10;

/// Parses a pipeline file. `file` is only used to label diagnostics.
pub fn parse(file: &str, source: &str) -> Parsed {
    let mut cx = Cx {
        file,
        diagnostics: Vec::new(),
    };
    let pipeline = parse_document(&mut cx, source);
    let mut diagnostics = cx.diagnostics;
    diagnostics.sort_by_key(|d| (d.line, d.col));
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Parsed {
        pipeline: if has_errors { None } else { pipeline },
        diagnostics,
    }
}

struct Cx<'f> {
    file: &'f str,
    diagnostics: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, node: &MarkedYaml, message: impl Into<String>, hint: Option<String>) {
        let (line, col) = pos(node);
        self.error_at(line, col, message, hint);
    }

    fn error_at(
        &mut self,
        line: usize,
        col: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            hint,
        });
    }

    fn warning(&mut self, node: &MarkedYaml, message: impl Into<String>) {
        let (line, col) = pos(node);
        self.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            hint: None,
        });
    }

    /// Reports a key that is not one of `allowed`, suggesting the closest one.
    fn unknown_key(&mut self, key_node: &MarkedYaml, key: &str, context: &str, allowed: &[&str]) {
        let hint = match closest(key, allowed.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("allowed keys: {}", allowed.join(", ")),
        };
        self.error(
            key_node,
            format!("unknown key `{key}` in {context}"),
            Some(hint),
        );
    }
}

fn pos(node: &MarkedYaml) -> (usize, usize) {
    (node.span.start.line().max(1), node.span.start.col() + 1)
}

fn data<'a, 'i>(node: &'a MarkedYaml<'i>) -> &'a YamlData<'i, MarkedYaml<'i>> {
    match &node.data {
        YamlData::Tagged(_, inner) => data(inner),
        d => d,
    }
}

/// A scalar as text: YAML users write `retries: 2` and `VERSION: 1.0` and
/// mean the text they typed, so numbers and booleans become strings.
fn scalar_text(node: &MarkedYaml) -> Option<String> {
    match data(node) {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

fn kind_of(node: &MarkedYaml) -> &'static str {
    match data(node) {
        YamlData::Mapping(_) => "a mapping",
        YamlData::Sequence(_) => "a list",
        YamlData::Value(Scalar::Null) => "empty",
        YamlData::Value(_) | YamlData::Representation(..) => "a scalar",
        YamlData::Alias(_) => "an alias",
        _ => "an invalid value",
    }
}

fn parse_document(cx: &mut Cx, source: &str) -> Option<Pipeline> {
    let docs = match MarkedYaml::load_from_str(source) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            cx.error_at(
                m.line().max(1),
                m.col() + 1,
                format!("invalid YAML: {}", e.info()),
                None,
            );
            return None;
        }
    };
    let Some(root) = docs.first() else {
        cx.error_at(
            1,
            1,
            "the pipeline file is empty",
            Some("start with `steps:`".into()),
        );
        return None;
    };
    if docs.len() > 1 {
        cx.warning(
            &docs[1],
            "only the first YAML document is read; the others are ignored",
        );
    }
    let YamlData::Mapping(map) = data(root) else {
        cx.error(
            root,
            format!("a pipeline must be a mapping, found {}", kind_of(root)),
            None,
        );
        return None;
    };

    let mut name = None;
    let mut env = Vec::new();
    let mut services = Vec::new();
    let mut steps = None;
    let mut on = None;
    let mut preview = None;
    for (k, v) in map.iter() {
        let Some(key) = scalar_text(k) else {
            cx.error(k, "keys must be plain words", None);
            continue;
        };
        match key.as_str() {
            "name" => name = expect_string(cx, v, "name"),
            "env" => env = parse_env(cx, v, "env"),
            "services" => services = parse_services(cx, v),
            "steps" => steps = Some(parse_steps(cx, v)),
            "on" => on = Some(parse_on(cx, v)),
            "preview" => preview = parse_preview(cx, v).map(|p| (p, detach(k))),
            _ => cx.unknown_key(k, &key, "the pipeline", TOP_KEYS),
        }
    }
    let Some(steps) = steps else {
        cx.error(
            root,
            "the pipeline has no `steps`",
            Some("add `steps:` with at least one step".into()),
        );
        return None;
    };
    check_graph(cx, map);
    let steps = steps?;
    check_environments(cx, &steps);
    let preview = match preview {
        Some((p, at)) => {
            match steps.iter().find(|s| s.name == p.step) {
                None => {
                    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
                    let hint = closest(&p.step, names.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"));
                    cx.error(
                        &at,
                        format!("`preview.image` names unknown step `{}`", p.step),
                        hint,
                    );
                }
                Some(s) if !s.build.as_ref().is_some_and(|b| b.push) => cx.error(
                    &at,
                    format!(
                        "`preview.image` step `{}` does not build and push an image",
                        p.step
                    ),
                    Some("name a step with `build: { ..., push: true }`".into()),
                ),
                Some(_) => {}
            }
            Some(p)
        }
        None => None,
    };
    let pipeline = Pipeline {
        name: name.unwrap_or_else(|| "pipeline".into()),
        env,
        services,
        steps,
        on,
        preview,
    };
    Some(pipeline)
}

fn expect_string(cx: &mut Cx, node: &MarkedYaml, field: &str) -> Option<String> {
    match data(node) {
        YamlData::Value(Scalar::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
        YamlData::Representation(s, _, _) if !s.trim().is_empty() => Some(s.to_string()),
        YamlData::Value(Scalar::String(_)) | YamlData::Value(Scalar::Null) => {
            cx.error(node, format!("`{field}` is empty"), None);
            None
        }
        _ => match scalar_text(node) {
            Some(s) => Some(s),
            None => {
                cx.error(
                    node,
                    format!("`{field}` must be text, found {}", kind_of(node)),
                    None,
                );
                None
            }
        },
    }
}

/// A list of strings; a single string is taken as a list of one, since
/// `needs: build` is what people write for one dependency.
fn expect_string_list(
    cx: &mut Cx,
    node: &MarkedYaml,
    field: &str,
) -> Vec<(String, MarkedYaml<'static>)> {
    let mut out = Vec::new();
    match data(node) {
        YamlData::Sequence(items) => {
            for item in items {
                match scalar_text(item) {
                    Some(s) => out.push((s, detach(item))),
                    None => cx.error(
                        item,
                        format!("entries of `{field}` must be text, found {}", kind_of(item)),
                        None,
                    ),
                }
            }
        }
        YamlData::Value(Scalar::Null) => {}
        _ => match scalar_text(node) {
            Some(s) => out.push((s, detach(node))),
            None => cx.error(
                node,
                format!("`{field}` must be a list, found {}", kind_of(node)),
                None,
            ),
        },
    }
    out
}

/// Keeps only the position of a node, so located values can outlive the source text.
fn detach(node: &MarkedYaml) -> MarkedYaml<'static> {
    MarkedYaml {
        span: node.span,
        data: YamlData::Value(Scalar::Null),
    }
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Step and service names become container names and host names.
fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.len() <= 63
}

/// The name of a step or service, from its key; an unusable one is reported.
fn entry_name(cx: &mut Cx, key: &MarkedYaml, kind: &str) -> Option<String> {
    let Some(name) = scalar_text(key) else {
        cx.error(key, format!("{kind} names must be text"), None);
        return None;
    };
    if !is_valid_name(&name) {
        cx.error(
            key,
            format!("`{name}` is not a valid {kind} name"),
            Some(format!(
                "use letters, digits, `-`, `_` and `.` (at most 63): it names the {kind}'s container{}",
                if kind == "service" { " and host" } else { "" }
            )),
        );
    }
    Some(name)
}

fn parse_env(cx: &mut Cx, node: &MarkedYaml, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let map = match data(node) {
        YamlData::Mapping(map) => map,
        YamlData::Value(Scalar::Null) => return out,
        _ => {
            cx.error(
                node,
                format!(
                    "`{field}` must be a mapping of NAME: value, found {}",
                    kind_of(node)
                ),
                Some("for example `env: { MODE: ci }`".into()),
            );
            return out;
        }
    };
    for (k, v) in map.iter() {
        let Some(key) = scalar_text(k) else {
            cx.error(k, format!("variable names in `{field}` must be text"), None);
            continue;
        };
        if !is_env_name(&key) {
            cx.error(
                k,
                format!("`{key}` is not a valid variable name"),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
            continue;
        }
        match data(v) {
            YamlData::Value(Scalar::Null) => out.push((key, String::new())),
            _ => match scalar_text(v) {
                Some(val) => out.push((key, val)),
                None => cx.error(
                    v,
                    format!("the value of `{key}` must be text, found {}", kind_of(v)),
                    None,
                ),
            },
        }
    }
    out
}

fn parse_services(cx: &mut Cx, node: &MarkedYaml) -> Vec<Service> {
    let mut out = Vec::new();
    let map = match data(node) {
        YamlData::Mapping(map) => map,
        YamlData::Value(Scalar::Null) => return out,
        _ => {
            cx.error(
                node,
                format!(
                    "`services` must be a mapping of name: service, found {}",
                    kind_of(node)
                ),
                None,
            );
            return out;
        }
    };
    for (k, v) in map.iter() {
        let Some(name) = entry_name(cx, k, "service") else {
            continue;
        };
        let YamlData::Mapping(fields) = data(v) else {
            cx.error(
                v,
                format!("service `{name}` must be a mapping, found {}", kind_of(v)),
                None,
            );
            continue;
        };
        let mut image = None;
        let mut env = Vec::new();
        let mut commands = Vec::new();
        for (fk, fv) in fields.iter() {
            let Some(field) = scalar_text(fk) else {
                continue;
            };
            match field.as_str() {
                "image" => image = expect_string(cx, fv, "image"),
                "env" => env = parse_env(cx, fv, "env"),
                "commands" => {
                    commands = expect_string_list(cx, fv, "commands")
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect()
                }
                _ => cx.unknown_key(fk, &field, &format!("service `{name}`"), SERVICE_KEYS),
            }
        }
        match image {
            Some(image) => out.push(Service {
                name,
                image,
                env,
                commands,
                line: pos(k).0,
            }),
            None if !fields
                .iter()
                .any(|(fk, _)| scalar_text(fk).as_deref() == Some("image")) =>
            {
                cx.error(k, format!("service `{name}` has no `image`"), None)
            }
            None => {}
        }
    }
    out
}

fn parse_steps(cx: &mut Cx, node: &MarkedYaml) -> Option<Vec<Step>> {
    let map = match data(node) {
        YamlData::Mapping(map) => map,
        YamlData::Sequence(_) => {
            cx.error(
                node,
                "`steps` must be a mapping of step name to step, found a list",
                Some("write `steps:` then `  build:` with the step's keys under it".into()),
            );
            return None;
        }
        _ => {
            cx.error(
                node,
                format!(
                    "`steps` must be a mapping of name: step, found {}",
                    kind_of(node)
                ),
                None,
            );
            return None;
        }
    };
    if map.is_empty() {
        cx.error(node, "the pipeline has no steps", None);
        return None;
    }
    let mut steps = Vec::new();
    for (k, v) in map.iter() {
        let Some(name) = entry_name(cx, k, "step") else {
            continue;
        };
        if let Some(step) = parse_step(cx, &name, k, v) {
            steps.push(step);
        }
    }
    Some(steps)
}

fn parse_step(cx: &mut Cx, name: &str, key: &MarkedYaml, node: &MarkedYaml) -> Option<Step> {
    let YamlData::Mapping(fields) = data(node) else {
        cx.error(
            node,
            format!("step `{name}` must be a mapping, found {}", kind_of(node)),
            Some("give it at least `image` and `commands`".into()),
        );
        return None;
    };
    let mut image = None;
    let mut commands: Option<Vec<String>> = None;
    let mut needs = Vec::new();
    let mut env = Vec::new();
    let mut secrets = Vec::new();
    let mut timeout = None;
    let mut retries = 0;
    let mut allow_failure = false;
    let mut when = When::default();
    let mut build = None;
    let mut cache = Vec::new();
    let mut artifacts = Vec::new();
    let mut environment = None;
    for (fk, fv) in fields.iter() {
        let Some(field) = scalar_text(fk) else {
            cx.error(fk, "keys must be plain words", None);
            continue;
        };
        match field.as_str() {
            "image" => image = expect_string(cx, fv, "image"),
            "commands" => {
                let list = expect_string_list(cx, fv, "commands");
                for (cmd, at) in &list {
                    if cmd.trim().is_empty() {
                        cx.error(at, format!("step `{name}` has an empty command"), None);
                    }
                }
                if list.is_empty()
                    && matches!(
                        data(fv),
                        YamlData::Sequence(_) | YamlData::Value(Scalar::Null)
                    )
                {
                    cx.error(
                        fv,
                        format!("step `{name}` has empty `commands`"),
                        Some("add at least one command, e.g. `commands: [\"make test\"]`".into()),
                    );
                }
                commands = Some(list.into_iter().map(|(s, _)| s).collect());
            }
            "needs" => needs = expect_string_list(cx, fv, "needs"),
            "env" => env = parse_env(cx, fv, "env"),
            "secrets" => {
                for (secret, at) in expect_string_list(cx, fv, "secrets") {
                    if is_env_name(&secret) {
                        secrets.push(secret);
                    } else {
                        cx.error(
                            &at,
                            format!("`{secret}` is not a valid secret name"),
                            Some(
                                "secrets are passed as variables: use letters, digits and `_`"
                                    .into(),
                            ),
                        );
                    }
                }
            }
            "timeout" => match scalar_text(fv).as_deref().map(|t| (t, parse_duration(t))) {
                Some((_, Some(d))) if d > Duration::ZERO => timeout = Some(d),
                Some((t, _)) => cx.error(
                    fv,
                    format!("invalid duration `{t}` for `timeout`"),
                    Some("use a positive number with a unit: `30s`, `5m`, `1h30m`".into()),
                ),
                None => cx.error(
                    fv,
                    format!("`timeout` must be a duration, found {}", kind_of(fv)),
                    None,
                ),
            },
            "retries" => match data(fv) {
                YamlData::Value(Scalar::Integer(n)) if (0..=MAX_RETRIES).contains(n) => {
                    retries = *n as u32
                }
                _ => cx.error(
                    fv,
                    format!("`retries` must be a whole number from 0 to {MAX_RETRIES}"),
                    None,
                ),
            },
            "allow_failure" => match data(fv) {
                YamlData::Value(Scalar::Boolean(b)) => allow_failure = *b,
                _ => cx.error(fv, "`allow_failure` must be `true` or `false`", None),
            },
            "when" => when = parse_when(cx, fv),
            "build" => build = parse_build(cx, name, fv),
            "environment" => match expect_string(cx, fv, "environment") {
                Some(e) if is_valid_name(&e) => environment = Some(e),
                Some(e) => cx.error(fv, format!("`{e}` is not a valid environment name"), None),
                None => {}
            },
            "cache" => cache = parse_caches(cx, name, fv),
            "artifacts" => {
                for (glob, at) in expect_string_list(cx, fv, "artifacts") {
                    match check_relative(&glob) {
                        Ok(()) => artifacts.push(glob),
                        Err(e) => cx.error(&at, format!("artifact {e}"), None),
                    }
                }
            }
            _ => cx.unknown_key(fk, &field, &format!("step `{name}`"), STEP_KEYS),
        }
    }
    let has = |k: &str| {
        fields
            .iter()
            .any(|(fk, _)| scalar_text(fk).as_deref() == Some(k))
    };
    let builds = has("build");
    if builds {
        for k in ["image", "commands"] {
            if let Some((fk, _)) = fields
                .iter()
                .find(|(fk, _)| scalar_text(fk).as_deref() == Some(k))
            {
                cx.error(
                    fk,
                    format!("step `{name}` has both `build` and `{k}`"),
                    Some(
                        "a build step runs no container of its own: build in one step, run commands in another"
                            .into(),
                    ),
                );
            }
        }
        if !cache.is_empty() {
            cx.error(
                key,
                format!("step `{name}` has `cache` on a build step"),
                Some("image layers are cached by `build.cache_from` / `cache_to`".into()),
            );
        }
    } else if !has("image") {
        cx.error(
            key,
            format!("step `{name}` has no `image`"),
            Some("add e.g. `image: alpine:3`".into()),
        );
    }
    if !builds && !has("commands") {
        let hint = fields
            .iter()
            .filter_map(|(fk, _)| scalar_text(fk))
            .find_map(|k| {
                (closest(&k, ["commands"]) == Some("commands"))
                    .then(|| format!("did you mean `commands` instead of `{k}`?"))
            })
            .unwrap_or_else(|| "add `commands:` with the shell commands to run".into());
        cx.error(key, format!("step `{name}` has no `commands`"), Some(hint));
    }
    if builds && build.is_none() {
        return None;
    }
    Some(Step {
        name: name.to_string(),
        image: if builds { String::new() } else { image? },
        commands: if builds { Vec::new() } else { commands? },
        build,
        cache,
        artifacts,
        environment,
        needs: needs.into_iter().map(|(n, _)| n).collect(),
        env,
        secrets,
        timeout,
        retries,
        allow_failure,
        when,
        line: pos(key).0,
    })
}

fn parse_preview(cx: &mut Cx, node: &MarkedYaml) -> Option<crate::model::Preview> {
    let YamlData::Mapping(fields) = data(node) else {
        cx.error(
            node,
            format!("`preview` must be a mapping, found {}", kind_of(node)),
            Some("for example `preview: { image: image, port: 8080 }`".into()),
        );
        return None;
    };
    let (mut step, mut port, mut health, mut env) = (None, None, None, Vec::new());
    for (fk, fv) in fields.iter() {
        let Some(field) = scalar_text(fk) else {
            cx.error(fk, "keys must be plain words", None);
            continue;
        };
        match field.as_str() {
            "image" => step = expect_string(cx, fv, "preview.image"),
            "port" => match data(fv) {
                YamlData::Value(Scalar::Integer(n)) if (1..=65535).contains(n) => {
                    port = Some(*n as u16)
                }
                _ => cx.error(fv, "`preview.port` must be a port number (1-65535)", None),
            },
            "health" => match expect_string(cx, fv, "preview.health") {
                Some(h) if h.starts_with('/') => health = Some(h),
                Some(h) => cx.error(
                    fv,
                    format!("`preview.health` `{h}` must be a path starting with `/`"),
                    None,
                ),
                None => {}
            },
            "env" => env = parse_env(cx, fv, "preview.env"),
            _ => cx.unknown_key(fk, &field, "`preview`", PREVIEW_KEYS),
        }
    }
    let has = |k: &str| {
        fields
            .iter()
            .any(|(fk, _)| scalar_text(fk).as_deref() == Some(k))
    };
    for (k, hint) in [
        ("image", "the build step whose pushed image is deployed"),
        ("port", "the port the app listens on"),
    ] {
        if !has(k) {
            cx.error(
                node,
                format!("`preview` has no `{k}`"),
                Some(format!("add `{k}:`, {hint}")),
            );
        }
    }
    Some(crate::model::Preview {
        step: step?,
        port: port?,
        health,
        env,
    })
}

/// Deploy steps run only at promotion, without the rest of the pipeline,
/// so they may need only deploy steps of the same environment, and no
/// ordinary step may need them.
fn check_environments(cx: &mut Cx, steps: &[Step]) {
    for step in steps {
        for need in &step.needs {
            let Some(needed) = steps.iter().find(|s| &s.name == need) else {
                continue;
            };
            match (&step.environment, &needed.environment) {
                (Some(env), other) if other.as_ref() != Some(env) => cx.error_at(
                    step.line,
                    3,
                    format!(
                        "deploy step `{}` (environment `{env}`) needs `{need}`, which does not run at promotions to `{env}`",
                        step.name
                    ),
                    Some("deploy steps run only when their environment is promoted; they may need only deploy steps of the same environment".into()),
                ),
                (None, Some(env)) => cx.error_at(
                    step.line,
                    3,
                    format!(
                        "step `{}` needs deploy step `{need}`, which runs only at promotions to `{env}`",
                        step.name
                    ),
                    None,
                ),
                _ => {}
            }
        }
    }
}

fn parse_build(cx: &mut Cx, step: &str, node: &MarkedYaml) -> Option<Build> {
    let YamlData::Mapping(fields) = data(node) else {
        cx.error(
            node,
            format!("`build` of step `{step}` must be a mapping, found {}", kind_of(node)),
            Some("for example `build: { context: ., tags: [\"registry/app:${SLIPWAY_COMMIT_SHA}\"] }`".into()),
        );
        return None;
    };
    let mut build = Build {
        context: ".".into(),
        dockerfile: "Dockerfile".into(),
        target: None,
        args: Vec::new(),
        tags: Vec::new(),
        push: false,
        cache_from: Vec::new(),
        cache_to: None,
    };
    let mut ok = true;
    let path = |cx: &mut Cx, v: &MarkedYaml, field: &str| -> Option<String> {
        let p = expect_string(cx, v, field)?;
        let p = p.trim_end_matches('/').to_string();
        let p = if p.is_empty() { ".".to_string() } else { p };
        match check_relative(&p) {
            Ok(()) => Some(p),
            Err(e) => {
                cx.error(v, format!("`build.{field}`: {e}"), None);
                None
            }
        }
    };
    for (fk, fv) in fields.iter() {
        let Some(field) = scalar_text(fk) else {
            cx.error(fk, "keys must be plain words", None);
            continue;
        };
        match field.as_str() {
            "context" => match path(cx, fv, "context") {
                Some(p) => build.context = p,
                None => ok = false,
            },
            "dockerfile" => match path(cx, fv, "dockerfile") {
                Some(p) => build.dockerfile = p,
                None => ok = false,
            },
            "target" => build.target = expect_string(cx, fv, "target"),
            "args" => build.args = parse_env(cx, fv, "build.args"),
            "tags" => build.tags = plain_list(expect_string_list(cx, fv, "tags")),
            "push" => match data(fv) {
                YamlData::Value(Scalar::Boolean(b)) => build.push = *b,
                _ => cx.error(fv, "`build.push` must be `true` or `false`", None),
            },
            "cache_from" => build.cache_from = plain_list(expect_string_list(cx, fv, "cache_from")),
            "cache_to" => build.cache_to = expect_string(cx, fv, "cache_to"),
            _ => cx.unknown_key(fk, &field, &format!("`build` of step `{step}`"), BUILD_KEYS),
        }
    }
    if build.tags.is_empty() && (build.push || build.cache_to.is_some()) {
        cx.error(
            node,
            format!("step `{step}` pushes an image but `build.tags` is empty"),
            Some(
                "name the image: `tags: [\"127.0.0.1:5000/acme/web:${SLIPWAY_COMMIT_SHA}\"]`"
                    .into(),
            ),
        );
        ok = false;
    }
    ok.then_some(build)
}

fn plain_list(list: Vec<(String, MarkedYaml<'static>)>) -> Vec<String> {
    list.into_iter().map(|(s, _)| s).collect()
}

fn parse_caches(cx: &mut Cx, step: &str, node: &MarkedYaml) -> Vec<Cache> {
    let items: Vec<&MarkedYaml> = match data(node) {
        YamlData::Sequence(items) => items.iter().collect(),
        YamlData::Mapping(_) => vec![node],
        _ => {
            cx.error(
                node,
                format!("`cache` of step `{step}` must be a list, found {}", kind_of(node)),
                Some("for example `cache: [{ key: \"deps-{{ hash 'Cargo.lock' }}\", paths: [target] }]`".into()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for item in items {
        let YamlData::Mapping(fields) = data(item) else {
            cx.error(
                item,
                format!(
                    "entries of `cache` must be mappings, found {}",
                    kind_of(item)
                ),
                None,
            );
            continue;
        };
        let mut key = None;
        let mut paths = Vec::new();
        let mut restore_keys = Vec::new();
        for (fk, fv) in fields.iter() {
            let Some(field) = scalar_text(fk) else {
                cx.error(fk, "keys must be plain words", None);
                continue;
            };
            match field.as_str() {
                "key" => {
                    if let Some(text) = expect_string(cx, fv, "key") {
                        match crate::template::parse_key(&text) {
                            Ok(k) => key = Some(k),
                            Err(e) => cx.error(fv, format!("cache key `{text}`: {e}"), None),
                        }
                    }
                }
                "paths" => {
                    for (p, at) in expect_string_list(cx, fv, "paths") {
                        let p = p.trim_end_matches('/').to_string();
                        match check_relative(&p) {
                            Ok(()) if p != "." => paths.push(p),
                            Ok(()) => cx.error(
                                &at,
                                "cache the directories you need, not the whole workspace",
                                None,
                            ),
                            Err(e) => cx.error(&at, format!("cache path {e}"), None),
                        }
                    }
                }
                "restore_keys" => {
                    restore_keys = plain_list(expect_string_list(cx, fv, "restore_keys"))
                }
                _ => cx.unknown_key(fk, &field, "a `cache` entry", CACHE_KEYS),
            }
        }
        let has = |k: &str| {
            fields
                .iter()
                .any(|(fk, _)| scalar_text(fk).as_deref() == Some(k))
        };
        if !has("key") {
            cx.error(
                item,
                format!("a cache of step `{step}` has no `key`"),
                Some("e.g. `key: \"deps-{{ hash 'Cargo.lock' }}\"`".into()),
            );
        }
        if !has("paths") {
            cx.error(
                item,
                format!("a cache of step `{step}` has no `paths`"),
                Some("list the directories to keep, e.g. `paths: [target]`".into()),
            );
        }
        if let Some(key) = key
            && !paths.is_empty()
        {
            out.push(Cache {
                key,
                paths,
                restore_keys,
            });
        }
    }
    out
}

/// `on: push`, `on: [push, pull_request]`, or a mapping of event to filter.
fn parse_on(cx: &mut Cx, node: &MarkedYaml) -> On {
    let mut on = On::default();
    let mut enable = |cx: &mut Cx, event: &str, at: &MarkedYaml, filter: RefFilter| match event {
        "push" => on.push = Some(filter),
        "pull_request" => on.pull_request = Some(filter),
        "manual" => on.manual = true,
        other => {
            let hint = match closest(other, ON_EVENTS.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("`on:` takes {}", ON_EVENTS.join(", ")),
            };
            cx.error(at, format!("unknown event `{other}` in `on`"), Some(hint));
        }
    };
    match data(node) {
        YamlData::Mapping(events) => {
            for (k, v) in events.iter() {
                let Some(event) = scalar_text(k) else {
                    continue;
                };
                let filter = parse_ref_filter(cx, v, &event);
                enable(cx, &event, k, filter);
            }
        }
        _ => {
            let items: Vec<&MarkedYaml> = match data(node) {
                YamlData::Sequence(items) => items.iter().collect(),
                _ => vec![node],
            };
            for item in items {
                match scalar_text(item) {
                    Some(event) => enable(cx, &event, item, RefFilter::default()),
                    None => cx.error(
                        item,
                        format!("`on` entries must be event names, found {}", kind_of(item)),
                        None,
                    ),
                }
            }
        }
    }
    on
}

fn parse_ref_filter(cx: &mut Cx, node: &MarkedYaml, event: &str) -> RefFilter {
    let mut filter = RefFilter::default();
    match data(node) {
        YamlData::Value(Scalar::Null) => {}
        YamlData::Mapping(fields) => {
            for (k, v) in fields.iter() {
                let Some(key) = scalar_text(k) else { continue };
                match key.as_str() {
                    "branches" => {
                        filter.branches = expect_string_list(cx, v, "branches")
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect()
                    }
                    "tags" if event == "pull_request" => {
                        cx.error(
                            k,
                            "pull requests are filtered by target `branches`, not `tags`",
                            None,
                        );
                    }
                    "tags" => {
                        filter.tags = expect_string_list(cx, v, "tags")
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect()
                    }
                    _ => cx.unknown_key(k, &key, &format!("`on.{event}`"), FILTER_KEYS),
                }
            }
        }
        _ => cx.error(
            node,
            format!(
                "`on.{event}` must be a mapping with `branches` / `tags`, found {}",
                kind_of(node)
            ),
            None,
        ),
    }
    filter
}

fn parse_when(cx: &mut Cx, node: &MarkedYaml) -> When {
    let mut when = When::default();
    let YamlData::Mapping(fields) = data(node) else {
        cx.error(
            node,
            format!("`when` must be a mapping, found {}", kind_of(node)),
            Some("for example `when: { event: [push], branch: [main] }`".into()),
        );
        return when;
    };
    for (k, v) in fields.iter() {
        let Some(key) = scalar_text(k) else { continue };
        match key.as_str() {
            "event" => {
                for (event, at) in expect_string_list(cx, v, "event") {
                    if EVENTS.contains(&event.as_str()) {
                        when.event.push(event);
                    } else {
                        let hint = match closest(&event, EVENTS.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("events are: {}", EVENTS.join(", ")),
                        };
                        cx.error(&at, format!("unknown event `{event}`"), Some(hint));
                    }
                }
            }
            "branch" => {
                when.branch = expect_string_list(cx, v, "branch")
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect()
            }
            _ => cx.unknown_key(k, &key, "`when`", WHEN_KEYS),
        }
    }
    when
}

/// Unknown `needs`, duplicates and cycles: the checks that need every step.
/// Works on the steps as declared, so one broken step does not hide the
/// problems of the others.
fn check_graph(cx: &mut Cx, root: &saphyr::AnnotatedMapping<'_, MarkedYaml<'_>>) {
    struct Declared {
        name: String,
        line: usize,
        needs: Vec<String>,
        at: Vec<(usize, usize)>,
    }
    let mut declared: Vec<Declared> = Vec::new();
    let steps = root
        .iter()
        .find(|(k, _)| scalar_text(k).as_deref() == Some("steps"));
    if let Some((_, steps_node)) = steps
        && let YamlData::Mapping(steps) = data(steps_node)
    {
        for (k, v) in steps.iter() {
            let Some(name) = scalar_text(k) else { continue };
            let mut d = Declared {
                name,
                line: pos(k).0,
                needs: Vec::new(),
                at: Vec::new(),
            };
            if let YamlData::Mapping(fields) = data(v)
                && let Some((_, needs)) = fields
                    .iter()
                    .find(|(fk, _)| scalar_text(fk).as_deref() == Some("needs"))
            {
                let items: Vec<&MarkedYaml> = match data(needs) {
                    YamlData::Sequence(items) => items.iter().collect(),
                    _ => vec![needs],
                };
                for item in items {
                    if let Some(s) = scalar_text(item) {
                        d.needs.push(s);
                        d.at.push(pos(item));
                    }
                }
            }
            declared.push(d);
        }
    }
    let names: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
    let known: HashSet<&str> = names.iter().copied().collect();
    for d in &declared {
        let mut seen = HashSet::new();
        for (need, &(line, col)) in d.needs.iter().zip(&d.at) {
            if !known.contains(need.as_str()) {
                let hint = match closest(need, names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("steps are: {}", names.join(", ")),
                };
                cx.error_at(
                    line,
                    col,
                    format!("step `{}` needs unknown step `{need}`", d.name),
                    Some(hint),
                );
            } else if !seen.insert(need.as_str()) {
                cx.diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    file: cx.file.to_string(),
                    line,
                    col,
                    message: format!("step `{}` lists `{need}` in `needs` twice", d.name),
                    hint: None,
                });
            }
        }
    }
    for cycle in dag::find_cycles_in(&names, |i| &declared[i].needs) {
        let first = names
            .iter()
            .position(|n| *n == cycle[0])
            .map(|i| &declared[i]);
        let second = &cycle[1 % cycle.len()];
        // Point at the first step's `needs` entry that leads into the loop.
        let at = first
            .and_then(|d| {
                d.needs
                    .iter()
                    .position(|n| n == second)
                    .map(|j| d.at[j])
                    .or(Some((d.line, 1)))
            })
            .unwrap_or((1, 1));
        let mut path: Vec<&str> = cycle.iter().map(String::as_str).collect();
        path.push(&cycle[0]);
        cx.error_at(
            at.0,
            at.1,
            format!("dependency cycle: {}", path.join(" -> ")),
            Some("a step cannot (even indirectly) need itself; remove one of these `needs`".into()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str) -> Vec<String> {
        parse("p.yml", src)
            .diagnostics
            .into_iter()
            .filter(Diagnostic::is_error)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn parses_the_documented_example() {
        let src = r#"
name: hello-web
env: { APP: hello, PORT: 8080 }
services:
  db: { image: "postgres:16", env: { POSTGRES_PASSWORD: x } }
steps:
  build:
    image: slipway.test/busybox:1
    commands: [ "echo hi > out.txt" ]
  test:
    needs: [build]
    image: slipway.test/busybox:1
    commands: [ "grep hi out.txt" ]
    env: { MODE: ci }
    secrets: [API_TOKEN]
    timeout: 5m
    retries: 1
    allow_failure: false
    when: { event: [push], branch: [main, "release/*"] }
"#;
        let parsed = parse("p.yml", src);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let p = parsed.pipeline.unwrap();
        assert_eq!(p.name, "hello-web");
        assert_eq!(p.on, None);
        assert_eq!(
            p.env,
            vec![
                ("APP".into(), "hello".into()),
                ("PORT".into(), "8080".into())
            ]
        );
        assert_eq!(p.services[0].name, "db");
        let names: Vec<_> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "test"], "file order is kept");
        let test = &p.steps[1];
        assert_eq!(test.needs, ["build"]);
        assert_eq!(test.timeout, Some(Duration::from_secs(300)));
        assert_eq!(test.retries, 1);
        assert_eq!(test.secrets, ["API_TOKEN"]);
        assert_eq!(test.when.branch, ["main", "release/*"]);
        assert_eq!(test.line, 10);
    }

    #[test]
    fn reports_every_problem_at_once_with_positions_and_hints() {
        let src = "\
steps:
  build:
    image: busybox
    comands: [make]
  test:
    needs: [biuld]
    image: busybox
    commands: []
    timeout: 5x
  lint:
    image: busybox
    commands: [ok]
    retries: lots
";
        let errs = errors(src);
        assert_eq!(
            errs,
            [
                "p.yml:2:3: error: step `build` has no `commands`\n  hint: did you mean `commands` instead of `comands`?",
                "p.yml:4:5: error: unknown key `comands` in step `build`\n  hint: did you mean `commands`?",
                "p.yml:6:13: error: step `test` needs unknown step `biuld`\n  hint: did you mean `build`?",
                "p.yml:8:15: error: step `test` has empty `commands`\n  hint: add at least one command, e.g. `commands: [\"make test\"]`",
                "p.yml:9:14: error: invalid duration `5x` for `timeout`\n  hint: use a positive number with a unit: `30s`, `5m`, `1h30m`",
                "p.yml:13:14: error: `retries` must be a whole number from 0 to 10",
            ]
        );
    }

    #[test]
    fn names_a_cycle_and_points_at_its_needs() {
        let src = "\
steps:
  a:
    image: x
    commands: [true]
    needs: [c]
  b:
    image: x
    commands: [true]
    needs: [a]
  c:
    image: x
    commands: [true]
    needs: b
  d:
    image: x
    commands: [true]
    needs: [d]
";
        let errs = errors(src);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].starts_with("p.yml:5:13: error: dependency cycle: a -> c -> b -> a"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("p.yml:17:13: error: dependency cycle: d -> d"),
            "{}",
            errs[1]
        );
    }

    #[test]
    fn yaml_syntax_errors_are_located() {
        let errs = errors("steps:\n  build: [unclosed\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("p.yml:3:"), "{}", errs[0]);
        assert!(errs[0].contains("invalid YAML"), "{}", errs[0]);
    }

    #[test]
    fn unknown_top_level_keys_events_and_names() {
        let src = "\
name: x
step:
  a: {}
steps:
  bad name:
    image: x
    commands: [true]
    when: { event: [pushh], brnch: [main] }
    env: { 1X: y }
";
        let errs = errors(src);
        let joined = errs.join("\n");
        assert!(joined.contains("p.yml:2:1: error: unknown key `step` in the pipeline\n  hint: did you mean `steps`?"), "{joined}");
        assert!(
            joined.contains("p.yml:5:3: error: `bad name` is not a valid step name"),
            "{joined}"
        );
        assert!(
            joined
                .contains("p.yml:8:21: error: unknown event `pushh`\n  hint: did you mean `push`?"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "p.yml:8:29: error: unknown key `brnch` in `when`\n  hint: did you mean `branch`?"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("p.yml:9:12: error: `1X` is not a valid variable name"),
            "{joined}"
        );
    }

    #[test]
    fn structural_mistakes() {
        assert_eq!(
            errors(""),
            ["p.yml:1:1: error: the pipeline file is empty\n  hint: start with `steps:`"]
        );
        assert!(errors("- a\n- b\n")[0].contains("a pipeline must be a mapping, found a list"));
        assert!(errors("name: x\n")[0].contains("the pipeline has no `steps`"));
        assert!(errors("steps:\n  - build\n")[0].contains("`steps` must be a mapping"));
        assert!(errors("steps:\n  a: 1\n")[0].contains("step `a` must be a mapping"));
        assert!(
            errors(
                "steps:\n  a: {image: x, commands: [true]}\n  a: {image: y, commands: [true]}\n"
            )[0]
            .contains("duplicated key")
        );
    }

    #[test]
    fn single_string_needs_and_warnings_do_not_block() {
        let src = "steps:\n  a: {image: x, commands: [true]}\n  b: {image: x, commands: [true], needs: a}\n  c: {image: x, commands: [true], needs: [a, a]}\n";
        let parsed = parse("p.yml", src);
        assert!(!parsed.has_errors());
        assert_eq!(
            parsed.diagnostics.len(),
            1,
            "one warning for the duplicate need"
        );
        let p = parsed.pipeline.unwrap();
        assert_eq!(p.steps[1].needs, ["a"]);
    }

    #[test]
    fn on_takes_a_word_a_list_or_filters() {
        let steps = "steps:\n  a: {image: x, commands: [true]}\n";
        let on = |src: &str| {
            parse("p.yml", &format!("{src}{steps}"))
                .pipeline
                .unwrap()
                .on
                .unwrap()
        };
        assert_eq!(
            on("on: push\n"),
            On {
                push: Some(RefFilter::default()),
                ..On::default()
            }
        );
        let both = on("on: [push, pull_request]\n");
        assert!(both.push.is_some() && both.pull_request.is_some() && !both.manual);
        let filtered = on(
            "on:\n  push: {branches: [main], tags: ['v*']}\n  pull_request: {branches: [main]}\n  manual:\n",
        );
        assert_eq!(filtered.push.unwrap().tags, ["v*"]);
        assert_eq!(filtered.pull_request.unwrap().branches, ["main"]);
        assert!(filtered.manual);
        let errs = errors(&format!(
            "on:\n  pushh: {{}}\n  pull_request: {{tags: [x], brnches: [y]}}\n{steps}"
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "p.yml:2:3: error: unknown event `pushh` in `on`\n  hint: did you mean `push`?"
            ),
            "{}",
            errs[0]
        );
        assert!(errs[1].contains("not `tags`"), "{}", errs[1]);
        assert!(
            errs[2].contains("unknown key `brnches` in `on.pull_request`"),
            "{}",
            errs[2]
        );
    }

    #[test]
    fn build_steps_caches_and_artifacts_parse_with_defaults() {
        let src = r#"
steps:
  deps:
    image: rust:1
    commands: [cargo fetch]
    cache:
      - key: "deps-{{ hash 'Cargo.lock' }}"
        paths: [target/, .cargo]
        restore_keys: [deps-]
    artifacts: ["dist/**"]
  image:
    needs: [deps]
    build:
      context: app
      target: runtime
      args: { VERSION: "${SLIPWAY_COMMIT_SHA}" }
      tags: ["127.0.0.1:5000/acme/web:${SLIPWAY_COMMIT_SHA}"]
      push: true
      cache_from: ["127.0.0.1:5000/acme/web:cache"]
      cache_to: "127.0.0.1:5000/acme/web:cache"
"#;
        let parsed = parse("p.yml", src);
        let p = parsed
            .pipeline
            .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
        let deps = &p.steps[0];
        assert_eq!(deps.cache[0].paths, ["target", ".cargo"]);
        assert_eq!(deps.cache[0].restore_keys, ["deps-"]);
        assert_eq!(
            deps.cache[0].key.hashed_files().collect::<Vec<_>>(),
            ["Cargo.lock"]
        );
        assert_eq!(deps.artifacts, ["dist/**"]);
        let b = p.steps[1].build.as_ref().unwrap();
        assert_eq!(b.context, "app");
        assert_eq!(b.dockerfile, "Dockerfile");
        assert_eq!(b.target.as_deref(), Some("runtime"));
        assert_eq!(b.args, [("VERSION".into(), "${SLIPWAY_COMMIT_SHA}".into())]);
        assert!(b.push);
        assert_eq!(b.cache_to.as_deref(), Some("127.0.0.1:5000/acme/web:cache"));
        assert!(p.steps[1].image.is_empty() && p.steps[1].commands.is_empty());
    }

    #[test]
    fn build_and_cache_mistakes_are_located() {
        let errs = errors(
            r#"steps:
  a:
    image: x
    commands: [y]
    build: { context: ../up, tags: [t] }
  b:
    build: { push: true, contxt: . }
  c:
    image: x
    commands: [y]
    cache:
      - key: "k-{{ md5 'f' }}"
        paths: [/abs]
      - paths: [x]
    artifacts: ["../secret"]
"#,
        );
        let all = errs.join("\n");
        for expected in [
            "p.yml:5:23: error: `build.context`: `../up` climbs out of the workspace",
            "p.yml:3:5: error: step `a` has both `build` and `image`",
            "p.yml:4:5: error: step `a` has both `build` and `commands`",
            "unknown key `contxt` in `build` of step `b`",
            "step `b` pushes an image but `build.tags` is empty",
            "p.yml:12:14: error: cache key `k-{{ md5 'f' }}`: unknown function `md5`",
            "p.yml:13:17: error: cache path `/abs` is absolute",
            "a cache of step `c` has no `key`",
            "p.yml:15:17: error: artifact `../secret` climbs out",
        ] {
            assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
        }
    }

    #[test]
    fn deploy_steps_belong_to_their_environment_only() {
        let src = "steps:
  build:
    image: x
    commands: [make]
  migrate:
    image: x
    environment: staging
    commands: [migrate]
  deploy:
    image: x
    environment: staging
    needs: [migrate]
    commands: [deploy]
";
        let p = parse("p.yml", src).pipeline.unwrap();
        let normal = p.without_deploy_steps();
        let run: Vec<&str> = normal.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(run, ["build"]);
        let staging = p.deploy_steps("staging").unwrap();
        assert_eq!(staging.steps.len(), 2);
        assert!(p.deploy_steps("prod").is_none());
        let errs = errors(
            "steps:
  build:
    image: x
    commands: [make]
    needs: [deploy]
  deploy:
    image: x
    environment: prod
    needs: [build]
    commands: [deploy]
",
        )
        .join("\n");
        assert!(errs.contains("p.yml:2:3: error: step `build` needs deploy step `deploy`, which runs only at promotions to `prod`"), "{errs}");
        assert!(
            errs.contains(
                "p.yml:6:3: error: deploy step `deploy` (environment `prod`) needs `build`"
            ),
            "{errs}"
        );
    }
}
