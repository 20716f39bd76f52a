//! `[[repos]]` and their `[[repos.environments]]`: what the server builds,
//! and the gates in front of each environment.

use super::secrets::resolve;
use super::{DEFAULT_EXPIRY, Environment, RawRepo, Repo};

/// Every repository, validated; problems are added to `problems`.
pub(super) fn validate_all(file: &str, raw: Vec<RawRepo>, problems: &mut Vec<String>) -> Vec<Repo> {
    let mut out: Vec<Repo> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("{file}: repos[{i}] ({}).{k}", r.name);
        if r.name.split('/').count() != 2 || r.name.split('/').any(str::is_empty) {
            problems.push(format!(
                "{file}: repos[{i}].name: `{}` must be owner/name",
                r.name
            ));
        }
        if out
            .iter()
            .any(|o: &Repo| o.name.eq_ignore_ascii_case(&r.name))
        {
            problems.push(format!("{}: declared twice", key("name")));
        }
        if r.clone_url.trim().is_empty() {
            problems.push(format!("{}: is empty", key("clone_url")));
        }
        if r.max_concurrent_runs == Some(0) {
            problems.push(format!(
                "{}: must be at least 1",
                key("max_concurrent_runs")
            ));
        }
        let webhook_secret = match resolve(r.webhook_secret.as_ref()) {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                problems.push(format!(
                    "{}: missing: every repository needs a webhook secret (unsigned webhooks would run anyone's code)",
                    key("webhook_secret")
                ));
                String::new()
            }
            Err(m) => {
                problems.push(format!("{}: {m}", key("webhook_secret")));
                String::new()
            }
        };
        let api_token = resolve(r.api_token.as_ref())
            .map_err(|m| problems.push(format!("{}: {m}", key("api_token"))))
            .ok()
            .flatten();
        let mut environments: Vec<Environment> = Vec::new();
        for (j, e) in r.environments.iter().enumerate() {
            let ekey = |k: &str| {
                format!(
                    "{file}: repos[{i}] ({}).environments[{j}] ({}).{k}",
                    r.name, e.name
                )
            };
            if environments.iter().any(|o| o.name == e.name) {
                problems.push(format!("{}: declared twice", ekey("name")));
            }
            if e.image.contains('@') || e.image.rsplit('/').next().is_some_and(|l| l.contains(':'))
            {
                problems.push(format!(
                    "{}: `{}` must be a repository without tag or digest (the tag goes in `tag`)",
                    ekey("image"),
                    e.image
                ));
            }
            if let Some(from) = &e.from
                && !environments.iter().any(|o| &o.name == from)
            {
                problems.push(format!(
                    "{}: `{from}` is not an environment declared before this one",
                    ekey("from")
                ));
            }
            if e.auto && e.from.is_some() {
                problems.push(format!("{}: an `auto` environment takes green builds, not another environment's images", ekey("from")));
            }
            if !e.auto && e.from.is_none() {
                problems.push(format!(
                    "{}: say where images come from (`from = \"dev\"`), or make it `auto`",
                    ekey("from")
                ));
            }
            if e.approvals > e.approvers.len() {
                problems.push(format!(
                    "{}: needs {} approvals but lists {} approvers",
                    ekey("approvals"),
                    e.approvals,
                    e.approvers.len()
                ));
            }
            let expires_after = match &e.expires_after {
                None => DEFAULT_EXPIRY,
                Some(t) => match slipway_engine::duration::parse_duration(t) {
                    Some(d) if !d.is_zero() => d,
                    _ => {
                        problems.push(format!(
                            "{}: `{t}` is not a duration (e.g. `72h`)",
                            ekey("expires_after")
                        ));
                        DEFAULT_EXPIRY
                    }
                },
            };
            environments.push(Environment {
                name: e.name.clone(),
                image: e.image.clone(),
                tag: e.tag.clone(),
                auto: e.auto,
                from: e.from.clone(),
                approvals: e.approvals,
                approvers: e.approvers.clone(),
                prevent_self_approval: e.prevent_self_approval,
                expires_after,
            });
        }
        if r.max_previews == Some(0) {
            problems.push(format!("{}: must be at least 1", key("max_previews")));
        }
        out.push(Repo {
            max_previews: r.max_previews.unwrap_or(10).max(1),
            previews_for_forks: r.previews_for_forks,
            default_branch: r.default_branch.clone(),
            environments,
            name: r.name,
            provider: r.provider,
            clone_url: r.clone_url,
            webhook_secret,
            pipeline: r.pipeline,
            api_url: r.api_url,
            api_token,
            max_concurrent_runs: r.max_concurrent_runs,
        });
    }
    out
}
