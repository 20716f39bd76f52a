//! What starts a pipeline (`on:`) and what lets a step run (`when:`).

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;
use super::value::{data, expect_string_list, kind_of, scalar_text};
use crate::model::{EVENTS, On, RefFilter, When};
use crate::suggest::closest;

const ON_EVENTS: &[&str] = &["push", "pull_request", "manual"];
const FILTER_KEYS: &[&str] = &["branches", "tags"];
const WHEN_KEYS: &[&str] = &["event", "branch"];

/// `on: push`, `on: [push, pull_request]`, or a mapping of event to filter.
pub(super) fn parse_on(cx: &mut Cx, node: &MarkedYaml) -> On {
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

pub(super) fn parse_ref_filter(cx: &mut Cx, node: &MarkedYaml, event: &str) -> RefFilter {
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

pub(super) fn parse_when(cx: &mut Cx, node: &MarkedYaml) -> When {
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
}
