//! Cache benchmarks, printed as ratios measured in one run:
//!
//!   cargo bench -p slipway-tests --bench caches [-- image|dirs|throughput]
//!
//! 1. image: a Dockerfile with a slow dependency layer built cold, then
//!    warm (local layer cache), then by a "fresh builder" (local images and
//!    build cache pruned) that only has the registry's cache image; each
//!    rebuild changes the app layer, as a commit does. Target: registry
//!    within 2x of warm, both >= 5x faster than cold.
//! 2. dirs: a step whose dependency fetch is slow, with a directory cache,
//!    cold vs warm. Target >= 5x.
//! 3. throughput: saving and restoring a 500 MB directory cache, MB/s.
//!
//! Needs Docker, `docker-registry` and the test images (scripts/test
//! builds them). Note that section 1 prunes the daemon's build cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway_engine::{Pipeline, RunStatus, Trigger, parse};
use slipway_runner::cache::{CacheScope, CacheStore, LOCAL_SCOPE};
use slipway_runner::{
    Backend, ContainerSpec, DockerBackend, RunEvent, RunOptions, RunSpec, StepFiles, Workspace,
    execute,
};
use slipway_tests::{BUSYBOX, Registry, TempDir};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn pipeline(src: &str) -> Pipeline {
    let parsed = parse("bench.yml", &src.replace("BUSYBOX", BUSYBOX));
    parsed
        .pipeline
        .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics))
}

fn options(workspace: Workspace, files: StepFiles) -> RunOptions {
    RunOptions {
        run_id: format!("b{}", slipway_api::ids::new_run_id()),
        jobs: 4,
        trigger: Trigger::default(),
        secrets: HashMap::new(),
        workspace,
        env: Vec::new(),
        skip: Vec::new(),
        files,
        cache_scope: CacheScope::single(LOCAL_SCOPE),
        credentials: Default::default(),
        limits: Default::default(),
    }
}

/// Runs a pipeline to the end; returns its duration and log lines.
async fn timed(
    backend: &Arc<DockerBackend>,
    p: &Pipeline,
    opts: RunOptions,
) -> (Duration, Vec<String>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let mut lines = Vec::new();
        while let Some(e) = rx.recv().await {
            if let RunEvent::Log { step, line, .. } = e {
                lines.push(format!("{step}: {line}"));
            }
        }
        lines
    });
    let started = Instant::now();
    let report = execute(backend.clone(), p, opts, tx, CancellationToken::new())
        .await
        .expect("run");
    let took = started.elapsed();
    let lines = collect.await.unwrap();
    assert_eq!(report.status, RunStatus::Success, "{lines:#?}");
    (took, lines)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn image_section(backend: &Arc<DockerBackend>) {
    println!(
        "== 1. image build: slow dependency layer (sleep 10 + 20 MB), cold vs warm local vs registry cache only"
    );
    let registry = Registry::start();
    let host = registry.host.clone();
    let src = TempDir::new("bench-image");
    src.write(
        "Dockerfile",
        &format!(
            "FROM {BUSYBOX}\nRUN echo fetching dependencies && sleep 10 && dd if=/dev/urandom of=/deps bs=1M count=20 2>/dev/null\nCOPY app.txt /app.txt\nRUN cat /app.txt > /built\n"
        ),
    );
    let p = pipeline(&format!(
        "steps:
  image:
    build:
      tags: [\"{host}/bench/web:${{SLIPWAY_RUN_ID}}\"]
      push: true
      cache_from: [\"{host}/bench/web:cache\"]
      cache_to: \"{host}/bench/web:cache\"
"
    ));
    let mut made = vec![format!("{host}/bench/web:cache")];
    let build = |n: usize, made: &mut Vec<String>| {
        src.write("app.txt", &format!("app version {n}\n"));
        let o = options(
            Workspace::Copy(src.path().to_path_buf()),
            StepFiles::default(),
        );
        made.push(format!("{host}/bench/web:{}", o.run_id));
        o
    };
    slipway_tests::forget_local_builds(&[]).await;
    let (cold, _) = timed(backend, &p, build(1, &mut made)).await;
    let (warm, warm_log) = timed(backend, &p, build(2, &mut made)).await;
    slipway_tests::forget_local_builds(&made).await;
    let (remote, remote_log) = timed(backend, &p, build(3, &mut made)).await;
    let cached = |log: &[String]| {
        log.iter()
            .any(|l| l.contains("CACHED") && l.contains("fetching dependencies"))
    };
    println!("cold build (empty caches)               {}", secs(cold));
    println!(
        "warm local cache (app changed)           {}  (dependency layer cached: {})",
        secs(warm),
        cached(&warm_log)
    );
    println!(
        "registry cache only (after a prune)      {}  (dependency layer cached: {})",
        secs(remote),
        cached(&remote_log)
    );
    println!(
        "cold / warm = {:.1}x, cold / registry = {:.1}x (targets >= 5x); registry / warm = {:.2} (target <= 2)",
        cold.as_secs_f64() / warm.as_secs_f64(),
        cold.as_secs_f64() / remote.as_secs_f64(),
        remote.as_secs_f64() / warm.as_secs_f64()
    );
    slipway_tests::forget_local_builds(&made).await;
}

async fn dirs_section(backend: &Arc<DockerBackend>) {
    println!("== 2. directory cache: a dependency fetch of 6 s + 50 MB, cold vs warm");
    let data = TempDir::new("bench-dirs");
    let store = Arc::new(CacheStore::open(&data.path().join("cache"), u64::MAX).unwrap());
    let src = TempDir::new("bench-dirs-src");
    src.write("deps.lock", "left-pad 1.0\n");
    let p = pipeline(
        "steps:
  deps:
    image: BUSYBOX
    cache:
      - key: \"deps-{{ hash 'deps.lock' }}\"
        paths: [deps]
    commands:
      - if [ ! -f deps/blob ]; then echo fetching; sleep 6; mkdir -p deps; dd if=/dev/urandom of=deps/blob bs=1M count=50 2>/dev/null; fi
      - test -f deps/blob
",
    );
    let files = || StepFiles {
        cache: Some(store.clone()),
        artifacts: None,
        shared: None,
    };
    let (cold, _) = timed(
        backend,
        &p,
        options(Workspace::Copy(src.path().to_path_buf()), files()),
    )
    .await;
    let (warm, log) = timed(
        backend,
        &p,
        options(Workspace::Copy(src.path().to_path_buf()), files()),
    )
    .await;
    assert!(
        log.iter().any(|l| l.contains("restored (exact key)")),
        "{log:#?}"
    );
    println!("cold (fetch, then save)   {}", secs(cold));
    println!("warm (restore)            {}", secs(warm));
    println!(
        "cold / warm = {:.1}x (target >= 5x)",
        cold.as_secs_f64() / warm.as_secs_f64()
    );
}

async fn throughput_section(backend: &Arc<DockerBackend>) {
    println!("== 3. cache throughput: a 500 MB directory (5 x 100 MB files)");
    let data = TempDir::new("bench-tp");
    let store = Arc::new(CacheStore::open(&data.path().join("cache"), u64::MAX).unwrap());
    let spec = |id: &str| RunSpec {
        run_id: id.into(),
        workspace: Workspace::Empty,
        helper_image: BUSYBOX.into(),
    };
    let writer = spec(&format!("b{}", slipway_api::ids::new_run_id()));
    backend.setup_run(&writer).await.unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let exit = backend
        .run_step(
            &writer,
            &ContainerSpec {
                name: "fill".into(),
                attempt: 1,
                image: BUSYBOX.into(),
                script: Some(
                    "mkdir -p big && for i in 1 2 3 4 5; do dd if=/dev/urandom of=big/$i bs=1M count=100 2>/dev/null; done".into(),
                ),
                env: Vec::new(),
                resources: Default::default(),
            },
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(exit, slipway_runner::StepExit::Exited(0));
    let started = Instant::now();
    let archive = store.temp_path("bench");
    backend
        .export_workspace(&writer, &["big".into()], &archive)
        .await
        .unwrap();
    let s = store.clone();
    let entry = tokio::task::spawn_blocking(move || s.save(LOCAL_SCOPE, "big", &archive))
        .await
        .unwrap()
        .unwrap();
    let save = started.elapsed();
    backend.teardown_run(&writer.run_id).await.unwrap();

    let reader = spec(&format!("b{}", slipway_api::ids::new_run_id()));
    backend.setup_run(&reader).await.unwrap();
    let started = Instant::now();
    let s = store.clone();
    let hit =
        tokio::task::spawn_blocking(move || s.lookup(&[LOCAL_SCOPE.into()], "big", &[], |_| {}))
            .await
            .unwrap()
            .unwrap()
            .expect("hit");
    backend
        .import_workspace(&reader, &store.blob_path(&hit.entry().blob))
        .await
        .unwrap();
    let restore = started.elapsed();
    backend.teardown_run(&reader.run_id).await.unwrap();
    let mb = entry.size as f64 / 1e6;
    println!(
        "save    {mb:.0} MB in {} = {:.0} MB/s (export from the workspace, hash, store)",
        secs(save),
        mb / save.as_secs_f64()
    );
    println!(
        "restore {mb:.0} MB in {} = {:.0} MB/s (verify hash, unpack into a new workspace)",
        secs(restore),
        mb / restore.as_secs_f64()
    );
}

fn main() {
    let wants = slipway_tests::bench_sections();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let backend = Arc::new(
            DockerBackend::connect(Duration::from_secs(5))
                .await
                .unwrap(),
        );
        if wants("image") {
            image_section(&backend).await;
        }
        if wants("dirs") {
            dirs_section(&backend).await;
        }
        if wants("throughput") {
            throughput_section(&backend).await;
        }
    });
}
