//! `services:`: containers that run beside every step, reachable by name.

use saphyr::MarkedYaml;

use super::Cx;
use super::env::parse_env;
use super::value::{check_name, expect_string, expect_string_list, plain_list, pos};
use super::walk::{Keys, Section, walk};
use crate::model::Service;

const SERVICE_KEYS: &[&str] = &["image", "env", "commands"];

pub(super) fn parse_services(cx: &mut Cx, node: &MarkedYaml) -> Vec<Service> {
    let mut out = Vec::new();
    let section = Section::new("`services`", Keys::Names)
        .may_be_empty()
        .example("for example `services: { db: { image: \"postgres:16\" } }`");
    let Some(entries) = walk(cx, node, &section) else {
        return out;
    };
    for e in &entries {
        let (name, k) = (e.key.clone(), e.key_node);
        check_name(cx, k, &name, "service");
        let title = format!("service `{name}`");
        let service = Section::new(&title, Keys::Known(SERVICE_KEYS));
        let Some(fields) = walk(cx, e.value, &service) else {
            continue;
        };
        let mut image = None;
        let mut env = Vec::new();
        let mut commands = Vec::new();
        for f in &fields {
            match f.key.as_str() {
                "image" => image = expect_string(cx, f.value, "image"),
                "env" => env = parse_env(cx, f.value, "env"),
                "commands" => commands = plain_list(expect_string_list(cx, f.value, "commands")),
                // `walk` returns only the keys in SERVICE_KEYS.
                _ => {}
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
            None if !fields.has("image") => {
                cx.error(k, format!("service `{name}` has no `image`"), None)
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::errors;

    const STEPS: &str = "steps: {a: {image: x, commands: [true]}}";

    #[test]
    fn a_misspelt_or_unusable_service_key_is_reported_where_it_is() {
        assert_eq!(
            errors(&format!(
                "services: {{db: {{image: x, comands: [serve]}}}}\n{STEPS}"
            )),
            [
                "p.yml:1:27: error: unknown key `comands` in service `db`\n  hint: did you mean `commands`?"
            ]
        );
        assert_eq!(
            errors(&format!(
                "services:\n  db:\n    image: x\n    [commands]: [serve]\n{STEPS}"
            )),
            ["p.yml:4:5: error: keys must be plain words"]
        );
    }
}
