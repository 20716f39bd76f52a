//! The web UI in real headless Chromium against a real server: runs appear
//! live, graph nodes change colour as steps finish, logs stream, approvers
//! approve from the board, others see no buttons. Screenshots of each page
//! land in `target/ui-screenshots/`.

use super::*;
use serde_json::json;
use slipway_tests::browser::Browser;

fn base(server: &Server) -> String {
    format!("http://{}", server.addr)
}

/// Each node's state, read from the page.
const NODE_STATES: &str = "return Object.fromEntries([...document.querySelectorAll('g.node')].map(g => [g.dataset.step, g.dataset.status]))";

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_run_appears_live_its_graph_colours_and_its_log_streams() {
    let d = docker().await;
    let repo_dir = TempDir::new("origin-ui");
    // `lint` and `test` both need `fetch`; `test` prints coloured lines
    // slowly so the page can be seen receiving them.
    let pipeline = format!(
        "steps:
  fetch:
    image: {BUSYBOX}
    commands: ['echo fetching', 'sleep 2']
  lint:
    image: {BUSYBOX}
    needs: [fetch]
    commands: ['echo lint ok']
  test:
    image: {BUSYBOX}
    needs: [fetch]
    commands:
      - 'for i in 1 2 3 4 5 6; do printf \"\\033[32mpassed case %s\\033[0m\\n\" $i; sleep 0.7; done'
      - 'printf \"\\033[1;31mone warning\\033[0m\\n\"'
"
    );
    let (bare, sha) = git_repo(&repo_dir, "master", &[(".slipway.yml", &pipeline)]);
    let server = start_with(&format!("file://{}", bare.display()), TOKENS).await;
    let browser = Browser::start(1280, 900).await;
    browser.sign_in(&base(&server), WRITER).await;
    // A marker that a reload would wipe: the row must arrive without one.
    browser.js("window.__sameDocument = true", vec![]).await;

    let (status, json) = push(&server, &sha, "ui-live").await;
    assert_eq!(status, 202, "{json}");
    let id = json["run"].as_str().unwrap().to_string();
    let row = format!("tr[data-run='{id}']");
    browser
        .wait(
            "the new run's row",
            30,
            &format!("return document.querySelector(\"{row}\")"),
        )
        .await;
    assert_eq!(
        browser
            .js("return window.__sameDocument === true", vec![])
            .await,
        json!(true),
        "the runs page reloaded instead of updating live"
    );
    browser
        .wait(
            "the row to show running",
            30,
            &format!("return document.querySelector(\"{row}\").dataset.status === 'running'"),
        )
        .await;
    browser.screenshot("runs").await;

    // Open the run while `fetch` still runs; watch the nodes change.
    browser.click(&format!("{row} a")).await;
    browser
        .wait(
            "the graph",
            10,
            "return document.querySelectorAll('g.node').length === 3",
        )
        .await;
    let edges = browser
        .js(
            "return document.querySelectorAll('.graph path.edge').length",
            vec![],
        )
        .await;
    assert_eq!(edges, json!(2), "one edge per `needs`");
    let mut seen: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut streamed = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = browser.js(NODE_STATES, vec![]).await;
        for (step, status) in states.as_object().unwrap() {
            let status = status.as_str().unwrap_or("").to_string();
            let history = seen.entry(step.clone()).or_default();
            if history.last() != Some(&status) {
                history.push(status);
            }
        }
        let test_running = seen["test"].last().is_some_and(|s| s == "running");
        // Show `test`'s log as soon as it starts, to see it stream.
        if test_running
            && browser
                .js(
                    "return !document.getElementById('log-title')?.textContent.includes('test')",
                    vec![],
                )
                .await
                == json!(true)
        {
            browser.click("g.node[data-step='test']").await;
        }
        // Its first line on the page while the step still runs (read in
        // one go, so the two facts are of the same moment).
        if browser
            .js(
                "const log = document.querySelector('.log'); \
                 return !!log && log.innerText.includes('passed case 1') \
                   && document.querySelector(\"g.node[data-step='test']\").dataset.status === 'running'",
                vec![],
            )
            .await
            == json!(true)
        {
            streamed = true;
        }
        if states.as_object().unwrap().values().all(|s| s == "success") {
            break;
        }
        assert!(Instant::now() < deadline, "steps did not finish: {seen:?}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for step in ["fetch", "test"] {
        let history = &seen[step];
        let running = history.iter().position(|s| s == "running");
        let success = history.iter().position(|s| s == "success");
        assert!(
            matches!((running, success), (Some(r), Some(s)) if r < s),
            "{step}'s node should go running -> success on the open page: {history:?}"
        );
    }
    let fill = browser
        .js(
            "return getComputedStyle(document.querySelector(\"g.node[data-step='fetch'] rect\")).fill",
            vec![],
        )
        .await;
    assert_eq!(
        fill,
        json!("rgb(220, 252, 231)"),
        "a green node for success"
    );
    assert!(
        streamed,
        "the log's first line should be shown while the step runs"
    );

    // The whole log, with its colours, line numbers and search.
    browser
        .wait(
            "the last log line",
            10,
            "return document.querySelector('.log').innerText.includes('one warning')",
        )
        .await;
    let colours = browser
        .js(
            "return [...document.querySelectorAll('.log .line .tx span')].map(s => [s.textContent, s.className])",
            vec![],
        )
        .await;
    assert!(
        colours
            .as_array()
            .unwrap()
            .contains(&json!(["passed case 3", "f2"])),
        "green ANSI text becomes class f2: {colours}"
    );
    assert!(
        colours
            .as_array()
            .unwrap()
            .contains(&json!(["one warning", "a-b f1"])),
        "bold red: {colours}"
    );
    let numbers = browser
        .js(
            "return [...document.querySelectorAll('.log .ln')].map(a => a.textContent).join(',')",
            vec![],
        )
        .await;
    assert_eq!(numbers, json!("1,2,3,4,5,6,7,8,9"));
    browser.type_into("#log-search", "case 4").await;
    browser
        .wait(
            "the search count",
            5,
            "return document.getElementById('log-found').textContent === '1 matching line'",
        )
        .await;
    browser.type_into("#log-search", "\u{E007}").await; // Enter: next match
    browser
        .wait(
            "the current match",
            5,
            "return document.querySelector('.log mark.current')?.textContent === 'case 4'",
        )
        .await;
    // A line's number links to it; the link survives a reload.
    browser.click("#L5 .ln").await;
    let here = browser.js("return location.href", vec![]).await;
    let here = here.as_str().unwrap().to_string();
    assert!(here.ends_with(&format!("#/runs/{id}/test/L5")), "{here}");
    browser.goto("about:blank").await;
    browser.goto(&here).await;
    browser
        .wait(
            "line 5 marked after a reload",
            10,
            "return document.querySelector('.line.target')?.id === 'L5'",
        )
        .await;
    browser.screenshot("run").await;

    // Rerun, then cancel the new run, with the page's buttons.
    browser.click("#rerun").await;
    let rerun = browser
        .wait(
            "the rerun's page",
            10,
            &format!("const m = location.hash.match(/^#\\/runs\\/([^/]+)$/); return m && m[1] !== '{id}' && m[1]"),
        )
        .await;
    let rerun = rerun.as_str().unwrap().to_string();
    browser
        .wait(
            "the rerun running",
            30,
            "return document.body.dataset.runStatus === 'running' && document.getElementById('cancel')",
        )
        .await;
    browser.click("#cancel").await;
    browser
        .wait(
            "the rerun cancelled",
            30,
            "return document.body.dataset.runStatus === 'cancelled'",
        )
        .await;
    assert_eq!(wait_done(&server.store, &rerun).await.status, "cancelled");

    // A reader sees the run, and no button to change it.
    browser.sign_out().await;
    browser.sign_in(&base(&server), READER).await;
    browser
        .goto(&format!("{}/#/runs/{id}/test", base(&server)))
        .await;
    browser
        .wait(
            "the log as a reader",
            10,
            "return document.querySelector('.log .line')",
        )
        .await;
    let buttons = browser
        .js(
            "return ['rerun', 'rerun-failed', 'cancel'].filter(id => document.getElementById(id))",
            vec![],
        )
        .await;
    assert_eq!(buttons, json!([]), "a reader gets no run actions");
    browser.screenshot("run-reader").await;
    browser.close().await;
    server.shutdown.cancel();
    assert_eq!(leftovers(&d, &id).await, Vec::<String>::new());
    assert_eq!(leftovers(&d, &rerun).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_approves_on_the_board_and_the_digest_moves_while_others_see_no_button() {
    use super::promotion::{build_into_dev, config, env, pipeline, token};
    docker().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let repo_dir = TempDir::new("origin-ui-promote");
    let (bare, sha) = git_repo(
        &repo_dir,
        "master",
        &[
            (".slipway.yml", &pipeline(&host)),
            (
                "Dockerfile",
                &format!("FROM {BUSYBOX}\nRUN echo ui > /app\n"),
            ),
        ],
    );
    let server = start_with(
        &format!("file://{}", bare.display()),
        &config(&host, 1, "approvals = 1\napprovers = [\"carol\"]"),
    )
    .await;
    let digest = build_into_dev(&server, &registry, &sha).await;
    let staging = "document.querySelector(\"article[data-env='staging']\")";
    let browser = Browser::start(1280, 1000).await;

    // dave may write but approves nothing: he can ask, not approve.
    browser.sign_in(&base(&server), token("dave")).await;
    browser
        .goto(&format!("{}/#/environments", base(&server)))
        .await;
    browser
        .wait(
            "dev's digest on the board",
            10,
            &format!(
                "return document.querySelector(\"article[data-env='dev'] .now\")?.dataset.digest === '{digest}'"
            ),
        )
        .await;
    browser.click("#request-staging").await;
    let pending = browser
        .wait(
            "the pending promotion",
            10,
            &format!("return {staging}.querySelector('.pending')?.dataset.promotion"),
        )
        .await;
    let pending = pending.as_str().unwrap().to_string();
    let approve = format!("#approve-{pending}");
    let no_buttons = format!(
        "return !document.querySelector('{approve}') && !document.querySelector('#reject-{pending}')"
    );
    assert_eq!(
        browser.js(&no_buttons, vec![]).await,
        json!(true),
        "dave sees no approve button"
    );
    browser.screenshot("environments-requested").await;

    // carol approves prod only: no button on staging either.
    browser.sign_out().await;
    browser.sign_in(&base(&server), token("carol")).await;
    browser
        .goto(&format!("{}/#/environments", base(&server)))
        .await;
    browser
        .wait(
            "the pending promotion",
            10,
            &format!("return {staging}.querySelector('.pending')"),
        )
        .await;
    assert_eq!(
        browser.js(&no_buttons, vec![]).await,
        json!(true),
        "carol sees no approve button"
    );

    // alice approves staging, with a comment; the board moves the digest.
    browser.sign_out().await;
    browser.sign_in(&base(&server), token("alice")).await;
    browser
        .goto(&format!("{}/#/environments", base(&server)))
        .await;
    browser
        .wait(
            "alice's approve button",
            10,
            &format!("return document.querySelector('{approve}')"),
        )
        .await;
    browser
        .type_into(&format!("#comment-{pending}"), "ship it")
        .await;
    browser.screenshot("environments-approver").await;
    browser.click(&approve).await;
    browser
        .wait(
            "staging's new digest on the board",
            90,
            &format!("return {staging}.querySelector('.now')?.dataset.digest === '{digest}'"),
        )
        .await;
    assert_eq!(
        env(&server, "staging").await["current"]["digest"],
        digest.as_str()
    );
    assert_eq!(
        registry
            .manifest_digest("acme/web-staging", "staging")
            .as_deref(),
        Some(digest.as_str())
    );
    let audit = browser
        .wait(
            "the approval in the audit trail",
            10,
            "const rows = [...document.querySelectorAll('#audit tbody tr')].map(r => r.innerText); \
             return rows.some(r => r.includes('approved') && r.includes('ship it') && r.includes('alice')) && rows",
        )
        .await;
    assert!(audit.to_string().contains("promoted"), "{audit}");
    browser.screenshot("environments").await;

    // At phone width nothing runs off the side.
    browser.client.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = browser
        .js(
            "return document.documentElement.scrollWidth - window.innerWidth",
            vec![],
        )
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "wider than a phone by {overflow}px"
    );
    browser.screenshot("environments-phone").await;
    browser.close().await;
    server.shutdown.cancel();
}
