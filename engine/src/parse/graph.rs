//! The checks that need every step: unknown and duplicate `needs`, cycles,
//! and which steps deploy steps may need.

use std::collections::HashSet;

use saphyr::{MarkedYaml, YamlData};

use super::Cx;
use super::value::{data, pos, scalar_text};
use crate::dag;
use crate::diagnostic::{Diagnostic, Severity};
use crate::model::Step;
use crate::suggest::closest;

/// Unknown `needs`, duplicates and cycles: the checks that need every step.
/// Works on the steps as declared, so one broken step does not hide the
/// problems of the others.
///
/// `steps` is the `steps:` node, read again without reporting: its problems
/// were reported as it was parsed.
pub(super) fn check_graph(cx: &mut Cx, steps: &MarkedYaml) {
    struct Declared {
        name: String,
        line: usize,
        needs: Vec<String>,
        at: Vec<(usize, usize)>,
    }
    let mut declared: Vec<Declared> = Vec::new();
    if let YamlData::Mapping(steps) = data(steps) {
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

/// Deploy steps run only at promotion, without the rest of the pipeline,
/// so they may need only deploy steps of the same environment, and no
/// ordinary step may need them.
pub(super) fn check_environments(cx: &mut Cx, steps: &[Step]) {
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

#[cfg(test)]
mod tests {
    use super::super::{errors, parse};

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
