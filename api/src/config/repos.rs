//! `[[repos]]` and their `[[repos.environments]]`: what the server builds,
//! and the gates in front of each environment.

use serde::Deserialize;
use slipway_runner::git::GitLogin;

use super::secrets::{resolve, resolve_table};
use super::{DEFAULT_EXPIRY, Environment, Provider, RawRepo, Repo, line_col};

/// Which pull requests' runs are trusted (`trusted_pull_requests`): a
/// trusted run gets the repository's secrets and registry logins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PullRequestTrust {
    /// `"same-repo"`: pull requests from branches of the repository itself;
    /// never a fork's.
    #[default]
    SameRepo,
    /// `"none"`: no pull request, not even from a branch of the repository.
    None,
    /// `"all"`: forks' too. Only for a repository whose forks all belong to
    /// people who could push to it anyway.
    All,
    /// `["alice", ...]`: branches of the repository, and forks these owners
    /// own (forge logins, case-insensitive).
    Owners(Vec<String>),
}

/// `trusted_pull_requests` as written: a word, or a list of fork owners.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "`same-repo`, `none`, `all`, or a list of fork owners"
)]
pub(super) enum RawPullRequestTrust {
    Word(String),
    Owners(Vec<String>),
}

/// The user name git sends with a `clone_token` when none is configured:
/// what each forge expects with an access token.
fn default_clone_username(provider: Provider) -> &'static str {
    match provider {
        Provider::Gitlab => "oauth2",
        Provider::Github | Provider::Gitea | Provider::Forgejo => "x-access-token",
    }
}

/// Every repository, validated; problems are added to `problems`. `text`
/// is the file's content, to give problems of the keys read with their
/// spans a line and column.
pub(super) fn validate_all(
    file: &str,
    text: &str,
    raw: Vec<RawRepo>,
    logins: &slipway_runner::Credentials,
    problems: &mut Vec<String>,
) -> Vec<Repo> {
    let mut out: Vec<Repo> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("{file}: repos[{i}] ({}).{k}", r.name);
        // `FILE:LINE:COL: repos[i] (name).key` for a value read with its span.
        let located = |span: std::ops::Range<usize>, k: &str| {
            let (line, col) = line_col(text, span.start);
            format!("{file}:{line}:{col}: repos[{i}] ({}).{k}", r.name)
        };
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
        if r.clone_url.get_ref().trim().is_empty() {
            problems.push(format!("{}: is empty", key("clone_url")));
        }
        let clone_url = r.clone_url.get_ref().clone();
        let shown_url = slipway_runner::git::redact_url(&clone_url);
        if shown_url != clone_url {
            // The URL itself is not repeated: it holds the credential.
            problems.push(format!(
                "{}: `{shown_url}` with a user and password in it: a URL shows up in process lists, logs and errors; give the token as `clone_token` (and the user as `clone_username`), which git gets through its credential helper",
                located(r.clone_url.span(), "clone_url")
            ));
        }
        let trusted_pull_requests = match r.trusted_pull_requests.as_ref() {
            None => PullRequestTrust::default(),
            Some(given) => match given.get_ref() {
                RawPullRequestTrust::Word(w) => match w.as_str() {
                    "same-repo" => PullRequestTrust::SameRepo,
                    "none" => PullRequestTrust::None,
                    "all" => PullRequestTrust::All,
                    other => {
                        problems.push(format!(
                            "{}: `{other}` is not `same-repo`, `none`, `all` or a list of fork owners",
                            located(given.span(), "trusted_pull_requests")
                        ));
                        PullRequestTrust::default()
                    }
                },
                RawPullRequestTrust::Owners(owners) => {
                    if owners.iter().any(|o| o.trim().is_empty()) {
                        problems.push(format!(
                            "{}: an owner is empty",
                            located(given.span(), "trusted_pull_requests")
                        ));
                    }
                    PullRequestTrust::Owners(owners.clone())
                }
            },
        };
        let clone_token = r.clone_token.as_ref().and_then(|t| {
            match resolve(Some(t.get_ref())) {
                Ok(Some(token)) if token.contains(['\n', '\r', '\0']) => {
                    problems.push(format!(
                        "{}: contains a line break or NUL, which git's credential protocol cannot carry",
                        located(t.span(), "clone_token")
                    ));
                    None
                }
                Ok(token) => token,
                Err(m) => {
                    problems.push(format!("{}: {m}", located(t.span(), "clone_token")));
                    None
                }
            }
        });
        let clone_username = match &r.clone_username {
            Some(u) if r.clone_token.is_none() => {
                problems.push(format!(
                    "{}: is only used with `clone_token`, which is not set",
                    located(u.span(), "clone_username")
                ));
                None
            }
            Some(u) if u.get_ref().is_empty() || u.get_ref().contains(['\n', '\r', '\0']) => {
                problems.push(format!(
                    "{}: must be a non-empty single line",
                    located(u.span(), "clone_username")
                ));
                None
            }
            Some(u) => Some(u.get_ref().clone()),
            None => None,
        };
        let clone_login = clone_token.map(|password| GitLogin {
            username: clone_username
                .unwrap_or_else(|| default_clone_username(r.provider).to_string()),
            password,
        });
        let secrets = resolve_table(&r.secrets, located, problems);
        let registries = allowed_registries(&r.registries, logins, located, problems);
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
            let env_at = |span: std::ops::Range<usize>, k: &str| {
                let (line, col) = line_col(text, span.start);
                format!(
                    "{file}:{line}:{col}: repos[{i}] ({}).environments[{j}] ({}).{k}",
                    r.name, e.name
                )
            };
            let env_secrets = resolve_table(&e.secrets, env_at, problems);
            let env_registries = allowed_registries(&e.registries, logins, env_at, problems);
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
                secrets: env_secrets,
                registries: env_registries,
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
            clone_url,
            trusted_pull_requests,
            clone_login,
            secrets,
            registries,
            webhook_secret,
            pipeline: r.pipeline,
            api_url: r.api_url,
            api_token,
            max_concurrent_runs: r.max_concurrent_runs,
        });
    }
    out
}

/// The hosts of `listed` that `[[registries]]` has a login for; a host
/// without one is a problem (a typo would silently push without a login).
fn allowed_registries(
    listed: &[toml::Spanned<String>],
    logins: &slipway_runner::Credentials,
    at: impl Fn(std::ops::Range<usize>, &str) -> String,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for host in listed {
        if logins.contains_key(host.get_ref()) {
            out.push(host.get_ref().clone());
        } else {
            let mut known: Vec<&String> = logins.keys().collect();
            known.sort();
            problems.push(format!(
                "{}: `{}` has no login in [[registries]] (logins: {})",
                at(host.span(), "registries"),
                host.get_ref(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    const BASE: &str = "[[repos]]\nname = \"acme/web\"\nprovider = \"github\"\nclone_url = \"https://git.example.com/acme/web.git\"\nwebhook_secret = \"test-secret\"\n";

    fn repo(extra: &str) -> Repo {
        Config::parse("s.toml", &format!("{BASE}{extra}"))
            .unwrap_or_else(|e| panic!("{e}"))
            .repos
            .remove(0)
    }

    fn problems(text: &str) -> String {
        match Config::parse("s.toml", text) {
            Err(ConfigError::Invalid(p)) => p.join("\n"),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn trusted_pull_requests_defaults_to_the_repositorys_own_branches() {
        assert_eq!(repo("").trusted_pull_requests, PullRequestTrust::SameRepo);
    }

    #[test]
    fn trusted_pull_requests_takes_each_word_and_a_list_of_owners() {
        for (value, expected) in [
            ("\"same-repo\"", PullRequestTrust::SameRepo),
            ("\"none\"", PullRequestTrust::None),
            ("\"all\"", PullRequestTrust::All),
            (
                "[\"alice\", \"acme-bot\"]",
                PullRequestTrust::Owners(vec!["alice".into(), "acme-bot".into()]),
            ),
        ] {
            let r = repo(&format!("trusted_pull_requests = {value}\n"));
            assert_eq!(r.trusted_pull_requests, expected, "{value}");
        }
    }

    #[test]
    fn a_bad_trusted_pull_requests_names_file_line_and_key() {
        let err = problems(&format!("{BASE}trusted_pull_requests = \"forks\"\n"));
        assert_eq!(
            err,
            "s.toml:6:25: repos[0] (acme/web).trusted_pull_requests: `forks` is not `same-repo`, `none`, `all` or a list of fork owners"
        );
        let err = problems(&format!("{BASE}trusted_pull_requests = 3\n"));
        assert!(err.starts_with("s.toml:6:25:"), "{err}");
        assert!(
            err.contains("`same-repo`, `none`, `all`, or a list of fork owners"),
            "{err}"
        );
    }

    #[test]
    fn a_clone_token_becomes_a_login_with_the_forges_user_name() {
        assert_eq!(repo("").clone_login, None);
        let r = repo("clone_token = \"tok3n\"\n");
        let login = r.clone_login.expect("a login");
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("x-access-token", "tok3n")
        );
        let gitlab = Config::parse(
            "s.toml",
            &format!(
                "{}clone_token = \"tok3n\"\n",
                BASE.replace("github", "gitlab")
            ),
        )
        .unwrap();
        assert_eq!(
            gitlab.repos[0].clone_login.as_ref().unwrap().username,
            "oauth2"
        );
        let r = repo("clone_token = \"tok3n\"\nclone_username = \"ci\"\n");
        assert_eq!(r.clone_login.unwrap().username, "ci");
        let remote = repo("clone_token = \"tok3n\"\n").remote();
        assert_eq!(
            remote.url, "https://git.example.com/acme/web.git",
            "never in the URL"
        );
        assert!(!format!("{remote:?}").contains("tok3n"), "{remote:?}");
    }

    /// Issue 14: a token in `clone_url` reached git's argv, where any user
    /// of the host reads it (`/proc/*/cmdline`), and every message quoting
    /// the URL.
    #[test]
    fn a_clone_url_with_a_login_is_refused_naming_the_repository_and_clone_token() {
        let err = problems(&BASE.replace("https://git.", "https://ci:s3cr3t@git."));
        assert!(
            err.starts_with("s.toml:4:13: repos[0] (acme/web).clone_url: `https://git.example.com/acme/web.git` with a user and password in it"),
            "{err}"
        );
        assert!(err.contains("`clone_token`"), "{err}");
        assert!(
            !err.contains("s3cr3t"),
            "the refusal repeats no credential: {err}"
        );
    }

    #[test]
    fn bad_clone_credentials_name_file_line_and_key() {
        let err = problems(&format!(
            "{BASE}clone_token = {{ env = \"SLIPWAY_TEST_UNSET_CLONE_TOKEN\" }}\n"
        ));
        assert_eq!(
            err,
            "s.toml:6:15: repos[0] (acme/web).clone_token: environment variable `SLIPWAY_TEST_UNSET_CLONE_TOKEN` is not set"
        );
        let err = problems(&format!("{BASE}clone_username = \"ci\"\n"));
        assert!(
            err.starts_with(
                "s.toml:6:18: repos[0] (acme/web).clone_username: is only used with `clone_token`"
            ),
            "{err}"
        );
    }

    #[test]
    fn secrets_resolve_by_name_and_bad_ones_are_located() {
        assert!(repo("").secrets.is_empty());
        let r = repo("[repos.secrets]\nNPM_TOKEN = \"npm-value\"\n");
        assert_eq!(
            r.secrets.get("NPM_TOKEN").map(|s| s.value.as_str()),
            Some("npm-value")
        );
        let err = problems(&format!(
            "{BASE}[repos.secrets]\nNPM_TOKEN = \"\"\n\"2X\" = \"value\"\nPIN = \"123\"\nF = {{ value = \"long-enough\", events = [\"push\", \"cron\"] }}\nG = {{ value = \"long-enough\", env = \"X\" }}\n"
        ));
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(
            lines,
            [
                "s.toml:8:8: repos[0] (acme/web).secrets.2X: `2X` is not a variable name (letters, digits and `_`, not starting with a digit)",
                "s.toml:10:5: repos[0] (acme/web).secrets.F.events: `cron` is not one of push, tag, pull_request, manual, deploy",
                "s.toml:11:5: repos[0] (acme/web).secrets.G: give only one of `value`, `env` or `file`",
                "s.toml:7:13: repos[0] (acme/web).secrets.NPM_TOKEN: is empty",
                "s.toml:9:7: repos[0] (acme/web).secrets.PIN: is 3 character(s) long: secrets shorter than 4 characters cannot be masked in logs, so they are refused",
            ]
        );
    }

    #[test]
    fn a_repository_may_log_in_only_to_registries_it_names_and_they_must_have_a_login() {
        assert!(repo("").registries.is_empty(), "none unless listed");
        let err = problems(&format!("{BASE}registries = [\"r.example\"]\n"));
        assert!(
            err.contains("s.toml:6:15: repos[0] (acme/web).registries: `r.example` has no login in [[registries]] (logins: none)"),
            "{err}"
        );
    }
}
