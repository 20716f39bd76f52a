//! What starts a pipeline (`on:`) and what lets a step run (`when:`).

use saphyr::{MarkedYaml, YamlData};

use super::Cx;
use super::value::{data, expect_string_list, kind_of, plain_list, scalar_text};
use super::walk::{Keys, Section, report_unknown, walk};
use crate::model::{EVENTS, On, RefFilter, When};
use crate::suggest::closest;

const ON_EVENTS: &[&str] = &["push", "pull_request", "manual"];
const FILTER_KEYS: &[&str] = &["branches", "tags"];
const WHEN_KEYS: &[&str] = &["event", "branch"];

/// `on: push`, `on: [push, pull_request]`, or a mapping of event to filter.
pub(super) fn parse_on(cx: &mut Cx, node: &MarkedYaml) -> On {
    // The events are the keys of the mapping and the entries of the list:
    // an unknown one is reported the same way in both.
    let section = Section::new("`on`", Keys::Known(ON_EVENTS)).noun("event");
    let mut on = On::default();
    let mut enable = |event: &str, filter: RefFilter| match event {
        "push" => on.push = Some(filter),
        "pull_request" => on.pull_request = Some(filter),
        "manual" => on.manual = true,
        // Only ON_EVENTS get here.
        _ => {}
    };
    match data(node) {
        YamlData::Mapping(_) => {
            if let Some(events) = walk(cx, node, &section) {
                for f in &events {
                    let filter = parse_ref_filter(cx, f.value, &f.key);
                    enable(&f.key, filter);
                }
            }
        }
        _ => {
            let items: Vec<&MarkedYaml> = match data(node) {
                YamlData::Sequence(items) => items.iter().collect(),
                _ => vec![node],
            };
            for item in items {
                match scalar_text(item) {
                    Some(event) if ON_EVENTS.contains(&event.as_str()) => {
                        enable(&event, RefFilter::default())
                    }
                    Some(event) => report_unknown(cx, item, &event, &section),
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

/// The `branches` / `tags` under `on.push` or `on.pull_request`; empty
/// (`push:` alone) means every one.
fn parse_ref_filter(cx: &mut Cx, node: &MarkedYaml, event: &str) -> RefFilter {
    let mut filter = RefFilter::default();
    let title = format!("`on.{event}`");
    let example = format!("for example `{event}: {{ branches: [main] }}`");
    let section = Section::new(&title, Keys::Known(FILTER_KEYS))
        .example(&example)
        .may_be_empty();
    let Some(fields) = walk(cx, node, &section) else {
        return filter;
    };
    for f in &fields {
        match f.key.as_str() {
            "branches" => filter.branches = plain_list(expect_string_list(cx, f.value, "branches")),
            "tags" if event == "pull_request" => cx.error(
                f.key_node,
                "pull requests are filtered by target `branches`, not `tags`",
                None,
            ),
            "tags" => filter.tags = plain_list(expect_string_list(cx, f.value, "tags")),
            // `walk` returns only the keys in FILTER_KEYS.
            _ => {}
        }
    }
    filter
}

pub(super) fn parse_when(cx: &mut Cx, node: &MarkedYaml) -> When {
    let mut when = When::default();
    let section = Section::new("`when`", Keys::Known(WHEN_KEYS))
        .example("for example `when: { event: [push], branch: [main] }`");
    let Some(fields) = walk(cx, node, &section) else {
        return when;
    };
    for f in &fields {
        match f.key.as_str() {
            "event" => {
                for (event, at) in expect_string_list(cx, f.value, "event") {
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
            "branch" => when.branch = plain_list(expect_string_list(cx, f.value, "branch")),
            // `walk` returns only the keys in WHEN_KEYS.
            _ => {}
        }
    }
    when
}

#[cfg(test)]
mod tests {
    use super::super::{errors, parse};
    use crate::model::{On, RefFilter};

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
    fn on_filters_and_when_report_misspelt_and_unusable_keys_where_they_are() {
        let steps = "steps: {a: {image: x, commands: [true]}}";
        assert_eq!(
            errors(&format!("on: {{push: {{branch: [main]}}}}\n{steps}")),
            [
                "p.yml:1:13: error: unknown key `branch` in `on.push`\n  hint: did you mean `branches`?"
            ]
        );
        assert_eq!(
            errors(&format!(
                "on:\n  push:\n    [branches]: [main]\n  [manual]:\n{steps}"
            )),
            [
                "p.yml:3:5: error: keys must be plain words",
                "p.yml:4:3: error: keys must be plain words",
            ]
        );
        assert_eq!(
            errors(
                "steps:\n  a:\n    image: x\n    commands: [true]\n    when: {[branch]: [main]}\n"
            ),
            ["p.yml:5:12: error: keys must be plain words"]
        );
    }
}
