//! The runner on real Docker: workspace sharing, parallelism, failures,
//! timeouts, secrets, services, pulls and cancellation, resource limits,
//! networks of their own and the log cap, each test checking that nothing
//! labelled with its run is left behind.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use slipway_engine::{Pipeline, RunStatus, SkipReason, StepStatus, Trigger, parse};
use slipway_runner::{DockerBackend, RunEvent, RunOptions, RunReport, Workspace, execute};
use slipway_tests::{BUSYBOX, TempDir, Wedge, docker, image_id, leftovers, operator_image};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn pipeline(src: &str) -> Pipeline {
    let src = src.replace("BUSYBOX", BUSYBOX);
    let parsed = parse("test.yml", &src);
    parsed
        .pipeline
        .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics))
}

fn options(workspace: Workspace) -> RunOptions {
    RunOptions {
        run_id: format!("t{}", slipway_api::ids::new_run_id()),
        jobs: 4,
        trigger: Trigger {
            event: "push".into(),
            branch: Some("main".into()),
            ..Trigger::default()
        },
        secrets: HashMap::new(),
        workspace,
        env: vec![("SLIPWAY_COMMIT_SHA".into(), "abc123".into())],
        skip: Vec::new(),
        files: Default::default(),
        cache_scope: slipway_runner::cache::CacheScope::single(slipway_runner::cache::LOCAL_SCOPE),
        credentials: Default::default(),
        limits: Default::default(),
    }
}

struct Outcome {
    report: RunReport,
    events: Vec<RunEvent>,
}

impl Outcome {
    fn status(&self, step: &str) -> &StepStatus {
        &self
            .report
            .steps
            .iter()
            .find(|s| s.name == step)
            .expect("step")
            .status
    }

    fn log(&self, step: &str) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { step: s, line, .. } if s == step => Some(line.as_str()),
                _ => None,
            })
            .collect()
    }
}

async fn run_with(
    p: &Pipeline,
    opts: RunOptions,
    cancel: CancellationToken,
    on_event: impl Fn(&RunEvent) + Send + 'static,
) -> Outcome {
    let d = docker().await;
    let backend = Arc::new(
        DockerBackend::connect(Duration::from_secs(5))
            .await
            .expect("connect"),
    );
    let (tx, mut rx) = mpsc::channel(256);
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = rx.recv().await {
            on_event(&e);
            all.push(e);
        }
        all
    });
    let run_id = opts.run_id.clone();
    let report = execute(backend, p, opts, tx, cancel).await.expect("run");
    let events = collect.await.unwrap();
    assert_eq!(
        leftovers(&d, &run_id).await,
        Vec::<String>::new(),
        "run {run_id} left things behind"
    );
    Outcome { report, events }
}

async fn run(p: &Pipeline, opts: RunOptions) -> Outcome {
    run_with(p, opts, CancellationToken::new(), |_| {}).await
}

#[tokio::test(flavor = "multi_thread")]
async fn steps_share_a_workspace_copied_from_the_tree_which_stays_untouched() {
    let src = TempDir::new("ws");
    src.write("input.txt", "from-the-tree\n");
    let p = pipeline(
        "steps:
  write:
    image: BUSYBOX
    commands:
      - pwd
      - cat input.txt > out.txt
      - echo \"$CI $SLIPWAY_STEP $SLIPWAY_BRANCH $SLIPWAY_COMMIT_SHA\" >> out.txt
  read:
    needs: [write]
    image: BUSYBOX
    commands: [cat out.txt]
",
    );
    let o = run(&p, options(Workspace::Copy(src.path().to_path_buf()))).await;
    assert_eq!(o.report.status, RunStatus::Success, "{:?}", o.events);
    assert_eq!(o.log("write")[..2], ["+ pwd", "/workspace"]);
    assert_eq!(
        o.log("read"),
        ["+ cat out.txt", "from-the-tree", "true write main abc123"]
    );
    assert!(
        !src.path().join("out.txt").exists(),
        "the user's tree must not change"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_mode_works_on_the_tree_itself() {
    let src = TempDir::new("bind");
    let p = pipeline("steps:\n  touch: {image: BUSYBOX, commands: [echo made > made.txt]}\n");
    let o = run(&p, options(Workspace::Bind(src.path().to_path_buf()))).await;
    assert_eq!(o.report.status, RunStatus::Success);
    assert_eq!(
        std::fs::read_to_string(src.path().join("made.txt")).unwrap(),
        "made\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn independent_steps_run_at_the_same_time() {
    // Each step waits for the other's marker: they can only both succeed
    // if they run concurrently (no timing involved).
    let p = pipeline(
        "steps:
  left:
    image: BUSYBOX
    timeout: 30s
    commands: ['touch left.up', 'until [ -f right.up ]; do sleep 0.05; done']
  right:
    image: BUSYBOX
    timeout: 30s
    commands: ['touch right.up', 'until [ -f left.up ]; do sleep 0.05; done']
",
    );
    let o = run(&p, options(Workspace::Empty)).await;
    assert_eq!(o.report.status, RunStatus::Success, "{:?}", o.events);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_skips_what_needs_it_while_other_branches_finish() {
    let p = pipeline(
        "steps:
  build: {image: BUSYBOX, commands: ['echo compiling', 'exit 3', 'echo never']}
  test: {image: BUSYBOX, commands: [echo testing], needs: [build]}
  lint: {image: BUSYBOX, commands: [sleep 1, echo linted]}
",
    );
    let o = run(&p, options(Workspace::Empty)).await;
    assert_eq!(o.report.status, RunStatus::Failed);
    assert_eq!(o.status("build"), &StepStatus::Failed);
    assert_eq!(o.report.steps[0].exit_code, Some(3));
    assert_eq!(
        o.status("test"),
        &StepStatus::Skipped(SkipReason::Upstream("build".into()))
    );
    assert_eq!(o.status("lint"), &StepStatus::Success);
    assert_eq!(
        o.log("build"),
        ["+ echo compiling", "compiling", "+ exit 3", "exit code 3"]
    );
    assert!(o.log("test").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_past_its_timeout_is_stopped() {
    let p = pipeline("steps:\n  hang: {image: BUSYBOX, commands: [sleep 300], timeout: 1s}\n");
    let o = run(&p, options(Workspace::Empty)).await;
    assert_eq!(o.status("hang"), &StepStatus::TimedOut);
    assert_eq!(o.report.status, RunStatus::Failed);
    assert!(o.log("hang").contains(&"timed out after 1.0s"));
    // SIGTERM reaches the shell through the container's init: no 5 s grace wait.
    assert!(
        o.report.steps[0].duration < Duration::from_secs(5),
        "{:?}",
        o.report.steps[0].duration
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_the_step_but_never_its_log() {
    let p = pipeline(
        "steps:
  deploy:
    image: BUSYBOX
    secrets: [API_TOKEN]
    commands: ['echo \"token=$API_TOKEN\"', 'echo \"$API_TOKEN\" >&2', 'test \"$API_TOKEN\" = tok-12345']
",
    );
    let mut opts = options(Workspace::Empty);
    opts.secrets.insert("API_TOKEN".into(), "tok-12345".into());
    let o = run(&p, opts).await;
    assert_eq!(o.report.status, RunStatus::Success, "{:?}", o.log("deploy"));
    let log = o.log("deploy");
    assert!(log.contains(&"token=********"), "{log:?}");
    assert!(log.contains(&"********"), "stderr is masked too: {log:?}");
    assert!(!log.iter().any(|l| l.contains("tok-12345")), "{log:?}");
}

/// Issue 15: a step that prints its secret through a tool that encodes it
/// (base64 alone, base64 of `prefix:value` as in an auth header, with the
/// value at each of the three byte alignments, hex) shows none of those
/// forms; busybox's own `base64` and `od` do the encoding. Named
/// `secrets_...` so `cargo test --test docker_run secrets` runs it.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_printed_encoded_never_show_in_the_log() {
    let p = pipeline(
        "steps:
  leak:
    image: BUSYBOX
    secrets: [API_TOKEN]
    commands:
      - 'printf %s \"$API_TOKEN\" | base64'
      - 'printf \"u:%s\" \"$API_TOKEN\" | base64'
      - 'printf \"ci:%s\" \"$API_TOKEN\" | base64'
      - 'printf \"bot:%s\" \"$API_TOKEN\" | base64'
      - 'printf \"user:%s\" \"$API_TOKEN\" | base64'
      - 'printf %s \"$API_TOKEN\" | od -A n -t x1 | tr -d \" \\n\"; echo'
",
    );
    let secret = "tok-9f8e7d6c5b4a";
    let mut opts = options(Workspace::Empty);
    opts.secrets.insert("API_TOKEN".into(), secret.into());
    let o = run(&p, opts).await;
    assert_eq!(o.report.status, RunStatus::Success, "{:?}", o.log("leak"));
    let log = o.log("leak").join("\n");
    assert!(!log.contains(secret), "{log}");
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    // Prefix lengths 0, 2, 3, 4, 5: the value at alignments 0, 2, 0, 1, 2.
    for prefix in ["", "u:", "ci:", "bot:", "user:"] {
        let encoded = b64(&format!("{prefix}{secret}"));
        assert!(!log.contains(&encoded), "{encoded} shows: {log}");
        // The characters whose bits all come from the value: what a reader
        // could decode it from. No 6 of them in a row may be left.
        let span =
            &encoded[(8 * prefix.len()).div_ceil(6)..(8 * (prefix.len() + secret.len())) / 6];
        let shown: Vec<&str> = (0..=span.len() - 6)
            .map(|i| &span[i..i + 6])
            .filter(|w| log.contains(w))
            .collect();
        assert!(
            shown.is_empty(),
            "{prefix:?}: {shown:?} of {encoded} shows: {log}"
        );
    }
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!log.contains(&hex[4..hex.len() - 4]), "hex shows: {log}");
    assert!(log.matches("********").count() >= 6, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_are_reachable_by_name() {
    let p = pipeline(
        "services:
  web:
    image: BUSYBOX
    commands: ['mkdir -p /srv', 'echo hello-from-service > /srv/index.html', 'httpd -f -p 8080 -h /srv']
steps:
  probe:
    image: BUSYBOX
    timeout: 30s
    commands:
      - 'for i in $(seq 100); do wget -qO- http://web:8080/ && exit 0; sleep 0.1; done; exit 1'
",
    );
    let o = run(&p, options(Workspace::Empty)).await;
    assert_eq!(o.report.status, RunStatus::Success, "{:?}", o.log("probe"));
    assert!(o.events.contains(&RunEvent::ServiceStarted {
        service: "web".into()
    }));
    assert!(o.log("probe").contains(&"hello-from-service"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pull_names_the_image_and_the_registry_answer() {
    // Nothing listens on port 1: the daemon's answer is immediate.
    let p = pipeline(
        "steps:\n  a: {image: '127.0.0.1:1/nope/missing:1', commands: [true]}\n  b: {image: BUSYBOX, commands: [echo fine]}\n",
    );
    let o = run(&p, options(Workspace::Empty)).await;
    assert_eq!(o.status("a"), &StepStatus::Failed);
    assert_eq!(o.status("b"), &StepStatus::Success);
    let log = o.log("a").join("\n");
    assert!(
        log.starts_with("cannot pull image `127.0.0.1:1/nope/missing:1`: "),
        "{log}"
    );
    assert!(
        log.contains("127.0.0.1:1"),
        "the registry's answer is shown: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_stops_containers_and_removes_everything() {
    let p = pipeline(
        "services:
  sidecar: {image: BUSYBOX, commands: [sleep 300]}
steps:
  long: {image: BUSYBOX, commands: [echo started, sleep 300]}
  after: {image: BUSYBOX, commands: [true], needs: [long]}
",
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let o = run_with(&p, options(Workspace::Empty), cancel, move |e| {
        if matches!(e, RunEvent::Log { line, .. } if line == "started") {
            trigger.cancel();
        }
    })
    .await;
    assert_eq!(o.report.status, RunStatus::Cancelled);
    assert_eq!(o.status("long"), &StepStatus::Cancelled);
    assert_eq!(o.status("after"), &StepStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_pulled_from_its_registry_with_progress() {
    let registry = slipway_tests::Registry::start();
    let reference = registry.push(
        BUSYBOX,
        &format!("pull-test/busybox:{}", slipway_api::ids::new_run_id()),
    );
    // Only the registry has it now.
    slipway_tests::docker_cli(&["rmi", &reference]);
    let p = pipeline(&format!(
        "steps:\n  pulled: {{image: '{reference}', commands: [echo from-the-registry]}}\n"
    ));
    let o = run(&p, options(Workspace::Empty)).await;
    slipway_tests::docker_cli(&["rmi", &reference]);
    assert_eq!(o.report.status, RunStatus::Success, "{:?}", o.events);
    assert!(o.log("pulled").contains(&"from-the-registry"));
    let pulls: Vec<&str> = o
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::ImagePull { image, status } if *image == reference => Some(status.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        pulls.first().copied(),
        Some(format!("pulling {reference}").as_str())
    );
    assert!(
        pulls
            .iter()
            .any(|s| s.contains("Pull complete") || s.contains("Downloaded newer image")),
        "{pulls:?}"
    );
}

/// Build tests take turns: one prunes the daemon's build cache, which
/// would pull the uploaded context from under a build running beside it.
static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn output_of(o: &Outcome, step: &str) -> Option<String> {
    o.events.iter().find_map(|e| match e {
        RunEvent::StepOutput { step: s, image } if s == step => Some(image.clone()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_pushes_by_digest_and_a_fresh_builder_reuses_layers_from_the_registry() {
    let _turn = BUILDS.lock().await;
    let registry = slipway_tests::Registry::start();
    let host = registry.host.clone();
    let src = TempDir::new("build");
    src.write(
        "app/Dockerfile",
        &format!(
            "FROM {BUSYBOX}\nARG VERSION\nRUN echo slow-dependency-layer && sleep 1 && echo deps > /deps\nCOPY hello.txt /hello.txt\nRUN echo \"$VERSION\" > /version\n"
        ),
    );
    src.write("app/hello.txt", "hello\n");
    let p = pipeline(&format!(
        "steps:
  prepare:
    image: BUSYBOX
    commands: ['echo generated > app/generated.txt']
  image:
    needs: [prepare]
    build:
      context: app
      args: {{ VERSION: \"${{SLIPWAY_COMMIT_SHA}}\" }}
      tags: [\"{host}/acme/web:${{SLIPWAY_RUN_ID}}\"]
      push: true
      cache_from: [\"{host}/acme/web:cache\"]
      cache_to: \"{host}/acme/web:cache\"
"
    ));
    let first_opts = options(Workspace::Copy(src.path().to_path_buf()));
    let first_id = first_opts.run_id.clone();
    let first = run(&p, first_opts).await;
    assert_eq!(
        first.report.status,
        RunStatus::Success,
        "{:#?}",
        first.log("image")
    );
    let pushed = output_of(&first, "image").expect("the build step records what it pushed");
    let (repo, digest) = pushed.split_once('@').unwrap();
    assert_eq!(repo, format!("{host}/acme/web"));
    assert_eq!(
        registry.manifest_digest("acme/web", &first_id).as_deref(),
        Some(digest),
        "the recorded digest is the registry's"
    );
    assert!(
        first.log("image").iter().any(|l| l.contains("BuildKit")),
        "{:#?}",
        first.log("image")
    );

    // A builder with nothing local: only the registry's cache image helps.
    let refs = vec![
        format!("{host}/acme/web:{first_id}"),
        format!("{host}/acme/web:cache"),
    ];
    slipway_tests::forget_local_builds(&refs).await;
    let second_opts = options(Workspace::Copy(src.path().to_path_buf()));
    let second_id = second_opts.run_id.clone();
    let second = run(&p, second_opts).await;
    assert_eq!(
        second.report.status,
        RunStatus::Success,
        "{:#?}",
        second.log("image")
    );
    let log = second.log("image");
    assert!(
        log.iter()
            .any(|l| l.starts_with("CACHED") && l.contains("slow-dependency-layer")),
        "the slow layer came from the registry cache: {log:#?}"
    );
    let again = output_of(&second, "image").unwrap();
    assert_eq!(
        registry.manifest_digest("acme/web", &second_id).as_deref(),
        again.split_once('@').map(|(_, d)| d)
    );
    slipway_tests::forget_local_builds(&[
        format!("{host}/acme/web:{second_id}"),
        format!("{host}/acme/web:cache"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_to_an_unreachable_registry_names_it_and_fails_the_step() {
    let _turn = BUILDS.lock().await;
    let src = TempDir::new("build-fail");
    src.write("Dockerfile", &format!("FROM {BUSYBOX}\n"));
    let p = pipeline(
        "steps:
  image:
    build: { tags: [\"127.0.0.1:9/acme/web:x\"], push: true }
",
    );
    let o = run(&p, options(Workspace::Copy(src.path().to_path_buf()))).await;
    assert!(
        matches!(o.status("image"), StepStatus::Failed),
        "{:?}",
        o.status("image")
    );
    let log = o.log("image").join("\n");
    assert!(
        log.contains("cannot push `127.0.0.1:9/acme/web:x` to 127.0.0.1:9"),
        "{log}"
    );
    slipway_tests::remove_images(&["127.0.0.1:9/acme/web:x".into()]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_caches_restore_by_exact_key_then_by_prefix_and_artifacts_are_kept() {
    let data = TempDir::new("cache-data");
    let store = Arc::new(
        slipway_runner::cache::CacheStore::open(&data.path().join("cache"), u64::MAX).unwrap(),
    );
    let src = TempDir::new("cache-src");
    src.write("lock.txt", "v1\n");
    let p = pipeline(
        "steps:
  deps:
    image: BUSYBOX
    cache:
      - key: \"deps-{{ hash 'lock.txt' }}\"
        paths: [vendor/lib]
        restore_keys: [deps-]
    artifacts: [\"vendor/**\"]
    commands:
      - if [ -f vendor/lib/data ]; then echo \"HIT $(cat vendor/lib/data)\"; else echo MISS; fi
      - mkdir -p vendor/lib && cp lock.txt vendor/lib/data
",
    );
    let go = |src: &TempDir| {
        let mut o = options(Workspace::Copy(src.path().to_path_buf()));
        o.files = slipway_runner::StepFiles {
            cache: Some(store.clone()),
            artifacts: Some(data.path().join("artifacts").join(&o.run_id)),
            shared: None,
        };
        o
    };
    let first = run(&p, go(&src)).await;
    let log = first.log("deps").join("\n");
    assert!(log.contains("MISS") && log.contains("saved"), "{log}");
    let second = run(&p, go(&src)).await;
    let log = second.log("deps").join("\n");
    assert!(
        log.contains("restored (exact key)") && log.contains("HIT v1"),
        "{log}"
    );
    assert!(
        !log.contains("saved"),
        "an exact hit is not saved again: {log}"
    );
    // A new lock file: a new key, restored from the newest `deps-` entry.
    src.write("lock.txt", "v2\n");
    let third_opts = go(&src);
    let third_id = third_opts.run_id.clone();
    let third = run(&p, third_opts).await;
    let log = third.log("deps").join("\n");
    assert!(
        log.contains("restored (restore key, from `deps-") && log.contains("HIT v1"),
        "{log}"
    );
    assert!(log.contains("saved"), "{log}");
    let keys: Vec<String> = store.list().unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("deps-") && k.len() == 5 + 16),
        "{keys:?}"
    );
    // Artifacts: the files under vendor/, kept on disk with the run.
    let kept = third.events.iter().find_map(|e| match e {
        RunEvent::Artifacts { files, .. } => Some(files.clone()),
        _ => None,
    });
    assert_eq!(kept, Some(vec![("vendor/lib/data".to_string(), 3)]));
    let file = data
        .path()
        .join("artifacts")
        .join(&third_id)
        .join("deps/vendor/lib/data");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "v2\n");
}

/// Images still carrying the run's label: its builds, kept alive by any
/// name or digest reference left on them.
fn built_images_left(run_id: &str) -> String {
    slipway_tests::docker_cli(&[
        "images",
        "-q",
        "--filter",
        &format!("label=slipway.run={run_id}"),
    ])
}

/// A build whose `/whoami` says "poisoned", as a fork's pull request
/// would, then the `more` steps (YAML).
fn poisoning_build(tags: &[&str], push: bool, more: &str) -> (TempDir, Pipeline) {
    let src = TempDir::new("poison");
    src.write(
        "Dockerfile",
        &format!("FROM {BUSYBOX}\nRUN echo poisoned > /whoami\n"),
    );
    let tags: Vec<String> = tags.iter().map(|t| format!("'{t}'")).collect();
    let p = pipeline(&format!(
        "steps:\n  image:\n    build: {{ tags: [{}], push: {push} }}\n{more}",
        tags.join(", ")
    ));
    (src, p)
}

/// The step image a trusted pipeline uses: what does it say it is?
async fn whoami(image: &str) -> Outcome {
    let p = pipeline(&format!(
        "steps:\n  who: {{image: '{image}', commands: [cat /whoami]}}\n"
    ));
    run(&p, options(Workspace::Empty)).await
}

/// Issue 14: a build's `tags` were applied to the shared daemon, so a
/// fork's build replaced an operator's image that trusted runs use.
#[tokio::test(flavor = "multi_thread")]
async fn build_tags_without_push_stay_inside_the_run_that_built_them() {
    let _turn = BUILDS.lock().await;
    let n = slipway_api::ids::new_run_id();
    let victim = format!("slipway.test/victim-{n}:1");
    let nobodys = format!("slipway.test/nobodys-{n}:1");
    let genuine = operator_image(&victim, "genuine");
    // The same run may use its build under one of its tags.
    let same_run =
        format!("  use:\n    image: '{victim}'\n    needs: [image]\n    commands: [cat /whoami]\n");
    let (src, p) = poisoning_build(&[&victim, &nobodys], false, &same_run);
    let opts = options(Workspace::Copy(src.path().to_path_buf()));
    let run_id = opts.run_id.clone();
    let built = run(&p, opts).await;
    assert_eq!(
        built.report.status,
        RunStatus::Success,
        "{:?}",
        built.events
    );
    assert!(
        built.log("use").contains(&"poisoned"),
        "{:?}",
        built.log("use")
    );

    let after = (image_id(&victim), image_id(&nobodys));
    let trusted = whoami(&victim).await;
    slipway_tests::remove_images(&[victim.clone(), nobodys.clone()]).await;
    assert_eq!(
        after,
        (Some(genuine), None),
        "the daemon's names are untouched"
    );
    assert!(
        trusted.log("who").contains(&"genuine"),
        "{:?}",
        trusted.log("who")
    );
    assert_eq!(built_images_left(&run_id), "", "teardown removes the build");
}

/// Issue 14: a push tagged the daemon's name for good, even when the
/// registry refused it.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_push_gives_the_name_back_to_the_operators_image() {
    let _turn = BUILDS.lock().await;
    let registry = slipway_tests::Registry::start_with_login("ci", "not-for-forks");
    let victim = format!("{}/acme/victim:1", registry.host);
    let genuine = operator_image(&victim, "genuine");
    let (src, p) = poisoning_build(&[&victim], true, "");
    let opts = options(Workspace::Copy(src.path().to_path_buf()));
    let run_id = opts.run_id.clone();
    let pushed = run(&p, opts).await;
    let after = image_id(&victim);
    let trusted = whoami(&victim).await;
    slipway_tests::remove_images(std::slice::from_ref(&victim)).await;
    assert_eq!(pushed.status("image"), &StepStatus::Failed);
    let log = pushed.log("image").join("\n");
    assert!(log.contains(&format!("cannot push `{victim}`")), "{log}");
    assert_eq!(after, Some(genuine), "the name is given back");
    assert!(
        trusted.log("who").contains(&"genuine"),
        "{:?}",
        trusted.log("who")
    );
    assert_eq!(built_images_left(&run_id), "", "teardown removes the build");
}

/// A push that succeeds lends the name for the push alone too: the
/// registry has the build, the daemon's name still has the operator's.
#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_build_is_in_the_registry_and_the_local_name_stays_the_operators() {
    let _turn = BUILDS.lock().await;
    let registry = slipway_tests::Registry::start();
    let victim = format!("{}/acme/victim:1", registry.host);
    let genuine = operator_image(&victim, "genuine");
    let (src, p) = poisoning_build(&[&victim], true, "");
    let opts = options(Workspace::Copy(src.path().to_path_buf()));
    let run_id = opts.run_id.clone();
    let pushed = run(&p, opts).await;
    let after = image_id(&victim);
    slipway_tests::remove_images(std::slice::from_ref(&victim)).await;
    assert_eq!(
        pushed.report.status,
        RunStatus::Success,
        "{:?}",
        pushed.events
    );
    let output = output_of(&pushed, "image").expect("pushed");
    assert_eq!(
        registry.manifest_digest("acme/victim", "1").as_deref(),
        output.split_once('@').map(|(_, d)| d),
        "the registry has the build"
    );
    assert_eq!(after, Some(genuine), "the name is given back");
    assert_eq!(built_images_left(&run_id), "", "nothing keeps the build");
}

/// While a push lends a name to a build, no run resolves that name: a
/// registry that never answers holds the push (and the loan) open until
/// the step's timeout, and a run started inside that window still gets
/// the operator's image.
#[tokio::test(flavor = "multi_thread")]
async fn no_run_resolves_a_name_while_a_push_borrows_it() {
    let _turn = BUILDS.lock().await;
    // Accepts connections and never answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = silent.local_addr().expect("address").to_string();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(16).flatten() {
            open.push(conn);
        }
    });
    let victim = format!("{host}/acme/victim:1");
    let genuine = operator_image(&victim, "genuine");
    let (src, p) = poisoning_build(&[&victim], true, "");
    let mut p = p;
    p.steps[0].timeout = Some(Duration::from_secs(6));
    let pushing = Arc::new(tokio::sync::Notify::new());
    let signal = pushing.clone();
    let pusher = run_with(
        &p,
        options(Workspace::Copy(src.path().to_path_buf())),
        CancellationToken::new(),
        move |e| {
            if matches!(e, RunEvent::Log { line, .. } if line.starts_with("pushing ")) {
                signal.notify_one();
            }
        },
    );
    let inside_the_window = async {
        pushing.notified().await;
        whoami(&victim).await
    };
    let (pushed, trusted) = tokio::join!(pusher, inside_the_window);
    let after = image_id(&victim);
    slipway_tests::remove_images(std::slice::from_ref(&victim)).await;
    drop(held);
    assert_eq!(pushed.status("image"), &StepStatus::TimedOut);
    assert!(
        trusted.log("who").contains(&"genuine"),
        "{:?}",
        trusted.log("who")
    );
    assert_eq!(after, Some(genuine), "the name is given back");
}

/// What a container's cgroup allows, in one line whatever the cgroup
/// version (this machine's daemon uses v1): memory, memory plus swap, CPU
/// quota per period, processes.
const CGROUP_LIMITS: &str = "c=/sys/fs/cgroup; if [ -f $c/pids.max ]; then echo \"memory=$(cat $c/memory.max) memory+swap=$(( $(cat $c/memory.max) + $(cat $c/memory.swap.max) )) cpu=$(tr \\  / < $c/cpu.max) pids=$(cat $c/pids.max)\"; else echo \"memory=$(cat $c/memory/memory.limit_in_bytes) memory+swap=$(cat $c/memory/memory.memsw.limit_in_bytes) cpu=$(cat $c/cpu/cpu.cfs_quota_us)/$(cat $c/cpu/cpu.cfs_period_us) pids=$(cat $c/pids/pids.max)\"; fi";

fn limits(memory: u64, millicpus: u64, pids: u64) -> slipway_engine::Resources {
    slipway_engine::Resources {
        memory: Some(memory),
        millicpus: Some(millicpus),
        pids: Some(pids),
    }
}

/// Issue 14: step containers had no memory, CPU or pids limit, so one
/// pull request's fork bomb or leak took the machine from every run.
#[tokio::test(flavor = "multi_thread")]
async fn steps_and_services_get_their_limits_and_a_step_cannot_fork_past_its_pids() {
    let p = pipeline(
        &"services:
  svc:
    image: BUSYBOX
    commands: ['(LIMITS) > /workspace/svc-limits', 'sleep 300']
steps:
  defaults:
    image: BUSYBOX
    commands: ['LIMITS']
  own:
    image: BUSYBOX
    resources: { memory: 64MiB, cpus: 0.25, pids: 32 }
    commands: ['LIMITS', 'for i in $(seq 50); do [ -s svc-limits ] && break; sleep 0.1; done', 'cat svc-limits']
  forks:
    image: BUSYBOX
    resources: { pids: 20 }
    commands: ['for i in $(seq 40); do sleep 30 & done']
"
        .replace("LIMITS", CGROUP_LIMITS),
    );
    let mut opts = options(Workspace::Empty);
    opts.limits.defaults = limits(128 << 20, 500, 64);
    let o = run(&p, opts).await;
    assert_eq!(
        o.status("defaults"),
        &StepStatus::Success,
        "{:?}",
        o.log("defaults")
    );
    assert_eq!(o.status("own"), &StepStatus::Success, "{:?}", o.log("own"));
    let defaults = "memory=134217728 memory+swap=134217728 cpu=50000/100000 pids=64";
    assert!(
        o.log("defaults").contains(&defaults),
        "{:?}",
        o.log("defaults")
    );
    let own = o.log("own");
    assert!(
        own.contains(&"memory=67108864 memory+swap=67108864 cpu=25000/100000 pids=32"),
        "{own:?}"
    );
    assert!(
        own.contains(&defaults),
        "the service gets the defaults: {own:?}"
    );
    assert_eq!(o.status("forks"), &StepStatus::Failed);
    let forks = o.log("forks");
    assert!(forks.iter().any(|l| l.contains("can't fork")), "{forks:?}");
}

/// Issue 14: a run without services put its steps on the daemon's default
/// bridge, where every other such run's containers could reach them.
#[tokio::test(flavor = "multi_thread")]
async fn each_run_is_on_a_network_of_its_own_that_other_runs_cannot_reach() {
    let d = docker().await;
    let serving = pipeline(
        "steps:
  serve:
    image: BUSYBOX
    commands: ['echo hello-from-a > index.html', 'httpd -f -p 8080 -h /workspace']
",
    );
    let a = options(Workspace::Empty);
    let a_id = a.run_id.clone();
    let cancel_a = CancellationToken::new();
    let run_a = {
        let cancel = cancel_a.clone();
        tokio::spawn(async move { run_with(&serving, a, cancel, |_| {}).await })
    };
    // The serving step's address on the networks it is on, once it runs.
    let container = format!("slipway-{a_id}-serve-1");
    let mut networks = HashMap::new();
    for _ in 0..300 {
        if let Ok(c) = d.inspect_container(&container, None).await
            && c.state.and_then(|s| s.running) == Some(true)
        {
            networks = c
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&String> = networks.keys().collect();
    assert_eq!(
        names,
        [&format!("slipway-{a_id}")],
        "only its run's network"
    );
    let ip = networks
        .values()
        .next()
        .and_then(|n| n.ip_address.clone())
        .expect("an address");
    let probe = pipeline(
        "steps:
  probe:
    image: BUSYBOX
    timeout: 60s
    commands:
      - 'echo \"GET / HTTP/1.0\" | nc -w 3 $A_ADDRESS 8080 > got.txt 2>&1 || true'
      - 'cat got.txt'
      - '! grep -q hello-from-a got.txt'
",
    );
    let a_bridge = d
        .inspect_network(
            &format!("slipway-{a_id}"),
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .ok()
        .and_then(|n| n.id)
        .map(|id| format!("br-{}", &id[..12.min(id.len())]))
        .unwrap_or_default();
    let mut b = options(Workspace::Empty);
    b.env.push(("A_ADDRESS".into(), ip.clone()));
    let o = run(&probe, b).await;
    // The isolation between networks is the daemon's firewall; when it
    // fails, what the firewall held is what tells why (CI saw this once).
    let rules_after = isolation_rules();
    cancel_a.cancel();
    let a = run_a.await.unwrap();
    assert_eq!(
        a.status("serve"),
        &StepStatus::Cancelled,
        "{:?}",
        a.log("serve")
    );
    assert_eq!(
        o.report.status,
        RunStatus::Success,
        "run B reached run A's step at {ip} (bridge {a_bridge}): {:?}\nthe daemon's isolation rules then:\n{rules_after}",
        o.log("probe")
    );
}

/// The daemon's inter-network rules, for a failure message (root only).
fn isolation_rules() -> String {
    ["DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2"]
        .iter()
        .map(|chain| {
            std::process::Command::new("iptables")
                .args(["-S", chain])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_else(|e| format!("iptables -S {chain}: {e}\n"))
        })
        .collect()
}

/// Issue 14: a step's output had no cap (a 100 MB log was cut to 17 MB by
/// the daemon's rotation, with no word); now it stops at the cap with one
/// line saying so, and the step runs to its end unaffected.
#[tokio::test(flavor = "multi_thread")]
async fn a_step_past_the_log_cap_is_cut_with_one_line_and_still_succeeds() {
    let p = pipeline(
        "steps:
  noisy:
    image: BUSYBOX
    commands:
      - 'yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 1048576'
      - 'echo finished > finished.txt'
  after:
    needs: [noisy]
    image: BUSYBOX
    commands: ['cat finished.txt']
",
    );
    let mut opts = options(Workspace::Empty);
    opts.limits.log_max_bytes = Some(64 << 10);
    let o = run(&p, opts).await;
    assert_eq!(o.status("noisy"), &StepStatus::Success);
    assert!(o.log("after").contains(&"finished"), "{:?}", o.log("after"));
    let mut kept = 0;
    let mut notices = Vec::new();
    for e in &o.events {
        match e {
            RunEvent::Log { step, stream, line } if step == "noisy" => {
                if *stream == slipway_runner::LogStream::System {
                    notices.push(line.as_str());
                } else {
                    assert!(notices.is_empty(), "output after the notice: {line}");
                    kept += line.len() + 1;
                }
            }
            _ => {}
        }
    }
    assert_eq!(
        notices,
        [
            "log truncated: this step wrote more than 64.0 KiB; the rest is not kept (the step keeps running)"
        ]
    );
    assert!(
        (64 * 1024 - 200..=64 * 1024).contains(&kept),
        "{kept} bytes kept"
    );
}

/// Issue 16 (a wedged daemon is a normal failure, not a hang): the daemon
/// stops answering while a step runs. The step fails within seconds
/// saying "Docker daemon not answering", the backend reports itself
/// unhealthy, and once the daemon answers again a probe clears that.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_that_stops_answering_fails_the_step_instead_of_hanging() {
    let d = docker().await;
    let wedge = Wedge::start();
    let backend = Arc::new(wedge.backend(Duration::from_secs(2)).await);
    use slipway_runner::Backend;
    assert_eq!(backend.health(), Ok(()));
    let p = pipeline(
        "steps:
  slow:
    image: BUSYBOX
    timeout: 10m
    commands: ['echo started', 'sleep 600']
  after:
    image: BUSYBOX
    needs: [slow]
    commands: ['echo never']
",
    );
    let opts = options(Workspace::Empty);
    let run_id = opts.run_id.clone();
    let (tx, mut rx) = mpsc::channel(256);
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = rx.recv().await {
            all.push(e);
        }
        all
    });
    let run = {
        let backend = backend.clone();
        tokio::spawn(async move { execute(backend, &p, opts, tx, CancellationToken::new()).await })
    };
    let container = format!("slipway-{run_id}-slow-1");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = d.inspect_container(&container, None).await
            && c.state.and_then(|s| s.running) == Some(true)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wedge.freeze(true);
    let frozen_at = std::time::Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the run ends instead of hanging")
        .unwrap()
        .expect("run");
    let took = frozen_at.elapsed();
    let events = collect.await.unwrap();
    let log: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Log { step, line, .. } if step == "slow" => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(report.status, RunStatus::Failed, "{log:?}");
    assert_eq!(
        report
            .steps
            .iter()
            .find(|s| s.name == "slow")
            .map(|s| &s.status),
        Some(&StepStatus::Failed)
    );
    assert!(
        log.iter()
            .any(|l| l.contains("Docker daemon not answering")),
        "{log:?}"
    );
    assert!(took < Duration::from_secs(45), "it took {took:?}");
    let health = backend.health().expect_err("unhealthy while frozen");
    assert!(health.contains("Docker daemon not answering"), "{health}");

    wedge.freeze(false);
    assert_eq!(backend.probe().await, Ok(()));
    assert_eq!(backend.health(), Ok(()));
    // The teardown could not reach the daemon: it is done now, once the
    // calls held while frozen have drained (a removal still in progress
    // keeps the network busy for a moment).
    let mut tries = 0;
    while let Err(e) = backend.teardown_run(&run_id).await {
        tries += 1;
        assert!(tries < 20, "teardown: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(leftovers(&d, &run_id).await, Vec::<String>::new());
}
