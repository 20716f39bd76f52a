//! Whether a run is trusted: whether its code is the repository's own. An
//! untrusted run (a pull request from a fork, or from a fork since
//! deleted) gets nothing the server holds for the repository: no registry
//! logins, and images it builds are never promoted.

use crate::store::SourceRecord;

/// A run's trust, and the reason shown with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub trusted: bool,
    pub why: &'static str,
}

/// The trust of a run of `source` (`None`: a local `slipway run`).
pub fn trust(source: Option<&SourceRecord>) -> Trust {
    let (trusted, why) = match source {
        None => (true, "a local run"),
        Some(s) if s.from_fork => (
            false,
            "a pull request from a fork: its code is not the repository's own",
        ),
        Some(s) if s.pull_request.is_some() => {
            (true, "a pull request from a branch of the repository")
        }
        Some(_) => (true, "the repository's own branch, tag or commit"),
    };
    Trust { trusted, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(pull_request: Option<u64>, from_fork: bool) -> SourceRecord {
        SourceRecord {
            repo: "acme/web".into(),
            git_ref: "refs/heads/main".into(),
            sha: "a".repeat(40),
            tag: None,
            pull_request,
            pr_target_branch: None,
            from_fork,
            delivery: None,
            author: None,
        }
    }

    #[test]
    fn only_code_from_forks_is_untrusted() {
        assert!(trust(None).trusted);
        assert!(trust(Some(&source(None, false))).trusted);
        assert!(trust(Some(&source(Some(2), false))).trusted);
        let fork = trust(Some(&source(Some(2), true)));
        assert!(!fork.trusted);
        assert!(fork.why.contains("fork"));
    }
}
