//! Runner benchmark, figures measured in one run:
//!
//!   cargo bench -p slipway-tests --bench runners
//!
//! - webhook received -> first step's container started, p50/p95 over 30
//!   pushes each: through the built-in runner, through a `slipway runner`
//!   process (loopback), and the bare network+create+start of the same
//!   container; targets: built-in within 50 ms of bare, remote within
//!   50 ms of built-in. Start times come from Docker's event stream.
//! - dispatch: 1,000 queued runs handed to 100 simulated runners (HTTP
//!   clients of the real protocol that claim, then report the run finished
//!   at once; no containers): runs handed out per second, and each
//!   successful claim's round trip p50/p99 (this includes the server's
//!   preparation of the run: reading the commit's pipeline, trust, grant);
//!   targets >= 500 runs/s, p99 < 50 ms.
//! - the server's resident memory with those 100 runners connected.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::{Value, json};
use slipway_tests::bench::{now_ns, percentile, rss_kib, watch_starts};
use slipway_tests::{
    BUSYBOX, READER, TOKENS, TempDir, deliver, docker, git_repo, http, push_body, repo_config,
    run_view, serve_binary, signal, slipway_bin, wait_healthy,
};

const PUSHES: usize = 30;
const RUNNERS: usize = 100;
const QUEUED: usize = 1000;
const ADMIN: &str = "admin-token-0123456789";

struct Server {
    addr: String,
    child: Child,
    _dir: TempDir,
}

fn server(tag: &str, server_lines: &str, pipeline: &str) -> (Server, String) {
    let dir = TempDir::new(tag);
    let (bare, sha) = git_repo(&dir, "master", &[(".slipway.yml", pipeline)]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.write(
        "slipway.toml",
        &format!(
            "[server]\nlisten = \"{addr}\"\ncancel_superseded = false\nsecrets_key = \"{}\"\n{server_lines}{TOKENS}[[tokens]]\nuser = \"ada\"\ntoken = \"{ADMIN}\"\nscope = \"admin\"\n{}",
            dir.path().join("secrets.key").display(),
            repo_config(&format!("file://{}", bare.display()))
        ),
    );
    let child = serve_binary(&config, &dir.path().join("data"));
    wait_healthy(&addr);
    (
        Server {
            addr,
            child,
            _dir: dir,
        },
        sha,
    )
}

fn add_runner(addr: &str, name: &str) -> String {
    let (status, body) = http(
        "POST",
        addr,
        "/api/v1/runners",
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        json!({ "name": name }).to_string().as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn push(addr: &str, sha: &str, delivery: &str) -> String {
    let (status, text) = deliver(addr, "push", delivery, &push_body(sha));
    assert_eq!(status, 202, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Webhook -> first container start for `PUSHES` pushes, one at a time;
/// also each run's phases (name, ms), as the run reports them.
async fn webhook_to_container(
    d: &bollard::Docker,
    addr: &str,
    sha: &str,
    tag: &str,
) -> (Vec<f64>, Vec<Vec<(String, f64)>>) {
    let mut starts = watch_starts(d.clone(), "slipway.run");
    let mut out = Vec::new();
    let mut phases = Vec::new();
    for i in 0..=PUSHES {
        let sent = now_ns();
        let id = push(addr, sha, &format!("{tag}-{i}"));
        let started = loop {
            let (run, at) = tokio::time::timeout(Duration::from_secs(60), starts.recv())
                .await
                .expect("no container start")
                .unwrap();
            if run == id {
                break at;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let view = loop {
            let view = run_view(addr, &id);
            if !["queued", "running", ""].contains(&view["status"].as_str().unwrap_or("")) {
                break view;
            }
            assert!(Instant::now() < deadline, "run {id} did not end");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // The first push fills the mirror: a warm-up.
        if i > 0 {
            out.push((started - sent) as f64 / 1e6);
            phases.push(
                view["phases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p["phase"].as_str().unwrap_or("?").to_string(),
                            p["micros"].as_u64().unwrap_or(0) as f64 / 1e3,
                        )
                    })
                    .collect(),
            );
        }
    }
    out.sort_by(f64::total_cmp);
    (out, phases)
}

/// Each phase's p50, in the order runs report them, and what is left of
/// the p50 total: the first container's create and start, and handovers.
fn print_phases(label: &str, total: &[f64], runs: &[Vec<(String, f64)>]) {
    let mut names: Vec<String> = Vec::new();
    for run in runs {
        for (name, _) in run {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let mut line = format!("   {label:<9}");
    let mut sum = 0.0;
    for name in &names {
        let mut v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms))
            .collect();
        v.sort_by(f64::total_cmp);
        let p50 = percentile(&v, 0.5);
        sum += p50;
        line.push_str(&format!(" {name} {p50:.1} |"));
    }
    line.push_str(&format!(
        " rest (first container create+start, handovers) {:.1} | total {:.1}",
        percentile(total, 0.5) - sum,
        percentile(total, 0.5)
    ));
    println!("{line}");
}

async fn bare_starts(d: &bollard::Docker) -> Vec<f64> {
    let mut starts = watch_starts(d.clone(), "bench.id");
    let mut out = Vec::new();
    for i in 0..PUSHES {
        let name = format!("bench-runners-bare-{}-{i}", std::process::id());
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
            let (n, at) = tokio::time::timeout(Duration::from_secs(30), starts.recv())
                .await
                .expect("no start")
                .unwrap();
            if n == name {
                break at;
            }
        };
        out.push((started - sent) as f64 / 1e6);
        d.remove_container(
            &name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();
        d.remove_network(&name).await.unwrap();
    }
    out.sort_by(f64::total_cmp);
    out
}

/// One simulated runner: claims until `done` reaches `total`, reports
/// each run finished at once; returns each successful claim's round trip.
fn simulated_runner(addr: String, token: String, done: Arc<AtomicUsize>, total: usize) -> Vec<f64> {
    let mut latencies = Vec::new();
    let auth = format!("Bearer {token}");
    let hello = json!({ "labels": [], "capacity": 1, "version": "bench" }).to_string();
    while done.load(Ordering::SeqCst) < total {
        let asked = Instant::now();
        let (status, body) = http(
            "POST",
            &addr,
            "/api/v1/runner/claim?wait_ms=1000",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            hello.as_bytes(),
        );
        if status != 200 {
            continue;
        }
        latencies.push(asked.elapsed().as_secs_f64() * 1e3);
        let job: Value = serde_json::from_str(&body).unwrap();
        let batch = json!({
            "run_id": job["run_id"],
            "epoch": job["epoch"],
            "first": 0,
            "events": [
                { "event": "run_started", "run_id": job["run_id"], "steps": [] },
                { "event": "run_finished", "status": "Success", "duration": { "secs": 0, "nanos": 0 } }
            ]
        });
        let (status, body) = http(
            "POST",
            &addr,
            "/api/v1/runner/events",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            batch.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        done.fetch_add(1, Ordering::SeqCst);
    }
    latencies
}

#[tokio::main]
async fn main() {
    let d = docker().await;
    let pipeline = format!("steps:\n  first:\n    image: {BUSYBOX}\n    commands: ['true']\n");

    // 1. Webhook -> first container: built-in, remote, bare.
    let (mut builtin, sha) = server("bench-runners-local", "", &pipeline);
    let (local, local_phases) = webhook_to_container(&d, &builtin.addr, &sha, "local").await;
    signal(&builtin.child, "TERM");
    let _ = builtin.child.wait();

    let (mut remote_server, sha) =
        server("bench-runners-remote", "local_runner = false\n", &pipeline);
    let token = add_runner(&remote_server.addr, "bench");
    let runner_dir = TempDir::new("bench-runner");
    let mut runner = Command::new(slipway_bin())
        .args(["runner", "--name", "bench", "--capacity", "1", "--server"])
        .arg(format!("http://{}", remote_server.addr))
        .env("SLIPWAY_RUNNER_TOKEN", &token)
        .env("SLIPWAY_DATA_DIR", runner_dir.path())
        .env("SLIPWAY_LOG", "warn")
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (remote, remote_phases) =
        webhook_to_container(&d, &remote_server.addr, &sha, "remote").await;
    signal(&runner, "TERM");
    let _ = runner.wait();
    signal(&remote_server.child, "TERM");
    let _ = remote_server.child.wait();
    let bare = bare_starts(&d).await;

    // 2. Dispatch capacity and 3. memory with 100 runners connected.
    let (mut dispatch_server, sha) = server(
        "bench-runners-dispatch",
        "local_runner = false\n",
        &pipeline,
    );
    let tokens: Vec<String> = (0..RUNNERS)
        .map(|i| add_runner(&dispatch_server.addr, &format!("sim-{i}")))
        .collect();
    let queued_at = Instant::now();
    for i in 0..QUEUED {
        push(&dispatch_server.addr, &sha, &format!("dispatch-{i}"));
    }
    let queueing = queued_at.elapsed();
    let idle_kib = rss_kib(dispatch_server.child.id(), "VmRSS:");
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (addr, done) = (dispatch_server.addr.clone(), done.clone());
            std::thread::spawn(move || simulated_runner(addr, token, done, QUEUED))
        })
        .collect();
    // Memory while all 100 are connected and busy.
    let mut busy_kib = 0;
    while done.load(Ordering::SeqCst) < QUEUED {
        busy_kib = busy_kib.max(rss_kib(dispatch_server.child.id(), "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "dispatch did not finish"
        );
    }
    let took = started.elapsed();
    let mut claims: Vec<f64> = Vec::new();
    for h in handles {
        claims.extend(h.join().unwrap());
    }
    claims.sort_by(f64::total_cmp);
    // Every run ended as its runner said.
    let (_, body) = http(
        "GET",
        &dispatch_server.addr,
        "/api/v1/runs?status=success&limit=500",
        &[("Authorization", &format!("Bearer {READER}"))],
        b"",
    );
    let listed = serde_json::from_str::<Value>(&body).unwrap()["runs"]
        .as_array()
        .map_or(0, Vec::len);
    let peak_kib = rss_kib(dispatch_server.child.id(), "VmHWM:");
    signal(&dispatch_server.child, "TERM");
    let _ = dispatch_server.child.wait();

    let p = |v: &[f64], q| percentile(v, q);
    println!(
        "== webhook received -> first step's container started ({PUSHES} pushes each, one at a time)"
    );
    println!(
        "   built-in runner:        p50 {:.1} ms   p95 {:.1} ms",
        p(&local, 0.5),
        p(&local, 0.95)
    );
    println!(
        "   remote runner (HTTP):   p50 {:.1} ms   p95 {:.1} ms",
        p(&remote, 0.5),
        p(&remote, 0.95)
    );
    println!(
        "   bare network+create+start: p50 {:.1} ms   p95 {:.1} ms",
        p(&bare, 0.5),
        p(&bare, 0.95)
    );
    println!("== where the time goes (p50 ms per phase, as each run reports it)");
    print_phases("built-in", &local, &local_phases);
    print_phases("remote", &remote, &remote_phases);
    let over_bare = p(&local, 0.5) - p(&bare, 0.5);
    let over_local = p(&remote, 0.5) - p(&local, 0.5);
    println!(
        "   built-in above bare: {over_bare:+.1} ms (target <= 50 ms) {}",
        if over_bare <= 50.0 { "MET" } else { "NOT MET" }
    );
    println!(
        "   remote above built-in: {over_local:+.1} ms (target <= 50 ms) {}",
        if over_local <= 50.0 { "MET" } else { "NOT MET" }
    );
    let rate = QUEUED as f64 / took.as_secs_f64();
    println!("== dispatch: {QUEUED} queued runs, {RUNNERS} simulated runners (no containers)");
    println!("   queued by webhook in {:.1} s", queueing.as_secs_f64());
    println!(
        "   handed out and reported in {:.2} s: {rate:.0} runs/s (target >= 500) {}",
        took.as_secs_f64(),
        if rate >= 500.0 { "MET" } else { "NOT MET" }
    );
    println!(
        "   successful claim round trip: p50 {:.1} ms   p99 {:.1} ms (target p99 < 50 ms) {}",
        p(&claims, 0.5),
        p(&claims, 0.99),
        if p(&claims, 0.99) < 50.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!("   runs listed as success afterwards (first page of 500): {listed}");
    println!("== server memory");
    println!(
        "   with {QUEUED} queued, before runners:   {:.1} MiB",
        idle_kib as f64 / 1024.0
    );
    println!(
        "   with {RUNNERS} runners connected:       {:.1} MiB (peak {:.1} MiB)",
        busy_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
}
