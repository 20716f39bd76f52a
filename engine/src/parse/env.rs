//! `env:` (top level, step, service, preview) and `build.args`: variable
//! names and their values.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;
use super::value::{data, is_env_name, kind_of, scalar_text};
use super::walk::{Keys, Section, walk};

/// `NAME: value` pairs in file order; `field` names the mapping in messages.
pub(super) fn parse_env(cx: &mut Cx, node: &MarkedYaml, field: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let title = format!("`{field}`");
    let section = Section::new(&title, Keys::Names)
        .may_be_empty()
        .example("for example `env: { MODE: ci }`");
    let Some(vars) = walk(cx, node, &section) else {
        return out;
    };
    for var in &vars {
        let (key, v) = (&var.key, var.value);
        if !is_env_name(key) {
            cx.error(
                var.key_node,
                format!("`{key}` is not a valid variable name"),
                Some("use letters, digits and `_`, not starting with a digit".into()),
            );
            continue;
        }
        match data(v) {
            YamlData::Value(Scalar::Null) => out.push((key.clone(), String::new())),
            _ => match scalar_text(v) {
                Some(val) => out.push((key.clone(), val)),
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
