//! Server benchmark, figures measured in one run:
//!
//!   cargo bench -p slipway-tests --bench server
//!
//! - webhook received -> first step's container started, p50 and p95 over
//!   50 pushes, beside the bare start of the same container (its run's
//!   network, create, start with bollard) measured in the same run;
//!   target: p50 overhead < 100 ms;
//! - the server's resident memory idle, and its peak under that load.
//!
//! Start times come from Docker's own event stream (`start` events with
//! nanosecond timestamps), so neither side times itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use slipway_tests::bench::{now_ns, percentile, rss_kib, watch_starts};
use slipway_tests::{
    BUSYBOX, TempDir, deliver, docker, free_addr, git_repo, push_body, run_view, serve_binary,
    serve_config, signal, wait_healthy,
};

const PUSHES: usize = 50;

#[tokio::main]
async fn main() {
    let d = docker().await;
    let dir = TempDir::new("bench-server");
    let pipeline = format!("steps:\n  first:\n    image: {BUSYBOX}\n    commands: ['true']\n");
    let (bare, sha) = git_repo(
        &dir,
        "master",
        &[(".slipway.yml", &pipeline), ("README", "bench\n")],
    );
    let addr = free_addr();
    let url = format!("file://{}", bare.display());
    let config = serve_config(&dir, &addr, "cancel_superseded = false\n", &url);
    let mut server = serve_binary(&config, &dir.path().join("data"));
    wait_healthy(&addr);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = rss_kib(server.id(), "VmRSS:");

    let body = push_body(&sha);
    let mut starts = watch_starts(d.clone(), "slipway.run");
    let mut overheads_ms = Vec::new();
    // One warm-up push (first fetch into the mirror), then the measured ones.
    for i in 0..=PUSHES {
        let sent = now_ns();
        let (status, text) = deliver(&addr, "push", &format!("bench-{i}"), &body);
        assert_eq!(status, 202, "{text}");
        let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["run"]
            .as_str()
            .unwrap()
            .to_string();
        // The first `start` of this run is its first step (the workspace helper is never started).
        let started = loop {
            let (run, at) = tokio::time::timeout(Duration::from_secs(60), starts.recv())
                .await
                .expect("no container start")
                .unwrap();
            if run == id {
                break at;
            }
        };
        if i > 0 {
            overheads_ms.push((started - sent) as f64 / 1e6);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while ["queued", "running", ""]
            .contains(&run_view(&addr, &id)["status"].as_str().unwrap_or(""))
        {
            assert!(Instant::now() < deadline, "run {id} did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let peak_kib = rss_kib(server.id(), "VmHWM:");
    signal(&server, "TERM");
    let _ = server.wait();

    // The bare start of the same container, measured the same way.
    let mut bare_starts = watch_starts(d.clone(), "bench.id");
    let mut bare_ms = Vec::new();
    for i in 0..PUSHES {
        let name = format!("bench-bare-{}-{i}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(BUSYBOX.into()),
            cmd: Some(vec!["true".into()]),
            labels: Some(HashMap::from([("bench.id".to_string(), name.clone())])),
            host_config: Some(bollard::models::HostConfig {
                network_mode: Some(name.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sent = now_ns();
        // Each run starts on a network of its own (issue 14); so does the
        // bare container, so the difference is the server's own work.
        d.create_network(bollard::models::NetworkCreateRequest {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        d.create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .unwrap();
        d.start_container(&name, None).await.unwrap();
        let started = loop {
            let (n, at) = tokio::time::timeout(Duration::from_secs(30), bare_starts.recv())
                .await
                .expect("no start")
                .unwrap();
            if n == name {
                break at;
            }
        };
        bare_ms.push((started - sent) as f64 / 1e6);
        d.remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
        d.remove_network(&name).await.unwrap();
    }

    overheads_ms.sort_by(f64::total_cmp);
    bare_ms.sort_by(f64::total_cmp);
    let (p50, p95) = (
        percentile(&overheads_ms, 0.5),
        percentile(&overheads_ms, 0.95),
    );
    let (b50, b95) = (percentile(&bare_ms, 0.5), percentile(&bare_ms, 0.95));
    println!(
        "== webhook received -> first step's container started ({PUSHES} pushes, one at a time)"
    );
    println!("   through slipway serve:  p50 {p50:.1} ms   p95 {p95:.1} ms");
    println!("   bare network+create+start: p50 {b50:.1} ms   p95 {b95:.1} ms");
    let over = p50 - b50;
    println!(
        "   p50 overhead above bare {over:.1} ms   (target < 100 ms)  {}",
        if over < 100.0 { "MET" } else { "NOT MET" }
    );
    println!("== server memory");
    println!(
        "   idle:                   {:.1} MiB",
        idle_kib as f64 / 1024.0
    );
    println!(
        "   peak under the load:    {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
}
