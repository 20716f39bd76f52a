//! Source checkouts for server runs: one bare mirror per repository, so a
//! later run fetches only new objects, and a cheap `--shared` clone of the
//! exact commit per run. Every fetch stamps its mirror, so mirrors of
//! repositories no run has used for a while can be found and removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot fetch `{git_ref}` from {url}: {message}")]
    Fetch {
        url: String,
        git_ref: String,
        message: String,
    },
    #[error("commit {sha} is not in {url} (fetched `{git_ref}`)")]
    UnknownCommit {
        url: String,
        git_ref: String,
        sha: String,
    },
    #[error("git {action} failed: {message}")]
    Command { action: String, message: String },
}

/// A login for a repository's git server. Git gets it through its
/// credential helper protocol from the child's environment, so it appears
/// in no URL, argument list (`/proc/*/cmdline`), log or error.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitLogin {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for GitLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLogin")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Where a repository is fetched from, and the login for it, if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remote {
    pub url: String,
    pub login: Option<GitLogin>,
}

impl Remote {
    /// A remote that needs no login.
    pub fn anonymous(url: &str) -> Remote {
        Remote {
            url: url.into(),
            login: None,
        }
    }
}

/// Git's credential helper: answers `get` with the login from its
/// environment, and only for the remote's own protocol and host, so a
/// redirect elsewhere gets nothing. The script holds no secret: it is the
/// one part that is in argv.
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get || exit 0; p= h=; while IFS= read -r l && test -n \"$l\"; do case \"$l\" in \"protocol=$SLIPWAY_GIT_PROTOCOL\") p=1 ;; \"host=$SLIPWAY_GIT_HOST\") h=1 ;; esac; done; test \"$p$h\" = 11 || exit 0; printf 'username=%s\\npassword=%s\\n' \"$SLIPWAY_GIT_USERNAME\" \"$SLIPWAY_GIT_PASSWORD\"; }; f";

/// `(protocol, host[:port])` of a URL, as git's credential protocol names them.
fn protocol_and_host(url: &str) -> Option<(&str, &str)> {
    let (protocol, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some((protocol, host))
}

/// A URL as shown to users (errors, the API, forge statuses): without its
/// userinfo, so `https://user:token@host/repo.git` shows as
/// `https://host/repo.git`.
pub fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some(info) => url.replacen(info, "", 1),
        None => url.to_string(),
    }
}

/// `user:token@` of a URL, if it has one.
fn userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let at = authority.rfind('@')?;
    let start = url.len() - rest.len();
    url.get(start..start + at + 1)
}

/// `text` (git's own messages quote the URL) without the URL's userinfo.
fn redact_in(text: &str, url: &str) -> String {
    match userinfo(url) {
        Some(info) => text.replace(info, ""),
        None => text.to_string(),
    }
}

/// A commit id as git writes it: 40 (SHA-1) or 64 (SHA-256) lowercase hex
/// digits. Anything else from a webhook or the API is refused before it
/// reaches git, where a value such as `--upload-pack=...` would be read as
/// an option and run on the host.
pub fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `name` is a ref name git accepts (`git check-ref-format`'s rules)
/// and cannot be taken for an option: no component starts with `-` or `.`,
/// none ends with `.lock`, no `..`, `@{`, `//`, control characters, space,
/// `~^:?*[\`, and it neither ends with `/` or `.` nor is `@`.
pub fn is_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && name != "@"
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && !name.contains("//")
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && !part.starts_with('-')
                && !part.ends_with(".lock")
        })
}

/// Resolves a branch, tag or full ref on a remote to `(full ref, sha)`.
/// Branches win over tags of the same name, as in git.
pub async fn resolve_ref(remote: &Remote, name: &str) -> Result<(String, String), GitError> {
    let url = remote.url.as_str();
    let out = git(
        None,
        &["ls-remote", "--heads", "--tags", "--end-of-options", url],
        "ls-remote",
        remote.login.as_ref().map(|l| (l, url)),
    )
    .await
    .map_err(|e| GitError::Fetch {
        url: redact_url(url),
        git_ref: name.into(),
        message: redact_in(&e.to_string(), url),
    })?;
    let refs: Vec<(&str, &str)> = out
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, r)| (r, sha))
        .collect();
    let wanted = [
        name.to_string(),
        format!("refs/heads/{name}"),
        format!("refs/tags/{name}"),
    ];
    wanted
        .iter()
        .find_map(|w| {
            // An annotated tag's commit is listed as `<tag>^{}`.
            let peeled = format!("{w}^{{}}");
            refs.iter()
                .find(|(r, _)| *r == peeled)
                .or_else(|| refs.iter().find(|(r, _)| r == w))
                .map(|(_, sha)| (w.clone(), sha.to_string()))
        })
        .ok_or_else(|| GitError::Fetch {
            url: redact_url(url),
            git_ref: name.into(),
            message: "no such branch or tag".into(),
        })
}

#[derive(Debug)]
pub struct Mirrors {
    root: PathBuf,
    /// One fetch at a time per mirror directory; different ones in
    /// parallel. Keyed by directory, not repository name, so removing an
    /// idle mirror can take the same lock without knowing the name.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

/// Written by every fetch: its mtime is the mirror's last use. A mirror's
/// own mtime is no guide, since a fetch that finds the commit already
/// there writes nothing.
const LAST_USED: &str = "slipway-last-used";

/// A mirror no run has fetched into for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleMirror {
    pub path: PathBuf,
    /// Bytes on disk.
    pub bytes: u64,
    /// Time since its last use.
    pub idle: std::time::Duration,
}

/// The git command for `args`: with `login` (and the URL it is for), git
/// gets it from its credential helper, the values only in its environment.
fn git_command(dir: Option<&Path>, args: &[&str], login: Option<(&GitLogin, &str)>) -> Command {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    // An empty helper first drops the server user's own helpers (a
    // credential store holding their personal tokens), whatever the login.
    cmd.args(["-c", "credential.helper="]);
    if let Some((login, url)) = login {
        let (protocol, host) = protocol_and_host(url).unwrap_or_default();
        cmd.arg("-c")
            .arg(format!("credential.helper={CREDENTIAL_HELPER}"))
            .env("SLIPWAY_GIT_PROTOCOL", protocol)
            .env("SLIPWAY_GIT_HOST", host)
            .env("SLIPWAY_GIT_USERNAME", &login.username)
            .env("SLIPWAY_GIT_PASSWORD", &login.password);
    }
    // Never prompt for credentials: a server has no one to answer.
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .kill_on_drop(true);
    cmd
}

async fn git(
    dir: Option<&Path>,
    args: &[&str],
    action: &str,
    login: Option<(&GitLogin, &str)>,
) -> Result<String, GitError> {
    let out = git_command(dir, args, login)
        .output()
        .await
        .map_err(|e| GitError::Command {
            action: action.into(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut message = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // Git never prints the password; should a server echo it back, it
        // still goes no further.
        if let Some((login, _)) = login {
            message = message.replace(&login.password, "***");
        }
        Err(GitError::Command {
            action: action.into(),
            message,
        })
    }
}

impl Mirrors {
    pub fn new(root: PathBuf) -> Mirrors {
        Mirrors {
            root,
            locks: Mutex::new(HashMap::new()),
        }
    }

    fn mirror_dir(&self, repo: &str) -> PathBuf {
        let safe: String = repo
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join(format!("{safe}.git"))
    }

    /// Makes sure `sha` is in the repository's mirror, fetching `git_ref` if not.
    pub async fn fetch(
        &self,
        repo: &str,
        remote: &Remote,
        git_ref: &str,
        sha: &str,
    ) -> Result<PathBuf, GitError> {
        let url = remote.url.as_str();
        let login = remote.login.as_ref().map(|l| (l, url));
        let mirror = self.mirror_dir(repo);
        let lock = self.lock_of(&mirror);
        let _guard = lock.lock().await;
        if !is_object_id(sha) || !is_ref_name(git_ref) {
            return Err(GitError::Fetch {
                url: redact_url(url),
                git_ref: git_ref.escape_debug().to_string(),
                message: format!(
                    "refused: `{}` is not a commit id or the ref is not a ref name",
                    sha.escape_debug()
                ),
            });
        }
        if !mirror.join("HEAD").exists() {
            tokio::fs::create_dir_all(&mirror)
                .await
                .map_err(|e| GitError::Command {
                    action: "create mirror".into(),
                    message: e.to_string(),
                })?;
            git(
                Some(&mirror),
                &["init", "--bare", "-q"],
                "init mirror",
                None,
            )
            .await?;
        }
        // Its mtime is what counts; the text is for whoever looks.
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        tokio::fs::write(mirror.join(LAST_USED), format!("{stamp}\n"))
            .await
            .map_err(|e| GitError::Command {
                action: "stamp mirror".into(),
                message: e.to_string(),
            })?;
        let has = |m: PathBuf| async move {
            git(
                Some(&m),
                &[
                    "cat-file",
                    "-e",
                    "--end-of-options",
                    &format!("{sha}^{{commit}}"),
                ],
                "cat-file",
                None,
            )
            .await
            .is_ok()
        };
        if has(mirror.clone()).await {
            return Ok(mirror);
        }
        let refspec = format!(
            "+{git_ref}:refs/slipway/{}",
            git_ref.trim_start_matches("refs/")
        );
        git(
            Some(&mirror),
            &[
                "fetch",
                "-q",
                "--no-tags",
                "--end-of-options",
                url,
                &refspec,
            ],
            "fetch",
            login,
        )
        .await
        .map_err(|e| GitError::Fetch {
            url: redact_url(url),
            git_ref: git_ref.into(),
            message: redact_in(&e.to_string(), url),
        })?;
        if !has(mirror.clone()).await {
            // A force-push may have moved the ref on; the commit itself may still be fetchable.
            let _ = git(
                Some(&mirror),
                &["fetch", "-q", "--no-tags", "--end-of-options", url, sha],
                "fetch commit",
                login,
            )
            .await;
        }
        if has(mirror.clone()).await {
            Ok(mirror)
        } else {
            Err(GitError::UnknownCommit {
                url: redact_url(url),
                git_ref: git_ref.into(),
                sha: sha.into(),
            })
        }
    }

    /// The directory mirrors live in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_of(&self, mirror: &Path) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(mirror.to_path_buf())
            .or_default()
            .clone()
    }

    /// Mirrors no fetch has used for `max_idle` or longer, removed unless
    /// `dry_run`. A mirror being fetched into right now is left alone.
    /// Blocking (walks and removes directories): call it off the runtime.
    pub fn remove_idle(
        &self,
        max_idle: std::time::Duration,
        dry_run: bool,
    ) -> std::io::Result<Vec<IdleMirror>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let now = std::time::SystemTime::now();
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() || path.extension().is_none_or(|e| e != "git") {
                continue;
            }
            let lock = self.lock_of(&path);
            let Ok(_fetching) = lock.try_lock() else {
                continue;
            };
            // Mirrors made before stamps existed count from their own mtime.
            let used = std::fs::metadata(path.join(LAST_USED))
                .or_else(|_| std::fs::metadata(&path))?
                .modified()?;
            let idle = now.duration_since(used).unwrap_or_default();
            if idle < max_idle {
                continue;
            }
            let bytes = disk_usage(&path);
            if !dry_run {
                std::fs::remove_dir_all(&path)?;
            }
            out.push(IdleMirror { path, bytes, idle });
        }
        Ok(out)
    }

    /// A file at a commit, `None` when the commit has no such file.
    pub async fn read_file(
        &self,
        repo: &str,
        sha: &str,
        path: &str,
    ) -> Result<Option<String>, GitError> {
        let mirror = self.mirror_dir(repo);
        if !is_object_id(sha) {
            return Err(GitError::Command {
                action: "show".into(),
                message: format!("`{}` is not a commit id", sha.escape_debug()),
            });
        }
        let spec = format!("{sha}:{path}");
        match git(
            Some(&mirror),
            &["show", "--end-of-options", &spec],
            "show",
            None,
        )
        .await
        {
            Ok(text) => Ok(Some(text)),
            Err(GitError::Command { message, .. })
                if message.contains("does not exist")
                    || message.contains("exists on disk, but not in") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Checks the commit out into `dest` (which must not exist), sharing the mirror's objects.
    pub async fn checkout(&self, repo: &str, sha: &str, dest: &Path) -> Result<(), GitError> {
        if !is_object_id(sha) {
            return Err(GitError::Command {
                action: "checkout".into(),
                message: format!("`{}` is not a commit id", sha.escape_debug()),
            });
        }
        let mirror = self.mirror_dir(repo);
        let (m, d) = (mirror.display().to_string(), dest.display().to_string());
        git(
            None,
            &["clone", "-q", "--shared", "--no-checkout", &m, &d],
            "clone",
            None,
        )
        .await?;
        git(
            Some(dest),
            &[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "-q",
                "--detach",
                "--end-of-options",
                sha,
            ],
            "checkout",
            None,
        )
        .await?;
        Ok(())
    }
}

/// Bytes of the files under `dir` (what is unreadable counts as nothing).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(_) => total += entry.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_credentials() {
        assert_eq!(
            redact_url("https://ci:s3cr3t-token@git.example.com/acme/web.git"),
            "https://git.example.com/acme/web.git"
        );
        assert_eq!(
            redact_url("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(redact_url("file:///srv/web.git"), "file:///srv/web.git");
        assert_eq!(
            redact_in(
                "fatal: unable to access 'https://ci:s3cr3t-token@git.example.com/acme/web.git/'",
                "https://ci:s3cr3t-token@git.example.com/acme/web.git"
            ),
            "fatal: unable to access 'https://git.example.com/acme/web.git/'"
        );
    }

    /// Issue 14: a `clone_url` with a token leaked it into `run.error`,
    /// the trigger's 422 and the forge's commit status.
    #[tokio::test]
    async fn a_failed_fetch_never_shows_the_clone_urls_token() {
        let url = "http://ci:s3cr3t-token@127.0.0.1:9/acme/web.git";
        let root = std::env::temp_dir().join(format!("slipway-git-redact-{}", std::process::id()));
        let mirrors = Mirrors::new(root.clone());
        let err = mirrors
            .fetch(
                "acme/web",
                &Remote::anonymous(url),
                "refs/heads/main",
                &"a".repeat(40),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("http://127.0.0.1:9/acme/web.git"), "{err}");
        let err = resolve_ref(&Remote::anonymous(url), "main")
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }

    fn login() -> GitLogin {
        GitLogin {
            username: "ci".into(),
            password: "s3cr3t-token".into(),
        }
    }

    /// Issue 14: a token in the URL was in git's argv, which every user of
    /// the host reads in `/proc/*/cmdline`.
    #[test]
    fn a_login_reaches_git_in_its_environment_never_its_arguments() {
        let login = login();
        let cmd = git_command(
            None,
            &["ls-remote", "https://git.example.com/acme/web.git"],
            Some((&login, "https://git.example.com/acme/web.git")),
        );
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!args.join(" ").contains("s3cr3t"), "{args:?}");
        assert_eq!(
            &args[..2],
            ["-c", "credential.helper="],
            "user helpers dropped"
        );
        let env: HashMap<String, String> = cmd
            .as_std()
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.into(), v?.to_str()?.into())))
            .collect();
        assert_eq!(env["SLIPWAY_GIT_PASSWORD"], "s3cr3t-token");
        assert_eq!(env["SLIPWAY_GIT_HOST"], "git.example.com");
        assert!(!format!("{login:?}").contains("s3cr3t"));
    }

    /// What git's credential machinery gets from the helper for a request
    /// of `protocol` and `host` (`None`: nothing, git would have to ask).
    fn fill(protocol: &str, host: &str) -> Option<String> {
        let login = login();
        let mut cmd = git_command(
            None,
            &["credential", "fill"],
            Some((&login, "https://git.example.com:8443/acme/web.git")),
        )
        .into_std();
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("git runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("protocol={protocol}\nhost={host}\n\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn the_credential_helper_answers_only_the_remotes_protocol_and_host() {
        let answer = fill("https", "git.example.com:8443").expect("an answer");
        assert!(
            answer.contains("username=ci\npassword=s3cr3t-token\n"),
            "{answer}"
        );
        assert_eq!(fill("https", "elsewhere.example.com"), None, "another host");
        assert_eq!(fill("http", "git.example.com:8443"), None, "plain http");
    }

    #[test]
    fn commit_ids_are_40_or_64_lowercase_hex_digits() {
        assert!(is_object_id("6113728f27ae82c7b1a177c8d03f9e96e0adf246"));
        assert!(is_object_id(&"a".repeat(64)));
        for bad in [
            "",
            "6113728f",
            "6113728F27AE82C7B1A177C8D03F9E96E0ADF246",
            "--upload-pack=sh -c id; git-upload-pack",
            "6113728f27ae82c7b1a177c8d03f9e96e0adf24 ",
            &"a".repeat(41),
        ] {
            assert!(!is_object_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn ref_names_follow_git_and_cannot_be_options() {
        for good in [
            "refs/heads/main",
            "refs/heads/release/1.2",
            "refs/tags/v1.0.0",
            "refs/pull/2/head",
            "refs/merge-requests/1/head",
            "feature-x",
        ] {
            assert!(is_ref_name(good), "{good}");
        }
        for bad in [
            "",
            "--upload-pack=touch x",
            "refs/heads/-x",
            "refs/heads/a..b",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x/",
            "refs/heads/x.",
            "refs//heads",
            "refs/heads/@{u}",
            "@",
            "refs/heads/a\\b",
            "refs/heads/a\nb",
        ] {
            assert!(!is_ref_name(bad), "{bad:?}");
        }
    }

    fn run_git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .expect("git runs")
            .success();
        assert!(ok, "git {args:?}");
    }

    /// Issue 14's host command execution: a webhook's `after` of
    /// `--upload-pack=...` reached `git fetch <url> <sha>` as an option.
    #[tokio::test]
    async fn a_commit_id_that_is_an_option_never_reaches_git() {
        let root = std::env::temp_dir().join(format!(
            "slipway-git-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        run_git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("f"), "x").unwrap();
        run_git(&work, &["add", "f"]);
        run_git(&work, &["commit", "-q", "-m", "one"]);
        let url = Remote::anonymous(&format!("file://{}", work.display()));
        let mirrors = Mirrors::new(root.join("mirrors"));
        let evil = "--upload-pack=touch pwned; git-upload-pack";
        let err = mirrors
            .fetch("acme/web", &url, "refs/heads/main", evil)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        let err = mirrors
            .fetch(
                "acme/web",
                &url,
                "--upload-pack=touch pwned",
                &"a".repeat(40),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        let pwned: Vec<_> = walk(&root)
            .into_iter()
            .filter(|p| p.ends_with("pwned"))
            .collect();
        assert!(pwned.is_empty(), "a command ran: {pwned:?}");
        assert!(
            mirrors
                .checkout("acme/web", evil, &root.join("co"))
                .await
                .is_err()
        );
        assert!(mirrors.read_file("acme/web", evil, "f").await.is_err());
        let _ = std::fs::remove_dir_all(root);
    }

    /// Issue 14: mirrors were never deleted, so every repository ever
    /// built (forks' pull requests included) kept its objects for good.
    #[tokio::test]
    async fn mirrors_unused_for_long_are_removed_and_used_ones_stay() {
        let root = std::env::temp_dir().join(format!(
            "slipway-git-idle-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        run_git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("f"), "x").unwrap();
        run_git(&work, &["add", "f"]);
        run_git(&work, &["commit", "-q", "-m", "one"]);
        let sha = std::process::Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        let sha = String::from_utf8(sha.stdout).unwrap().trim().to_string();
        let url = Remote::anonymous(&format!("file://{}", work.display()));
        let mirrors = Mirrors::new(root.join("mirrors"));
        let old = mirrors
            .fetch("acme/old", &url, "refs/heads/main", &sha)
            .await
            .unwrap();
        let young = mirrors
            .fetch("acme/young", &url, "refs/heads/main", &sha)
            .await
            .unwrap();
        let day = std::time::Duration::from_secs(24 * 3600);
        let last_week = std::time::SystemTime::now() - 7 * day;
        std::fs::File::options()
            .write(true)
            .open(old.join(LAST_USED))
            .unwrap()
            .set_modified(last_week)
            .unwrap();

        let listed = mirrors.remove_idle(3 * day, true).unwrap();
        assert_eq!(
            listed.iter().map(|m| &m.path).collect::<Vec<_>>(),
            [&old],
            "only the mirror idle for a week"
        );
        assert!(listed[0].bytes > 0 && listed[0].idle >= 7 * day - day);
        assert!(old.exists(), "a dry run removes nothing");

        // A fetch of a commit the mirror already has is a use too.
        std::fs::File::options()
            .write(true)
            .open(young.join(LAST_USED))
            .unwrap()
            .set_modified(last_week)
            .unwrap();
        mirrors
            .fetch("acme/young", &url, "refs/heads/main", &sha)
            .await
            .unwrap();

        let removed = mirrors.remove_idle(3 * day, false).unwrap();
        assert_eq!(removed.iter().map(|m| &m.path).collect::<Vec<_>>(), [&old]);
        assert!(!old.exists());
        assert!(young.join("HEAD").exists());
        let _ = std::fs::remove_dir_all(root);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
        out
    }
}
