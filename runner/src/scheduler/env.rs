//! What a step's container gets: its variables, its registry logins and,
//! for a build step, the build with its `${VAR}`s expanded.

use std::collections::HashMap;

use slipway_engine::Pipeline;

use super::RunOptions;
use crate::backend::ImageBuild;

/// Variables every step and service gets, documented in the README.
pub(super) fn base_env(pipeline: &Pipeline, options: &RunOptions) -> Vec<(String, String)> {
    let mut env = vec![
        ("CI".to_string(), "true".to_string()),
        ("SLIPWAY".into(), "true".into()),
        ("SLIPWAY_RUN_ID".into(), options.run_id.clone()),
        ("SLIPWAY_PIPELINE".into(), pipeline.name.clone()),
        ("SLIPWAY_EVENT".into(), options.trigger.event.clone()),
        ("SLIPWAY_WORKSPACE".into(), "/workspace".into()),
    ];
    if let Some(branch) = &options.trigger.branch {
        env.push(("SLIPWAY_BRANCH".into(), branch.clone()));
    }
    env.extend(options.env.iter().cloned());
    env
}

pub(super) fn step_env(
    base: &[(String, String)],
    pipeline: &Pipeline,
    step: &slipway_engine::Step,
    secrets: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let own = vec![("SLIPWAY_STEP".to_string(), step.name.clone())];
    let secret_vars: Vec<(String, String)> = step
        .secrets
        .iter()
        .filter_map(|s| secrets.get(s).map(|v| (s.clone(), v.clone())))
        .collect();
    merge_env([base, &own, &pipeline.env, &step.env, &secret_vars])
}

/// Later lists win; order of first appearance is kept.
pub(super) fn merge_env<const N: usize>(lists: [&[(String, String)]; N]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in lists.into_iter().flatten() {
        match index.get(k) {
            Some(&i) => out[i].1 = v.clone(),
            None => {
                index.insert(k.clone(), out.len());
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

/// The run's registry logins, plus any secret of the step that holds a
/// Docker `config.json` (so a pipeline can bring its own push login).
pub(super) fn step_credentials(
    step: &slipway_engine::Step,
    options: &RunOptions,
) -> crate::backend::Credentials {
    let mut creds = options.credentials.clone();
    for name in &step.secrets {
        if let Some(value) = options.secrets.get(name)
            && let Ok(more) = crate::credentials::parse_docker_config(value)
        {
            creds.extend(more);
        }
    }
    creds
}

/// A build step's spec with `${VAR}`s replaced by the step's variables.
pub(super) fn image_build(
    step: &slipway_engine::Step,
    b: &slipway_engine::Build,
    env: &[(String, String)],
    credentials: &crate::backend::Credentials,
) -> Result<ImageBuild, String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let expand = |field: &str, text: &str| {
        slipway_engine::template::expand(text, lookup).map_err(|e| format!("build.{field}: {e}"))
    };
    Ok(ImageBuild {
        step: step.name.clone(),
        context: b.context.clone(),
        dockerfile: b.dockerfile.clone(),
        target: b.target.clone(),
        args: b
            .args
            .iter()
            .map(|(k, v)| Ok((k.clone(), expand("args", v)?)))
            .collect::<Result<_, String>>()?,
        tags: b
            .tags
            .iter()
            .map(|t| expand("tags", t))
            .collect::<Result<_, _>>()?,
        push: b.push,
        cache_from: b
            .cache_from
            .iter()
            .map(|t| expand("cache_from", t))
            .collect::<Result<_, _>>()?,
        cache_to: b
            .cache_to
            .as_deref()
            .map(|t| expand("cache_to", t))
            .transpose()?,
        credentials: credentials.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::{options, pipeline};

    #[test]
    fn a_build_step_takes_registry_logins_from_docker_config_secrets() {
        let p = pipeline(
            "steps:\n  image:\n    secrets: [PUSH_LOGIN, OTHER]\n    build: { tags: [r/x] }\n",
        );
        let mut o = options(1);
        o.secrets.insert(
            "PUSH_LOGIN".into(),
            r#"{"auths": {"reg.example:5000": {"auth": "dTpw"}}}"#.into(),
        );
        o.secrets.insert("OTHER".into(), "not json".into());
        let creds = step_credentials(&p.steps[0], &o);
        assert_eq!(creds.len(), 1);
        assert_eq!(creds["reg.example:5000"].username, "u");
        assert_eq!(creds["reg.example:5000"].password, "p");
    }
    #[test]
    fn step_env_layers_later_values_over_earlier_ones() {
        let p = pipeline(
            "env: {MODE: a, KEEP: k}\nsteps:\n  s: {image: i, commands: [x], env: {MODE: b}, secrets: [T]}\n",
        );
        let mut opts = options(1);
        opts.secrets.insert("T".into(), "v".into());
        opts.env.push(("SLIPWAY_COMMIT_SHA".into(), "abc".into()));
        let env = step_env(&base_env(&p, &opts), &p, &p.steps[0], &opts.secrets);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("MODE"), Some("b"));
        assert_eq!(get("KEEP"), Some("k"));
        assert_eq!(get("T"), Some("v"));
        assert_eq!(get("CI"), Some("true"));
        assert_eq!(get("SLIPWAY_STEP"), Some("s"));
        assert_eq!(get("SLIPWAY_BRANCH"), Some("main"));
        assert_eq!(get("SLIPWAY_COMMIT_SHA"), Some("abc"));
        assert_eq!(env.iter().filter(|(k, _)| k == "MODE").count(), 1);
    }
}
