//! YAML text to a [`Pipeline`], reporting every problem at once.
//!
//! We walk saphyr's span-carrying tree by hand rather than deserialising with
//! serde: serde stops at the first error, and users fixing a pipeline want
//! the whole list, each with its line and column and, where we can guess,
//! the fix.
//!
//! Layout, one file per part of the pipeline file:
//! - this file: the entry point, the top level of the document and `Cx`,
//!   which collects diagnostics;
//! - `walk`: the one walker every mapping goes through, so bad keys are
//!   reported the same way in every section;
//! - `value`: reading scalars, lists and names from nodes;
//! - `env`: `env:` mappings and `build.args`;
//! - `step`: a step, its `build` and its `cache` entries;
//! - `services`: `services:`;
//! - `triggers`: `on:` and a step's `when:`;
//! - `preview`: `preview:` and its check against the steps;
//! - `graph`: the checks that need every step (`needs`, cycles, environments);
//! - `limits`: the file's size and nesting depth, checked before parsing.

mod env;
mod graph;
mod limits;
mod preview;
mod services;
mod step;
mod triggers;
mod value;
mod walk;

use saphyr::{LoadableYamlNode, MarkedYaml};

use crate::diagnostic::{Diagnostic, Severity};
use crate::model::Pipeline;

use env::parse_env;
use graph::{check_environments, check_graph};
use preview::{check_preview, parse_preview};
use services::parse_services;
use step::parse_steps;
use triggers::parse_on;
use value::{expect_string, pos};
use walk::{Keys, Section, walk};

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

const TOP_KEYS: &[&str] = &[
    "name", "env", "services", "steps", "on", "preview", "runs_on",
];

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

pub(super) struct Cx<'f> {
    file: &'f str,
    diagnostics: Vec<Diagnostic>,
}

impl Cx<'_> {
    pub(super) fn error(
        &mut self,
        node: &MarkedYaml,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, col) = pos(node);
        self.error_at(line, col, message, hint);
    }

    pub(super) fn error_at(
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

    pub(super) fn warning(&mut self, node: &MarkedYaml, message: impl Into<String>) {
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
}

fn parse_document(cx: &mut Cx, source: &str) -> Option<Pipeline> {
    if let Some((line, col, message, hint)) = limits::check(source) {
        cx.error_at(line, col, message, hint);
        return None;
    }
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
    let top = Section::new("the pipeline", Keys::Known(TOP_KEYS)).subject("a pipeline");
    let fields = walk(cx, root, &top)?;

    let mut name = None;
    let mut env = Vec::new();
    let mut services = Vec::new();
    let mut steps = None;
    let mut on = None;
    let mut preview = None;
    let mut runs_on = Vec::new();
    for f in &fields {
        let v = f.value;
        match f.key.as_str() {
            "name" => name = expect_string(cx, v, "name"),
            "env" => env = parse_env(cx, v, "env"),
            "services" => services = parse_services(cx, v),
            "steps" => steps = Some((parse_steps(cx, v), v)),
            "on" => on = Some(parse_on(cx, v)),
            "preview" => preview = parse_preview(cx, v).map(|p| (p, f.key_node)),
            "runs_on" => runs_on = parse_runs_on(cx, v),
            // `walk` returns only the keys in TOP_KEYS.
            _ => {}
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
    let (steps, steps_node) = steps;
    check_graph(cx, steps_node);
    let steps = steps?;
    check_environments(cx, &steps);
    let preview = preview.map(|(p, at)| {
        check_preview(cx, &p, at, &steps);
        p
    });
    let pipeline = Pipeline {
        name: name.unwrap_or_else(|| "pipeline".into()),
        env,
        services,
        steps,
        on,
        preview,
        runs_on,
    };
    Some(pipeline)
}

/// Runner labels: words a runner is started with (`--labels`), so the
/// same characters are allowed here as there.
fn parse_runs_on(cx: &mut Cx, node: &MarkedYaml) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for (label, at) in value::expect_string_list(cx, node, "runs_on") {
        if !is_runner_label(&label) {
            cx.error(
                &at,
                format!("runner label `{}` is not a plain word", label.escape_debug()),
                Some("labels are letters, digits, `-`, `_`, `.` and `/`, e.g. `runs_on: [linux, large]`".into()),
            );
        } else if !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels
}

/// What a runner label may be: short and unambiguous in a comma list.
pub fn is_runner_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// The errors `parse` reports for `src`, as the CLI prints them.
#[cfg(test)]
fn errors(src: &str) -> Vec<String> {
    parse("p.yml", src)
        .diagnostics
        .into_iter()
        .filter(Diagnostic::is_error)
        .map(|d| d.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn runs_on_takes_plain_labels_and_names_a_bad_one() {
        let ok = parse(
            "p.yml",
            "runs_on: [linux, large, linux]\nsteps:\n  a: { image: x, commands: [true] }\n",
        );
        assert_eq!(ok.pipeline.unwrap().runs_on, ["linux", "large"]);
        let one = parse(
            "p.yml",
            "runs_on: gpu\nsteps:\n  a: { image: x, commands: [true] }\n",
        );
        assert_eq!(one.pipeline.unwrap().runs_on, ["gpu"]);
        assert_eq!(
            errors("runs_on: [linux, \"a b\"]\nsteps:\n  a: { image: x, commands: [true] }\n"),
            [
                "p.yml:1:18: error: runner label `a b` is not a plain word\n  hint: labels are letters, digits, `-`, `_`, `.` and `/`, e.g. `runs_on: [linux, large]`"
            ]
        );
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
}
