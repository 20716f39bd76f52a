//! Any bytes as a webhook body, under every provider and the events each
//! one's classifier tells apart: what `POST /hooks/{provider}` does with a
//! delivery (`api/src/http/hooks.rs`: subject, verify, event name, delivery
//! id, classify). Nothing may panic, overflow the stack or hang, and a
//! build is only ever asked for a commit id and ref git cannot misread.

#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway_api::config::Provider;
use slipway_api::forge::webhook::{self, Headers, Subject, Verdict};

/// Hooks are handled on tokio workers, whose stack is 2 MiB (libFuzzer's
/// main thread has 8 MiB).
const SERVER_STACK: usize = 2 * 1024 * 1024;

const SECRET: &str = "fuzz-webhook-secret";

/// Each provider with the event header it sends and the events its
/// classifier handles, plus one it ignores.
const COMBINATIONS: &[(Provider, &str, &[&str])] = &[
    (
        Provider::Github,
        "x-github-event",
        &["ping", "push", "pull_request", "delete", "fuzz"],
    ),
    (
        Provider::Gitea,
        "x-gitea-event",
        &["push", "pull_request", "fuzz"],
    ),
    (
        Provider::Forgejo,
        "x-forgejo-event",
        &["push", "pull_request", "fuzz"],
    ),
    (
        Provider::Gitlab,
        "x-gitlab-event",
        &[
            "Push Hook",
            "Tag Push Hook",
            "Merge Request Hook",
            "System Hook",
        ],
    ),
];

struct FakeHeaders(Vec<(&'static str, String)>);

impl Headers for FakeHeaders {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The headers the provider would send for `body` signed with `secret`.
fn signed(
    provider: Provider,
    event_header: &'static str,
    event: &str,
    secret: &str,
    body: &[u8],
) -> FakeHeaders {
    let github = webhook::sign_github(secret, body);
    let hex = github.trim_start_matches("sha256=").to_string();
    let signature = match provider {
        Provider::Github => ("x-hub-signature-256", github),
        Provider::Gitea => ("x-gitea-signature", hex),
        Provider::Forgejo => ("x-forgejo-signature", hex),
        Provider::Gitlab => ("x-gitlab-token", secret.to_string()),
    };
    FakeHeaders(vec![signature, (event_header, event.to_string())])
}

fuzz_target!(|data: &[u8]| {
    let body = data.to_vec();
    std::thread::Builder::new()
        .stack_size(SERVER_STACK)
        .spawn(move || check(&body))
        .expect("a thread")
        .join()
        .expect("the check panicked");
});

fn check(body: &[u8]) {
    for &(provider, event_header, events) in COMBINATIONS {
        match webhook::subject(provider, body) {
            Ok(Subject::Repository(name) | Subject::Organization(name)) => {
                let _ = name.len();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        for &event in events {
            let headers = signed(provider, event_header, event, SECRET, body);
            assert_eq!(webhook::verify(provider, SECRET, &headers, body), Ok(()));
            let forged = signed(provider, event_header, event, "another secret", body);
            assert!(webhook::verify(provider, SECRET, &forged, body).is_err());
            assert_eq!(
                webhook::event_name(provider, &headers).as_deref(),
                Some(event)
            );
            assert!(!webhook::delivery_id(provider, &headers, body).is_empty());
            match webhook::classify(provider, event, body) {
                Ok(Verdict::Build(build)) => {
                    // These reach `git fetch` as arguments.
                    assert!(slipway_runner::git::is_object_id(&build.sha), "{build:?}");
                    assert!(
                        slipway_runner::git::is_ref_name(&build.git_ref),
                        "{build:?}"
                    );
                    assert!(
                        ["push", "tag", "pull_request"].contains(&build.event.as_str()),
                        "{build:?}"
                    );
                }
                Ok(Verdict::Ping | Verdict::Ignored(_) | Verdict::Closed { .. }) => {}
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
}
