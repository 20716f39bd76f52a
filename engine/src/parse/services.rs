//! `services:`: containers that run beside every step, reachable by name.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;
use super::value::{
    data, entry_name, expect_string, expect_string_list, kind_of, parse_env, pos, scalar_text,
};
use crate::model::Service;

const SERVICE_KEYS: &[&str] = &["image", "env", "commands"];

pub(super) fn parse_services(cx: &mut Cx, node: &MarkedYaml) -> Vec<Service> {
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
