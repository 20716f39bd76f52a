//! `preview:`: the pushed image deployed for each pull request.

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::Cx;
use super::env::parse_env;
use super::value::{data, expect_string};
use super::walk::{Keys, Section, walk};
use crate::model::{Preview, Step};
use crate::suggest::closest;

const PREVIEW_KEYS: &[&str] = &["image", "port", "health", "env"];

pub(super) fn parse_preview(cx: &mut Cx, node: &MarkedYaml) -> Option<Preview> {
    let section = Section::new("`preview`", Keys::Known(PREVIEW_KEYS))
        .example("for example `preview: { image: image, port: 8080 }`");
    let fields = walk(cx, node, &section)?;
    let (mut step, mut port, mut health, mut env) = (None, None, None, Vec::new());
    for f in &fields {
        let fv = f.value;
        match f.key.as_str() {
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
            // `walk` returns only the keys in PREVIEW_KEYS.
            _ => {}
        }
    }
    for (k, hint) in [
        ("image", "the build step whose pushed image is deployed"),
        ("port", "the port the app listens on"),
    ] {
        if !fields.has(k) {
            cx.error(
                node,
                format!("`preview` has no `{k}`"),
                Some(format!("add `{k}:`, {hint}")),
            );
        }
    }
    Some(Preview {
        step: step?,
        port: port?,
        health,
        env,
    })
}

/// `preview.image` must name a step that builds and pushes the image to deploy.
pub(super) fn check_preview(cx: &mut Cx, p: &Preview, at: &MarkedYaml, steps: &[Step]) {
    match steps.iter().find(|s| s.name == p.step) {
        None => {
            let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
            let hint =
                closest(&p.step, names.iter().copied()).map(|s| format!("did you mean `{s}`?"));
            cx.error(
                at,
                format!("`preview.image` names unknown step `{}`", p.step),
                hint,
            );
        }
        Some(s) if !s.build.as_ref().is_some_and(|b| b.push) => cx.error(
            at,
            format!(
                "`preview.image` step `{}` does not build and push an image",
                p.step
            ),
            Some("name a step with `build: { ..., push: true }`".into()),
        ),
        Some(_) => {}
    }
}
