//! Whether a run is trusted: whether its code is the repository's own, or
//! that of pull requests the repository's `trusted_pull_requests` trusts.
//! An untrusted run (by default a pull request from a fork, or from a fork
//! since deleted) gets nothing the server holds for the repository: no
//! secrets, no registry logins, no deploy steps, no preview unless
//! `previews_for_forks`; and images it builds are never promoted.

use std::collections::HashMap;

use slipway_engine::{Pipeline, Trigger};
use slipway_runner::Credentials;

use crate::config::{Config, ConfiguredSecret, PullRequestTrust, Repo};
use crate::store::{RunRecord, SecretFilter, SecretScope, SourceRecord};

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

/// A secret value a run could get, and where it was set.
#[derive(Clone)]
pub struct Offered {
    pub value: String,
    pub filter: SecretFilter,
    /// `the config file` or `set by alice`: said when a filter refuses it.
    pub origin: String,
}

/// Every secret a run of one repository could get, by level: the
/// config's and those set at run time (already opened), merged by name.
#[derive(Default)]
pub struct Offer {
    /// Only for a deploy run: its environment's secrets.
    pub environment: HashMap<String, Offered>,
    pub repo: HashMap<String, Offered>,
    pub server: HashMap<String, Offered>,
    /// Names other environments of the repository define (for a clear
    /// reason when a non-deploy step lists one).
    pub other_environments: HashMap<String, String>,
    /// Registry logins the run may use: those its repository (and, for a
    /// deploy run, its environment) lists.
    pub credentials: Credentials,
}

impl Offer {
    /// What `repo`'s config offers a run (deploying to `environment`, if a
    /// deploy run), before the values set at run time are added.
    pub fn from_config(
        server: &std::collections::BTreeMap<String, ConfiguredSecret>,
        logins: &Credentials,
        repo: &Repo,
        environment: Option<&str>,
    ) -> Offer {
        let offered = |m: &std::collections::BTreeMap<String, ConfiguredSecret>| {
            m.iter()
                .map(|(name, s)| {
                    (
                        name.clone(),
                        Offered {
                            value: s.value.clone(),
                            filter: s.filter.clone(),
                            origin: "the config file".into(),
                        },
                    )
                })
                .collect::<HashMap<_, _>>()
        };
        let mut hosts: Vec<&String> = repo.registries.iter().collect();
        let mut offer = Offer {
            server: offered(server),
            repo: offered(&repo.secrets),
            ..Offer::default()
        };
        for env in &repo.environments {
            if Some(env.name.as_str()) == environment {
                offer.environment = offered(&env.secrets);
                hosts.extend(&env.registries);
            } else {
                for name in env.secrets.keys() {
                    offer
                        .other_environments
                        .insert(name.clone(), env.name.clone());
                }
            }
        }
        offer.credentials = logins
            .iter()
            .filter(|(host, _)| hosts.contains(host))
            .map(|(h, a)| (h.clone(), a.clone()))
            .collect();
        offer
    }

    /// Adds a value set at run time (`deploying`: the environment of a
    /// deploy run); the config file's value of the same name and level
    /// stays (the file is what an operator pins).
    pub fn add_stored(
        &mut self,
        scope: &SecretScope,
        deploying: Option<&str>,
        name: &str,
        offered: Offered,
    ) {
        let level = match scope {
            SecretScope::Server => &mut self.server,
            SecretScope::Repo { .. } => &mut self.repo,
            SecretScope::Environment { environment, .. } if deploying == Some(environment) => {
                &mut self.environment
            }
            SecretScope::Environment { environment, .. } => {
                self.other_environments
                    .entry(name.into())
                    .or_insert_with(|| environment.clone());
                return;
            }
        };
        level.entry(name.into()).or_insert(offered);
    }
}

/// What the server gives a run of `pipeline`.
#[derive(Debug, Default)]
pub struct Grant {
    /// The secrets its steps list, by name.
    pub secrets: HashMap<String, String>,
    /// Registry logins for its builds.
    pub credentials: Credentials,
    /// Steps that will not run, and why: they list a secret this run does
    /// not get (untrusted, or outside the secret's events and branches).
    pub skip: Vec<(String, String)>,
}

/// What a run of `pipeline` (only the steps that will run) gets, or why it
/// may not start. A step of an untrusted run that lists a secret is
/// skipped, with the reason, so its code never holds the value and the
/// pull request shows why; one that deploys refuses the run. A secret no
/// level defines is a mistake in the pipeline or config: the run errs.
pub fn grant(
    trust: &Trust,
    repo: &Repo,
    offer: &Offer,
    pipeline: &Pipeline,
    trigger: &Trigger,
) -> Result<Grant, String> {
    let mut grant = Grant::default();
    'steps: for step in &pipeline.steps {
        if let Some(environment) = step.environment.as_ref().filter(|_| !trust.trusted) {
            return Err(format!(
                "step `{}` deploys to `{environment}`, and deploy steps never run in an untrusted run ({})",
                step.name, trust.why
            ));
        }
        let mut given = Vec::new();
        for name in &step.secrets {
            if !trust.trusted {
                grant.skip.push((
                    step.name.clone(),
                    format!(
                        "needs secret `{name}`, and this run is untrusted ({}): untrusted runs get no secrets (see trusted_pull_requests)",
                        trust.why
                    ),
                ));
                continue 'steps;
            }
            let levels = [
                ("environment", offer.environment.get(name)),
                ("repository", offer.repo.get(name)),
                ("server", offer.server.get(name)),
            ];
            let defined: Vec<(&str, &Offered)> = levels
                .iter()
                .filter_map(|(level, o)| o.map(|o| (*level, o)))
                .collect();
            if defined.is_empty() {
                if let Some(env) = offer.other_environments.get(name) {
                    grant.skip.push((
                        step.name.clone(),
                        format!(
                            "needs secret `{name}`, which only the deploy steps of environment `{env}` get"
                        ),
                    ));
                    continue 'steps;
                }
                return Err(format!(
                    "step `{}` needs secret `{name}`, which is defined for none of: environment, repository `{}`, server (`[repos.secrets]` or `[[secrets]]` in the server's config, or `slipway secret set`)",
                    step.name, repo.name
                ));
            }
            let branch = trigger.branch.as_deref();
            let tag = trigger.tag.as_deref();
            match defined
                .iter()
                .find(|(_, o)| o.filter.refuses(&trigger.event, branch, tag).is_none())
            {
                Some((_, o)) => given.push((name.clone(), o.value.clone())),
                None => {
                    let (level, o) = defined[0];
                    let why = o
                        .filter
                        .refuses(&trigger.event, branch, tag)
                        .unwrap_or_default();
                    grant.skip.push((
                        step.name.clone(),
                        format!(
                            "needs secret `{name}`, which this run does not get: the {level} secret ({}) {why}",
                            o.origin
                        ),
                    ));
                    continue 'steps;
                }
            }
        }
        grant.secrets.extend(given);
    }
    // An untrusted run's build can push nowhere the server's logins reach.
    if trust.trusted {
        grant.credentials = offer.credentials.clone();
    }
    Ok(grant)
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

    /// A repository with secrets at every level: `NPM_TOKEN` (repository),
    /// `DEPLOY_TOKEN` (repository, and prod's own), `TAG_ONLY` (tags
    /// `v*`), `STAGING_ONLY` (only staging's deploy steps), `SHARED`
    /// (server-wide, pushes to main only).
    fn config() -> Config {
        Config::parse(
            "s.toml",
            "[[secrets]]\nname = \"SHARED\"\nvalue = \"shared-value\"\nevents = [\"push\"]\nbranches = [\"main\"]\n\
             [[registries]]\nhost = \"r.example\"\nusername = \"ci\"\npassword = \"registry-pw\"\n\
             [[registries]]\nhost = \"other.example\"\nusername = \"ci\"\npassword = \"other-pw\"\n\
             [[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\nregistries = [\"r.example\"]\n\
             [repos.secrets]\nNPM_TOKEN = \"npm-value\"\nDEPLOY_TOKEN = \"repo-deploy\"\nTAG_ONLY = { value = \"tag-value\", tags = [\"v*\"] }\n\
             [[repos.environments]]\nname = \"staging\"\nimage = \"r.example/acme/web\"\ntag = \"staging\"\nauto = true\n\
             [repos.environments.secrets]\nSTAGING_ONLY = \"staging-value\"\n\
             [[repos.environments]]\nname = \"prod\"\nimage = \"r.example/acme/web\"\ntag = \"prod\"\nfrom = \"staging\"\nregistries = [\"other.example\"]\n\
             [repos.environments.secrets]\nDEPLOY_TOKEN = \"prod-deploy\"\n",
        )
        .unwrap()
    }

    fn offer(config: &Config, deploying: Option<&str>) -> Offer {
        Offer::from_config(
            &config.secrets,
            &config.registries,
            &config.repos[0],
            deploying,
        )
    }

    fn pipeline(yaml: &str) -> Pipeline {
        slipway_engine::parse(".slipway.yml", yaml)
            .pipeline
            .expect("valid")
    }

    fn on(event: &str, branch: Option<&str>, tag: Option<&str>) -> Trigger {
        Trigger {
            event: event.into(),
            branch: branch.map(Into::into),
            tag: tag.map(Into::into),
            ..Trigger::default()
        }
    }

    fn fork() -> Trust {
        trust(
            Some(&source(Some(2), Some("mallory/web"))),
            &PullRequestTrust::SameRepo,
        )
    }

    #[test]
    fn a_trusted_run_gets_the_secrets_its_steps_list_and_only_those() {
        let c = config();
        let trusted = trust(None, &PullRequestTrust::SameRepo);
        let push = on("push", Some("main"), None);
        let p = pipeline(
            "steps:\n  publish: {image: i, commands: [x], secrets: [NPM_TOKEN, SHARED]}\n",
        );
        let g = grant(&trusted, &c.repos[0], &offer(&c, None), &p, &push).unwrap();
        assert_eq!(g.secrets.len(), 2);
        assert_eq!(g.secrets["NPM_TOKEN"], "npm-value");
        assert_eq!(g.secrets["SHARED"], "shared-value");
        assert!(g.skip.is_empty());
        let hosts: Vec<&String> = g.credentials.keys().collect();
        assert_eq!(
            hosts,
            ["r.example"],
            "only the registries the repository lists"
        );
        let p = pipeline("steps:\n  publish: {image: i, commands: [x], secrets: [OTHER]}\n");
        let e = grant(&trusted, &c.repos[0], &offer(&c, None), &p, &push).unwrap_err();
        assert!(
            e.contains("`publish` needs secret `OTHER`") && e.contains("slipway secret set"),
            "{e}"
        );
    }

    #[test]
    fn event_branch_and_tag_filters_skip_the_step_with_the_reason() {
        let c = config();
        let trusted = trust(None, &PullRequestTrust::SameRepo);
        let p = pipeline(
            "steps:\n  test: {image: i, commands: [x]}\n  shared: {image: i, commands: [x], secrets: [SHARED]}\n  release: {image: i, commands: [x], secrets: [TAG_ONLY]}\n",
        );
        let g = grant(
            &trusted,
            &c.repos[0],
            &offer(&c, None),
            &p,
            &on("push", Some("feature"), None),
        )
        .unwrap();
        let reasons: HashMap<&str, &str> = g
            .skip
            .iter()
            .map(|(s, r)| (s.as_str(), r.as_str()))
            .collect();
        assert!(g.secrets.is_empty());
        assert!(
            reasons["shared"].contains("limited to branches [main] (this run: branch feature)"),
            "{reasons:?}"
        );
        assert!(reasons["release"].contains("tags [v*]"), "{reasons:?}");
        assert!(
            reasons["release"].contains("the config file"),
            "{reasons:?}"
        );
        let g = grant(
            &trusted,
            &c.repos[0],
            &offer(&c, None),
            &p,
            &on("manual", Some("main"), None),
        )
        .unwrap();
        let reasons: HashMap<&str, &str> = g
            .skip
            .iter()
            .map(|(s, r)| (s.as_str(), r.as_str()))
            .collect();
        assert!(
            reasons["shared"].contains("limited to events [push] (this run: manual)"),
            "{reasons:?}"
        );
        let g = grant(
            &trusted,
            &c.repos[0],
            &offer(&c, None),
            &p,
            &on("tag", None, Some("v1.2")),
        )
        .unwrap();
        assert_eq!(
            g.secrets.get("TAG_ONLY").map(String::as_str),
            Some("tag-value")
        );
        assert_eq!(g.skip.len(), 1, "SHARED is for pushes: {:?}", g.skip);
    }

    #[test]
    fn environment_secrets_reach_only_that_environments_deploy_run_and_win_over_the_repositorys() {
        let c = config();
        let trusted = trust(None, &PullRequestTrust::SameRepo);
        let deploy = pipeline(
            "steps:\n  ship: {image: i, commands: [x], secrets: [DEPLOY_TOKEN], environment: prod}\n",
        );
        let g = grant(
            &trusted,
            &c.repos[0],
            &offer(&c, Some("prod")),
            &deploy,
            &on("promotion", Some("main"), None),
        )
        .unwrap();
        assert_eq!(g.secrets["DEPLOY_TOKEN"], "prod-deploy");
        let mut hosts: Vec<&String> = g.credentials.keys().collect();
        hosts.sort();
        assert_eq!(
            hosts,
            ["other.example", "r.example"],
            "the environment's registries too"
        );
        let build = pipeline(
            "steps:\n  build: {image: i, commands: [x], secrets: [DEPLOY_TOKEN]}\n  smoke: {image: i, commands: [x], secrets: [STAGING_ONLY]}\n",
        );
        let g = grant(
            &trusted,
            &c.repos[0],
            &offer(&c, None),
            &build,
            &on("push", Some("main"), None),
        )
        .unwrap();
        assert_eq!(g.secrets["DEPLOY_TOKEN"], "repo-deploy", "not prod's");
        assert!(!g.secrets.contains_key("STAGING_ONLY"));
        assert!(
            g.skip.iter().any(|(s, r)| s == "smoke"
                && r.contains("only the deploy steps of environment `staging`")),
            "{:?}",
            g.skip
        );
        let hosts: Vec<&String> = g.credentials.keys().collect();
        assert_eq!(hosts, ["r.example"]);
    }

    #[test]
    fn an_untrusted_run_skips_steps_that_list_a_secret_and_refuses_deploy_steps() {
        let c = config();
        let p = pipeline(
            "steps:\n  test: {image: i, commands: [x]}\n  publish: {image: i, commands: [x], secrets: [NPM_TOKEN]}\n",
        );
        let pr = on("pull_request", Some("feature"), None);
        let g = grant(&fork(), &c.repos[0], &offer(&c, None), &p, &pr).unwrap();
        assert!(g.secrets.is_empty() && g.credentials.is_empty());
        assert_eq!(g.skip.len(), 1);
        let (step, reason) = &g.skip[0];
        assert_eq!(step, "publish");
        assert!(
            reason.contains("needs secret `NPM_TOKEN`")
                && reason.contains("untrusted")
                && reason.contains("fork"),
            "{reason}"
        );
        assert!(!reason.contains("npm-value"));
        let p = pipeline("steps:\n  ship: {image: i, commands: [x], environment: prod}\n");
        let e = grant(&fork(), &c.repos[0], &offer(&c, None), &p, &pr).unwrap_err();
        assert!(e.contains("step `ship` deploys to `prod`"), "{e}");
    }

    #[test]
    fn steps_that_will_not_run_need_no_secret() {
        let c = config();
        let p = pipeline(
            "steps:\n  test: {image: i, commands: [x]}\n  release: {image: i, commands: [x], secrets: [NPM_TOKEN], when: {event: [push]}}\n  docs: {image: i, commands: [x], secrets: [NOWHERE]}\n",
        );
        let pr = on("pull_request", Some("feature"), None);
        let skip = [("docs".to_string(), "succeeded in run r0".to_string())];
        let needed = without_unneeded_secrets(p, &pr, &skip);
        let trusted = trust(None, &PullRequestTrust::SameRepo);
        let g = grant(&trusted, &c.repos[0], &offer(&c, None), &needed, &pr).unwrap();
        assert!(g.secrets.is_empty() && g.skip.is_empty(), "{:?}", g.skip);
    }

    #[test]
    fn a_value_set_at_run_time_adds_to_the_config_and_the_file_wins_a_tie() {
        let c = config();
        let mut o = offer(&c, None);
        let set = |v: &str| Offered {
            value: v.into(),
            filter: SecretFilter::default(),
            origin: "set by alice".into(),
        };
        let repo = SecretScope::Repo {
            repo: "acme/web".into(),
        };
        o.add_stored(&repo, None, "API_KEY", set("stored-value"));
        o.add_stored(&repo, None, "NPM_TOKEN", set("stored-npm"));
        let prod = SecretScope::Environment {
            repo: "acme/web".into(),
            environment: "prod".into(),
        };
        o.add_stored(&prod, None, "PROD_ONLY", set("prod-value"));
        let trusted = trust(None, &PullRequestTrust::SameRepo);
        let p = pipeline(
            "steps:\n  a: {image: i, commands: [x], secrets: [API_KEY, NPM_TOKEN]}\n  b: {image: i, commands: [x], secrets: [PROD_ONLY]}\n",
        );
        let g = grant(
            &trusted,
            &c.repos[0],
            &o,
            &p,
            &on("push", Some("main"), None),
        )
        .unwrap();
        assert_eq!(g.secrets["API_KEY"], "stored-value");
        assert_eq!(g.secrets["NPM_TOKEN"], "npm-value");
        assert!(!g.secrets.contains_key("PROD_ONLY"));
        assert!(
            g.skip.iter().any(|(s, r)| s == "b" && r.contains("`prod`")),
            "{:?}",
            g.skip
        );
    }
}
