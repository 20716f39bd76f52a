//! `steps:`: each step, its `build` and its `cache` entries.

use std::time::Duration;

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;
use super::env::parse_env;
use super::triggers::parse_when;
use super::value::{
    check_name, data, expect_string, expect_string_list, is_env_name, is_valid_name, kind_of,
    plain_list, pos, scalar_text,
};
use super::walk::{Keys, Section, walk};
use crate::duration::parse_duration;
use crate::model::{Build, Cache, Resources, Step, When};
use crate::size::{format_size, parse_size};
use crate::suggest::closest;
use crate::template::check_relative;

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
    "resources",
];
const RESOURCE_KEYS: &[&str] = &["memory", "cpus", "pids"];
/// Docker refuses less (and `0` would mean no limit at all).
const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// Docker's finest CPU share.
const MIN_MILLICPUS: u64 = 10;
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
/// Retrying more than this hides a broken step rather than a flaky one.
const MAX_RETRIES: i64 = 10;

pub(super) fn parse_steps(cx: &mut Cx, node: &MarkedYaml) -> Option<Vec<Step>> {
    let section = Section::new("`steps`", Keys::Names)
        .example("write `steps:` then `  build:` with the step's keys under it");
    let entries = walk(cx, node, &section)?;
    if entries.is_empty() {
        cx.error(node, "the pipeline has no steps", None);
        return None;
    }
    let mut steps = Vec::new();
    for e in &entries {
        check_name(cx, e.key_node, &e.key, "step");
        if let Some(step) = parse_step(cx, &e.key, e.key_node, e.value) {
            steps.push(step);
        }
    }
    Some(steps)
}

fn parse_step(cx: &mut Cx, name: &str, key: &MarkedYaml, node: &MarkedYaml) -> Option<Step> {
    let title = format!("step `{name}`");
    let section = Section::new(&title, Keys::Known(STEP_KEYS))
        .example("give it at least `image` and `commands`");
    let fields = walk(cx, node, &section)?;
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
    let mut resources = Resources::default();
    for f in &fields {
        let fv = f.value;
        match f.key.as_str() {
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
            "resources" => resources = parse_resources(cx, name, fv),
            "artifacts" => {
                for (glob, at) in expect_string_list(cx, fv, "artifacts") {
                    match check_relative(&glob) {
                        Ok(()) => artifacts.push(glob),
                        Err(e) => cx.error(&at, format!("artifact {e}"), None),
                    }
                }
            }
            // `walk` returns only the keys in STEP_KEYS.
            _ => {}
        }
    }
    let builds = fields.has("build");
    if builds {
        for k in ["image", "commands"] {
            if let Some(f) = fields.get(k) {
                cx.error(
                    f.key_node,
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
    } else if !fields.has("image") {
        cx.error(
            key,
            format!("step `{name}` has no `image`"),
            Some("add e.g. `image: alpine:3`".into()),
        );
    }
    if !builds && !fields.has("commands") {
        // Only an unknown key can be a misspelt `commands`.
        let hint = fields
            .unknown()
            .iter()
            .find_map(|k| {
                (closest(k, ["commands"]) == Some("commands"))
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
        resources,
        line: pos(key).0,
    })
}

/// `resources: { memory: 2g, cpus: 1.5, pids: 512 }`. Each value must set
/// a real limit: Docker reads `0` as "none", which would let a pipeline
/// lift the server's default by asking for nothing.
fn parse_resources(cx: &mut Cx, step: &str, node: &MarkedYaml) -> Resources {
    let title = format!("`resources` of step `{step}`");
    let section = Section::new(&title, Keys::Known(RESOURCE_KEYS))
        .example("for example `resources: { memory: 2GiB, cpus: 1.5, pids: 512 }`");
    let mut resources = Resources::default();
    let Some(fields) = walk(cx, node, &section) else {
        return resources;
    };
    for f in &fields {
        let fv = f.value;
        let text = scalar_text(fv);
        match f.key.as_str() {
            "memory" => match text.as_deref().map(|t| (t, parse_size(t))) {
                Some((_, Some(n))) if n >= MIN_MEMORY => resources.memory = Some(n),
                Some((t, Some(_))) => cx.error(
                    fv,
                    format!(
                        "`memory: {t}` of step `{step}` is below the least Docker allows ({})",
                        format_size(MIN_MEMORY)
                    ),
                    None,
                ),
                _ => cx.error(
                    fv,
                    format!(
                        "`memory` of step `{step}` must be a size, found `{}`",
                        text.as_deref().unwrap_or(kind_of(fv))
                    ),
                    Some("for example `512MiB`, `2GiB` or `2g`".into()),
                ),
            },
            "cpus" => match text.as_deref().map(|t| (t, t.trim().parse::<f64>())) {
                Some((_, Ok(c))) if c.is_finite() && c * 1000.0 >= MIN_MILLICPUS as f64 => {
                    resources.millicpus = Some((c * 1000.0).round() as u64)
                }
                _ => cx.error(
                    fv,
                    format!(
                        "`cpus` of step `{step}` must be a number of CPUs of at least 0.01, found `{}`",
                        text.as_deref().unwrap_or(kind_of(fv))
                    ),
                    Some("for example `cpus: 1.5`".into()),
                ),
            },
            "pids" => match data(fv) {
                YamlData::Value(Scalar::Integer(n)) if *n >= 1 => resources.pids = Some(*n as u64),
                _ => cx.error(
                    fv,
                    format!(
                        "`pids` of step `{step}` must be a whole number of at least 1, found `{}`",
                        text.as_deref().unwrap_or(kind_of(fv))
                    ),
                    Some("the most processes and threads at once, e.g. `pids: 512`".into()),
                ),
            },
            // `walk` returns only the keys in RESOURCE_KEYS.
            _ => {}
        }
    }
    resources
}

fn parse_build(cx: &mut Cx, step: &str, node: &MarkedYaml) -> Option<Build> {
    let title = format!("`build` of step `{step}`");
    let section = Section::new(&title, Keys::Known(BUILD_KEYS)).example(
        "for example `build: { context: ., tags: [\"registry/app:${SLIPWAY_COMMIT_SHA}\"] }`",
    );
    let fields = walk(cx, node, &section)?;
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
    for f in &fields {
        let fv = f.value;
        match f.key.as_str() {
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
            // `walk` returns only the keys in BUILD_KEYS.
            _ => {}
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
    let section = Section::new("a `cache` entry", Keys::Known(CACHE_KEYS));
    let mut out = Vec::new();
    for item in items {
        let Some(fields) = walk(cx, item, &section) else {
            continue;
        };
        let mut key = None;
        let mut paths = Vec::new();
        let mut restore_keys = Vec::new();
        for f in &fields {
            let fv = f.value;
            match f.key.as_str() {
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
                // `walk` returns only the keys in CACHE_KEYS.
                _ => {}
            }
        }
        if !fields.has("key") {
            cx.error(
                item,
                format!("a cache of step `{step}` has no `key`"),
                Some("e.g. `key: \"deps-{{ hash 'Cargo.lock' }}\"`".into()),
            );
        }
        if !fields.has("paths") {
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

#[cfg(test)]
mod tests {
    use super::super::{errors, parse};

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

    /// Issue 14: steps had no limits at all; now a step may set its own.
    #[test]
    fn resources_parse_into_exact_limits() {
        let src = "steps:\n  a:\n    image: x\n    commands: [y]\n    resources: { memory: 2GiB, cpus: 1.5, pids: 512 }\n  b:\n    image: x\n    commands: [y]\n    resources:\n      memory: 536870912\n      cpus: 2\n  c: { image: x, commands: [y] }\n";
        let parsed = parse("p.yml", src);
        let p = parsed
            .pipeline
            .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
        let r = p.steps[0].resources;
        assert_eq!(r.memory, Some(2 << 30));
        assert_eq!(r.millicpus, Some(1500));
        assert_eq!(r.pids, Some(512));
        assert_eq!(p.steps[1].resources.memory, Some(512 << 20));
        assert_eq!(p.steps[1].resources.millicpus, Some(2000));
        assert_eq!(p.steps[1].resources.pids, None);
        assert_eq!(p.steps[2].resources, Default::default());
    }

    /// `0` is Docker's "no limit": a pipeline must not be able to ask for it.
    #[test]
    fn bad_resources_are_located_and_none_lifts_a_limit() {
        let errs = errors(
            "steps:\n  a:\n    image: x\n    commands: [y]\n    resources:\n      memory: lots\n      cpus: 0\n      pids: 0\n      disk: 1g\n  b:\n    image: x\n    commands: [y]\n    resources: { memory: 1m, cpus: many, pids: -1 }\n  c:\n    image: x\n    commands: [y]\n    resources: 2g\n",
        );
        let all = errs.join("\n");
        for expected in [
            "p.yml:6:15: error: `memory` of step `a` must be a size, found `lots`",
            "p.yml:7:13: error: `cpus` of step `a` must be a number of CPUs of at least 0.01, found `0`",
            "p.yml:8:13: error: `pids` of step `a` must be a whole number of at least 1, found `0`",
            "p.yml:9:7: error: unknown key `disk` in `resources` of step `a`",
            "p.yml:13:26: error: `memory: 1m` of step `b` is below the least Docker allows (6.0 MiB)",
            "p.yml:13:36: error: `cpus` of step `b` must be a number of CPUs of at least 0.01, found `many`",
            "p.yml:13:48: error: `pids` of step `b` must be a whole number of at least 1, found `-1`",
            "p.yml:17:16: error: `resources` of step `c`",
        ] {
            assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
        }
    }
}
