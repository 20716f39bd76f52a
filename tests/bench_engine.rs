//! Engine benchmarks, printed as ratios measured in one run:
//!
//!   cargo bench -p slipway-tests --bench engine
//!
//! 1. overhead: a chain of 20 trivial steps through the engine (and the
//!    store, as `slipway run` does) vs the same 20 containers created,
//!    started, waited and removed directly with bollard (target <= 1.05);
//! 2. parallelism: 8 independent `sleep 1` steps with 8 jobs vs one such
//!    step (target <= 1.3);
//! 3. planning: a generated 2,000-step DAG parsed, planned and run on the
//!    fake backend (target < 50 us per step).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use slipway_api::Store;
use slipway_api::runs::record::{Recorder, new_run};
use slipway_engine::{Pipeline, RunStatus, Trigger, parse};
use slipway_runner::script::step_script;
use slipway_runner::{
    Backend, DockerBackend, FakeBackend, RunEvent, RunOptions, Workspace, execute,
};
use slipway_tests::{BUSYBOX, TempDir, docker};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 3;

fn pipeline(src: &str) -> Pipeline {
    let parsed = parse("bench.yml", src);
    parsed
        .pipeline
        .unwrap_or_else(|| panic!("{:?}", parsed.diagnostics))
}

fn options(jobs: usize) -> RunOptions {
    RunOptions {
        run_id: format!("b{}", slipway_api::ids::new_run_id()),
        jobs,
        trigger: Trigger::default(),
        secrets: HashMap::new(),
        workspace: Workspace::Empty,
        env: Vec::new(),
        skip: Vec::new(),
        files: Default::default(),
        cache_scope: slipway_runner::cache::CacheScope::single(slipway_runner::cache::LOCAL_SCOPE),
        credentials: Default::default(),
        limits: Default::default(),
    }
}

/// A run through the engine, recorded in the store as the CLI does.
async fn engine_run<B: Backend>(
    backend: Arc<B>,
    p: &Pipeline,
    opts: RunOptions,
    store: Option<&Store>,
) -> Duration {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel(1024);
    let mut recorder = store.map(|s| {
        s.put_run(&new_run(&opts.run_id, p, "bench.yml", "push", None))
            .unwrap();
        Recorder::new(s.clone(), &opts.run_id)
    });
    let consume = async {
        while let Some(e) = rx.recv().await {
            if let Some(r) = recorder.as_mut() {
                r.apply(&e).unwrap();
            }
            if let RunEvent::RunFinished { status, .. } = e {
                assert_eq!(status, RunStatus::Success);
            }
        }
    };
    let (report, ()) = tokio::join!(
        execute(backend, p, opts, tx, CancellationToken::new()),
        consume
    );
    assert_eq!(report.unwrap().status, RunStatus::Success);
    started.elapsed()
}

/// The same containers as the engine makes for `n` steps running `command`,
/// driven directly: create, start, wait, remove; one after another, or all
/// at once when `parallel`. With `network`, on a network made for them
/// (as the engine gives each run since issue 14), else on the default bridge.
async fn bare_containers(
    docker: &Docker,
    n: usize,
    command: &str,
    parallel: bool,
    network: bool,
) -> Duration {
    let started = Instant::now();
    let id = slipway_api::ids::new_run_id();
    let volume = format!("bench-{id}");
    let labels = HashMap::from([("slipway.run".to_string(), format!("bench-{id}"))]);
    let network_name = network.then(|| format!("bench-{id}"));
    if let Some(name) = &network_name {
        docker
            .create_network(bollard::models::NetworkCreateRequest {
                name: name.clone(),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(volume.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let script = step_script(&[command.to_string()]);
    let one = |i: usize| {
        let name = format!("bench-{id}-{i}");
        let (labels, volume, script) = (labels.clone(), volume.clone(), script.clone());
        let network_mode = network_name.clone();
        async move {
            let body = ContainerCreateBody {
                image: Some(BUSYBOX.into()),
                entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
                cmd: Some(vec![script.clone()]),
                working_dir: Some("/workspace".into()),
                labels: Some(labels.clone()),
                host_config: Some(HostConfig {
                    mounts: Some(vec![Mount {
                        target: Some("/workspace".into()),
                        source: Some(volume.clone()),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    }]),
                    init: Some(true),
                    network_mode,
                    ..Default::default()
                }),
                ..Default::default()
            };
            docker
                .create_container(
                    Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                    body,
                )
                .await
                .unwrap();
            docker.start_container(&name, None).await.unwrap();
            let exit = docker
                .wait_container(&name, None)
                .next()
                .await
                .unwrap()
                .unwrap();
            assert_eq!(exit.status_code, 0);
            docker
                .remove_container(
                    &name,
                    Some(
                        RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build(),
                    ),
                )
                .await
                .unwrap();
        }
    };
    if parallel {
        futures_util::future::join_all((0..n).map(one)).await;
    } else {
        for i in 0..n {
            one(i).await;
        }
    }
    docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .unwrap();
    if let Some(name) = &network_name {
        docker.remove_network(name).await.unwrap();
    }
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn chain(n: usize) -> String {
    let mut s = String::from("name: chain\nsteps:\n");
    for i in 0..n {
        let needs = if i == 0 {
            String::new()
        } else {
            format!(", needs: [s{}]", i - 1)
        };
        let _ = writeln!(s, "  s{i}: {{image: {BUSYBOX}, commands: ['true']{needs}}}");
    }
    s
}

/// A layered DAG: 40 steps a layer, each needing up to three of the layer above.
fn generated_dag(n: usize) -> String {
    let mut s = String::from("name: big\nsteps:\n");
    let width = 40;
    for i in 0..n {
        let layer = i / width;
        let needs: Vec<String> = if layer == 0 {
            Vec::new()
        } else {
            let base = (layer - 1) * width;
            let mut v: Vec<usize> = [i * 7, i * 13 + 5, i * 31 + 11]
                .iter()
                .map(|x| base + x % width)
                .collect();
            v.sort_unstable();
            v.dedup();
            v.into_iter().map(|j| format!("s{j}")).collect()
        };
        let _ = writeln!(
            s,
            "  s{i}: {{image: x, commands: ['true'], needs: [{}]}}",
            needs.join(", ")
        );
    }
    s
}

fn main() {
    // `cargo bench ... -- planning` runs only the sections named.
    let wants = slipway_tests::bench_sections();
    if wants("overhead") || wants("parallel") {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(docker_sections(wants("overhead"), wants("parallel")));
    }
    if wants("planning") {
        planning();
    }
}

async fn docker_sections(overhead: bool, parallel: bool) {
    let d = docker().await;
    let backend = Arc::new(
        DockerBackend::connect(Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let data = TempDir::new("bench");
    let store = Store::open(&data.path().join("data")).unwrap();

    if overhead {
        println!(
            "== 1. engine overhead: chain of 20 `true` steps ({ROUNDS} rounds, alternating, medians)"
        );
        let p = pipeline(&chain(20));
        // Warm-up: page cache, daemon, image metadata.
        bare_containers(&d, 2, "true", false, true).await;
        engine_run(
            backend.clone(),
            &pipeline(&chain(2)),
            options(1),
            Some(&store),
        )
        .await;
        let (mut engine, mut bare, mut bridge) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            bare.push(bare_containers(&d, 20, "true", false, true).await);
            bridge.push(bare_containers(&d, 20, "true", false, false).await);
            engine.push(engine_run(backend.clone(), &p, options(1), Some(&store)).await);
        }
        let (e, b, bridge) = (median(engine), median(bare), median(bridge));
        let ratio1 = e.as_secs_f64() / b.as_secs_f64();
        println!(
            "   bare bollard, on a network of the run's own: {}  ({:.1} ms per container)",
            ms(b),
            b.as_secs_f64() * 1000.0 / 20.0
        );
        println!(
            "   bare bollard, on the default bridge:         {}  ({:.1} ms per container; the run's own network costs {:.3}x)",
            ms(bridge),
            bridge.as_secs_f64() * 1000.0 / 20.0,
            b.as_secs_f64() / bridge.as_secs_f64()
        );
        println!("   through engine:   {}", ms(e));
        println!(
            "   ratio engine/bare (same network) {ratio1:.3}   (target <= 1.05)  {}",
            verdict(ratio1 <= 1.05)
        );
    }
    if !parallel {
        return;
    }
    println!("== 2. parallelism: 8 independent `sleep 1` steps, --jobs 8, vs one");
    let one = pipeline(&format!(
        "steps:\n  s: {{image: {BUSYBOX}, commands: ['sleep 1']}}\n"
    ));
    let mut eight_src = String::from("steps:\n");
    for i in 0..8 {
        let _ = writeln!(
            eight_src,
            "  s{i}: {{image: {BUSYBOX}, commands: ['sleep 1']}}"
        );
    }
    let eight = pipeline(&eight_src);
    let t1 = median(vec![
        engine_run(backend.clone(), &one, options(8), Some(&store)).await,
        engine_run(backend.clone(), &one, options(8), Some(&store)).await,
    ]);
    let t8 = median(vec![
        engine_run(backend.clone(), &eight, options(8), Some(&store)).await,
        engine_run(backend.clone(), &eight, options(8), Some(&store)).await,
    ]);
    let ratio2 = t8.as_secs_f64() / t1.as_secs_f64();
    // The same through bollard alone: what the daemon itself allows here.
    let b1 = median(vec![
        bare_containers(&d, 1, "sleep 1", true, true).await,
        bare_containers(&d, 1, "sleep 1", true, true).await,
    ]);
    let b8 = median(vec![
        bare_containers(&d, 8, "sleep 1", true, true).await,
        bare_containers(&d, 8, "sleep 1", true, true).await,
    ]);
    let bare_ratio = b8.as_secs_f64() / b1.as_secs_f64();
    println!(
        "   one step:         {}   (bare bollard: {})",
        ms(t1),
        ms(b1)
    );
    println!(
        "   eight steps:      {}   (bare bollard, all at once: {})",
        ms(t8),
        ms(b8)
    );
    println!(
        "   ratio 8/1         {ratio2:.3}   (target <= 1.3)  {}",
        verdict(ratio2 <= 1.3)
    );
    println!("   bare ratio 8/1    {bare_ratio:.3}   (the daemon's own limit on this machine)");
}

fn planning() {
    let rt = tokio::runtime::Runtime::new().unwrap();

    println!("== 3. planning: generated 2,000-step DAG on the fake backend");
    let src = generated_dag(2000);
    let t = Instant::now();
    let big = pipeline(&src);
    let parse_time = t.elapsed();
    let t = Instant::now();
    let plan = slipway_engine::Plan::new(&big).unwrap();
    let plan_time = t.elapsed();
    assert_eq!(plan.len(), 2000);
    let fake = FakeBackend::new();
    let t = Instant::now();
    rt.block_on(engine_run(fake, &big, options(64), None));
    let run_time = t.elapsed();
    let per_step = (parse_time + run_time).as_secs_f64() * 1e6 / 2000.0;
    println!("   parse+validate:   {}", ms(parse_time));
    println!("   plan alone:       {}", ms(plan_time));
    println!(
        "   plan+schedule:    {}  (a full run on the fake backend)",
        ms(run_time)
    );
    println!(
        "   per step          {per_step:.1} us   (target < 50 us)  {}",
        verdict(per_step < 50.0)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "NOT MET" }
}
