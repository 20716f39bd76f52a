//! Whether a run is trusted: whether its code is the repository's own, or
//! that of pull requests the repository's `trusted_pull_requests` trusts.
//! An untrusted run (by default a pull request from a fork, or from a fork
//! since deleted) gets nothing the server holds for the repository: no
//! secrets, no registry logins, no deploy steps, no preview unless
//! `previews_for_forks`; and images it builds are never promoted.

use std::collections::HashMap;

use slipway_engine::{Pipeline, Trigger};
use slipway_runner::Credentials;

use crate::config::{Config, PullRequestTrust, Repo};
use crate::store::{RunRecord, SourceRecord};

pub use crate::store::Trust;

/// The trust of a run of `source` (`None`: a local `slipway run`) under
/// the repository's `trusted_pull_requests`.
pub fn trust(source: Option<&SourceRecord>, policy: &PullRequestTrust) -> Trust {
    let (trusted, why) = match source {
        None => (true, "a local run".to_string()),
        Some(s) if s.pull_request.is_none() => {
            (true, "the repository's own branch, tag or commit".into())
        }
        Some(_) if *policy == PullRequestTrust::None => (
            false,
            "a pull request, and the repository's trusted_pull_requests = \"none\" trusts none"
                .into(),
        ),
        Some(s) if !s.from_fork => (
            true,
            "a pull request from a branch of the repository".into(),
        ),
        Some(_) if *policy == PullRequestTrust::All => (
            true,
            "a pull request from a fork, trusted: the repository's trusted_pull_requests = \"all\""
                .into(),
        ),
        Some(s) => match (policy, fork_owner(s)) {
            (PullRequestTrust::Owners(owners), Some(owner))
                if owners.iter().any(|o| o.eq_ignore_ascii_case(owner)) =>
            {
                (
                    true,
                    format!(
                        "a pull request from {owner}'s fork, which the repository's trusted_pull_requests lists"
                    ),
                )
            }
            _ => (
                false,
                "a pull request from a fork: its code is not the repository's own".into(),
            ),
        },
    };
    Trust { trusted, why }
}

/// Whose fork a pull request comes from: its head repository's owner
/// (GitLab: its namespace). `None` when the fork is gone.
fn fork_owner(source: &SourceRecord) -> Option<&str> {
    source
        .head_repo
        .as_deref()
        .and_then(|r| r.rsplit_once('/'))
        .map(|(owner, _)| owner)
}

/// The trust a run had when it started; for one that has not started yet,
/// what the repository's current config makes of it.
pub fn of_run(run: &RunRecord, config: &Config) -> Trust {
    run.trust.clone().unwrap_or_else(|| {
        let policy = run
            .source
            .as_ref()
            .and_then(|s| config.repo(&s.repo))
            .map(|r| r.trusted_pull_requests.clone())
            .unwrap_or_default();
        trust(run.source.as_ref(), &policy)
    })
}

/// `pipeline` without the secrets of steps that will not run (excluded by
/// `when:` for `trigger`, or in `skip`): they need none, so a fork's pull
/// request still runs its tests when a push-only step lists a secret.
pub fn without_unneeded_secrets(
    mut pipeline: Pipeline,
    trigger: &Trigger,
    skip: &[(String, String)],
) -> Pipeline {
    let excluded = pipeline.excluded(trigger);
    for (step, out) in pipeline.steps.iter_mut().zip(excluded) {
        if out || skip.iter().any(|(name, _)| *name == step.name) {
            step.secrets.clear();
        }
    }
    pipeline
}

/// What the server gives a run of `pipeline`.
#[derive(Debug, Default)]
pub struct Grant {
    /// The repository's secrets its steps list, by name.
    pub secrets: HashMap<String, String>,
    /// Registry logins for its builds.
    pub credentials: Credentials,
}

/// What a run of `pipeline` (only the steps that will run) gets, or why it
/// may not start: a step of an untrusted run that lists a secret or
/// deploys is refused before anything starts, so its code never holds the
/// value.
pub fn grant(
    trust: &Trust,
    repo: &Repo,
    registries: &Credentials,
    pipeline: &Pipeline,
) -> Result<Grant, String> {
    let mut secrets = HashMap::new();
    for step in &pipeline.steps {
        if let Some(environment) = step.environment.as_ref().filter(|_| !trust.trusted) {
            return Err(format!(
                "step `{}` deploys to `{environment}`, and deploy steps never run in an untrusted run ({})",
                step.name, trust.why
            ));
        }
        for name in &step.secrets {
            if !trust.trusted {
                return Err(format!(
                    "step `{}` lists secret `{name}`, and this run is untrusted ({}): untrusted runs get no secrets (see trusted_pull_requests)",
                    step.name, trust.why
                ));
            }
            let value = repo.secrets.get(name).ok_or_else(|| {
                format!(
                    "step `{}` needs secret `{name}`, which repository `{}` does not define (`[repos.secrets]` in the server's config)",
                    step.name, repo.name
                )
            })?;
            secrets.insert(name.clone(), value.clone());
        }
    }
    Ok(Grant {
        secrets,
        // An untrusted run's build can push nowhere the server's logins reach.
        credentials: if trust.trusted {
            registries.clone()
        } else {
            Credentials::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(pull_request: Option<u64>, head_repo: Option<&str>) -> SourceRecord {
        SourceRecord {
            repo: "acme/web".into(),
            git_ref: "refs/heads/main".into(),
            sha: "a".repeat(40),
            tag: None,
            pull_request,
            pr_target_branch: None,
            from_fork: pull_request.is_some() && head_repo != Some("acme/web"),
            head_repo: head_repo.map(Into::into),
            delivery: None,
            author: None,
        }
    }

    #[test]
    fn by_default_only_code_from_forks_is_untrusted() {
        let same = PullRequestTrust::SameRepo;
        assert!(trust(None, &same).trusted);
        assert!(trust(Some(&source(None, None)), &same).trusted);
        assert!(trust(Some(&source(Some(2), Some("acme/web"))), &same).trusted);
        let fork = trust(Some(&source(Some(2), Some("mallory/web"))), &same);
        assert!(!fork.trusted);
        assert!(fork.why.contains("fork"));
        assert!(
            !trust(Some(&source(Some(2), None)), &same).trusted,
            "a deleted fork"
        );
    }

    #[test]
    fn none_trusts_no_pull_request_and_all_trusts_forks_too() {
        let none = trust(
            Some(&source(Some(2), Some("acme/web"))),
            &PullRequestTrust::None,
        );
        assert!(!none.trusted);
        assert!(
            none.why.contains("trusted_pull_requests = \"none\""),
            "{}",
            none.why
        );
        assert!(
            trust(Some(&source(None, None)), &PullRequestTrust::None).trusted,
            "a push"
        );
        let all = trust(
            Some(&source(Some(2), Some("mallory/web"))),
            &PullRequestTrust::All,
        );
        assert!(all.trusted);
        assert!(all.why.contains("\"all\""), "{}", all.why);
    }

    #[test]
    fn forks_of_listed_owners_are_trusted_and_no_others() {
        let owners = PullRequestTrust::Owners(vec!["Alice".into(), "acme-bot".into()]);
        let alice = trust(Some(&source(Some(2), Some("alice/web"))), &owners);
        assert!(
            alice.trusted,
            "owners compare as the forge does, case-insensitively"
        );
        assert!(alice.why.contains("alice's fork"), "{}", alice.why);
        assert!(!trust(Some(&source(Some(2), Some("mallory/web"))), &owners).trusted);
        assert!(
            !trust(Some(&source(Some(2), Some("web/alice"))), &owners).trusted,
            "the owner, not the name"
        );
        assert!(
            !trust(Some(&source(Some(2), None)), &owners).trusted,
            "a deleted fork has no owner"
        );
        assert!(trust(Some(&source(Some(2), Some("acme/web"))), &owners).trusted);
    }

    fn repo_with_secret() -> Repo {
        let config = Config::parse(
            "s.toml",
            "[[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\n[repos.secrets]\nNPM_TOKEN = \"npm-value\"\n",
        )
        .unwrap();
        config.repos[0].clone()
    }

    fn pipeline(yaml: &str) -> Pipeline {
        slipway_engine::parse(".slipway.yml", yaml)
            .pipeline
            .expect("valid")
    }

    #[test]
    fn a_trusted_run_gets_the_secrets_its_steps_list_and_only_those() {
        let trusted = trust(None, &PullRequestTrust::SameRepo);
        let p = pipeline("steps:\n  publish: {image: i, commands: [x], secrets: [NPM_TOKEN]}\n");
        let g = grant(&trusted, &repo_with_secret(), &Credentials::default(), &p).unwrap();
        assert_eq!(
            g.secrets.get("NPM_TOKEN").map(String::as_str),
            Some("npm-value")
        );
        let p = pipeline("steps:\n  publish: {image: i, commands: [x], secrets: [OTHER]}\n");
        let e = grant(&trusted, &repo_with_secret(), &Credentials::default(), &p).unwrap_err();
        assert!(
            e.contains("`publish` needs secret `OTHER`") && e.contains("[repos.secrets]"),
            "{e}"
        );
    }

    #[test]
    fn an_untrusted_run_that_lists_a_secret_or_deploys_is_refused_naming_the_step() {
        let fork = trust(
            Some(&source(Some(2), Some("mallory/web"))),
            &PullRequestTrust::SameRepo,
        );
        let p = pipeline(
            "steps:\n  test: {image: i, commands: [x]}\n  publish: {image: i, commands: [x], secrets: [NPM_TOKEN]}\n",
        );
        let e = grant(&fork, &repo_with_secret(), &Credentials::default(), &p).unwrap_err();
        assert!(e.contains("step `publish` lists secret `NPM_TOKEN`"), "{e}");
        assert!(e.contains("untrusted") && e.contains("fork"), "{e}");
        assert!(!e.contains("npm-value"), "{e}");
        let p = pipeline("steps:\n  ship: {image: i, commands: [x], environment: prod}\n");
        let e = grant(&fork, &repo_with_secret(), &Credentials::default(), &p).unwrap_err();
        assert!(e.contains("step `ship` deploys to `prod`"), "{e}");
        let p = pipeline("steps:\n  test: {image: i, commands: [x]}\n");
        assert!(grant(&fork, &repo_with_secret(), &Credentials::default(), &p).is_ok());
    }

    #[test]
    fn steps_that_will_not_run_need_no_secret_so_a_forks_tests_still_run() {
        let fork = trust(
            Some(&source(Some(2), Some("mallory/web"))),
            &PullRequestTrust::SameRepo,
        );
        let p = pipeline(
            "steps:\n  test: {image: i, commands: [x]}\n  release: {image: i, commands: [x], secrets: [NPM_TOKEN], when: {event: [push]}}\n  docs: {image: i, commands: [x], secrets: [NPM_TOKEN]}\n",
        );
        let pr = Trigger {
            event: "pull_request".into(),
            ..Trigger::default()
        };
        let skip = [("docs".to_string(), "succeeded in run r0".to_string())];
        let needed = without_unneeded_secrets(p.clone(), &pr, &skip);
        let g = grant(&fork, &repo_with_secret(), &Credentials::default(), &needed).unwrap();
        assert!(g.secrets.is_empty());
        let push = Trigger {
            event: "push".into(),
            ..Trigger::default()
        };
        let needed = without_unneeded_secrets(p, &push, &[]);
        let e = grant(&fork, &repo_with_secret(), &Credentials::default(), &needed).unwrap_err();
        assert!(e.contains("step `release`"), "{e}");
    }
}
