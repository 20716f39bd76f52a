//! Reading values out of nodes: scalars as text, lists of text, and the
//! names of steps, services and variables.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;

pub(super) fn pos(node: &MarkedYaml) -> (usize, usize) {
    (node.span.start.line().max(1), node.span.start.col() + 1)
}

pub(super) fn data<'a, 'i>(node: &'a MarkedYaml<'i>) -> &'a YamlData<'i, MarkedYaml<'i>> {
    match &node.data {
        YamlData::Tagged(_, inner) => data(inner),
        d => d,
    }
}

/// A scalar as text: YAML users write `retries: 2` and `VERSION: 1.0` and
/// mean the text they typed, so numbers and booleans become strings.
pub(super) fn scalar_text(node: &MarkedYaml) -> Option<String> {
    match data(node) {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

pub(super) fn kind_of(node: &MarkedYaml) -> &'static str {
    match data(node) {
        YamlData::Mapping(_) => "a mapping",
        YamlData::Sequence(_) => "a list",
        YamlData::Value(Scalar::Null) => "empty",
        YamlData::Value(_) | YamlData::Representation(..) => "a scalar",
        YamlData::Alias(_) => "an alias",
        _ => "an invalid value",
    }
}

pub(super) fn expect_string(cx: &mut Cx, node: &MarkedYaml, field: &str) -> Option<String> {
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
pub(super) fn expect_string_list(
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
pub(super) fn detach(node: &MarkedYaml) -> MarkedYaml<'static> {
    MarkedYaml {
        span: node.span,
        data: YamlData::Value(Scalar::Null),
    }
}

pub(super) fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Step and service names become container names and host names.
pub(super) fn is_valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.len() <= 63
}

/// Reports `name`, the key of a step or service, if it cannot name a container.
pub(super) fn check_name(cx: &mut Cx, key: &MarkedYaml, name: &str, kind: &str) {
    if !is_valid_name(name) {
        cx.error(
            key,
            format!("`{name}` is not a valid {kind} name"),
            Some(format!(
                "use letters, digits, `-`, `_` and `.` (at most 63): it names the {kind}'s container{}",
                if kind == "service" { " and host" } else { "" }
            )),
        );
    }
}

pub(super) fn plain_list(list: Vec<(String, MarkedYaml<'static>)>) -> Vec<String> {
    list.into_iter().map(|(s, _)| s).collect()
}
