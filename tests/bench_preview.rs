//! Preview benchmark, measured in one run:
//!
//!   cargo bench -p slipway-tests --bench preview
//!
//! 1. pull request webhook -> preview URL answering 200, for an image
//!    already built (the build step is a cache hit): p50 and p95 over 10
//!    open/close cycles, through the real `slipway serve` code in process;
//! 2. the preview proxy vs the container directly, with a keep-alive
//!    client on loopback: added p50/p95 latency over 2,000 sequential
//!    requests (target: added p50 < 1 ms), and throughput with 8 clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slipway_tests::{
    REPO, Registry, deliver, http, pr_body, preview_repo, remove_images, start_with,
};

const SITE: &str = "pr-2--codertocat--hello-world.preview.test";

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// An HTTP/1.1 client for `GET /` with a Host header, keeping the
/// connection while the server does (busybox httpd closes after each
/// answer; then it reconnects).
struct KeepAlive {
    reader: Option<BufReader<TcpStream>>,
    addr: String,
    host: String,
}

impl KeepAlive {
    fn connect(addr: &str, host: &str) -> KeepAlive {
        KeepAlive {
            reader: None,
            addr: addr.into(),
            host: host.into(),
        }
    }

    fn get(&mut self) -> u16 {
        let reader = self.reader.get_or_insert_with(|| {
            let s = TcpStream::connect(&self.addr).unwrap();
            s.set_nodelay(true).unwrap();
            BufReader::new(s)
        });
        let req = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        reader.get_mut().write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (mut length, mut close) = (0usize, false);
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            close |= lower.starts_with("connection: close");
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if close {
            self.reader = None;
        }
        status
    }
}

fn pr_event(addr: &str, fixture: &str, sha: &str, delivery: &str) {
    let (status, text) = deliver(addr, "pull_request", delivery, &pr_body(fixture, sha));
    assert!(status == 202 || status == 200, "{status} {text}");
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let registry = Registry::start();
    let host = registry.host.clone();
    let (_repo_dir, bare, sha) = preview_repo(&host, "bench/preview", None);
    let server = start_with(
        &format!("file://{}", bare.display()),
        "[server]\npreview_listen = \"127.0.0.1:0\"\npreview_domain = \"preview.test\"\n",
    )
    .await;
    let api = server.addr.clone();
    let proxy = server.preview_addr();

    let proxy_for_wait = proxy.clone();
    let wait_for = move |want: u16, limit: Duration| {
        let proxy = proxy_for_wait.clone();
        let started = Instant::now();
        loop {
            let (status, _) = http("GET", &proxy, "/", &[("Host", SITE)], b"");
            if status == want {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "the preview never answered {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    // Warm: the first build fills the layer cache.
    let a = api.clone();
    let s = sha.clone();
    tokio::task::spawn_blocking(move || pr_event(&a, "pull_request.opened.json", &s, "warm"))
        .await
        .unwrap();
    let w = wait_for;
    let took = tokio::task::spawn_blocking({
        let w = w.clone();
        move || w(200, Duration::from_secs(180))
    })
    .await
    .unwrap();
    println!("== 1. pull request webhook -> preview answering 200 (image already built)");
    println!("   first preview (cold build): {:.0} ms", ms(took));
    let mut cycles = Vec::new();
    for i in 0..10 {
        let (a, s) = (api.clone(), sha.clone());
        let w2 = w.clone();
        let took = tokio::task::spawn_blocking(move || {
            pr_event(&a, "pull_request.closed.json", &s, &format!("close-{i}"));
            w2(404, Duration::from_secs(60));
            let started = Instant::now();
            pr_event(&a, "pull_request.opened.json", &s, &format!("open-{i}"));
            w2(200, Duration::from_secs(120));
            started.elapsed()
        })
        .await
        .unwrap();
        cycles.push(took);
    }
    let (p50, p95) = (percentile(&mut cycles, 0.5), percentile(&mut cycles, 0.95));
    println!("   10 cycles: p50 {:.0} ms, p95 {:.0} ms", ms(p50), ms(p95));

    // 2. Latency and throughput, through the proxy vs direct.
    let record = server.store.preview(REPO, 2).unwrap().unwrap();
    let direct = format!("{}:{}", record.ip, record.port);
    let (proxy2, direct2) = (proxy.clone(), direct.clone());
    let (added, through, straight, rps_proxy, rps_direct) =
        tokio::task::spawn_blocking(move || {
            let sample = |addr: &str, host: &str| {
                let mut c = KeepAlive::connect(addr, host);
                for _ in 0..200 {
                    assert_eq!(c.get(), 200);
                }
                let mut v = Vec::with_capacity(2000);
                for _ in 0..2000 {
                    let t = Instant::now();
                    assert_eq!(c.get(), 200);
                    v.push(t.elapsed());
                }
                v
            };
            let mut d = sample(&direct2, "app");
            let mut p = sample(&proxy2, SITE);
            let (d50, d95) = (percentile(&mut d, 0.5), percentile(&mut d, 0.95));
            let (p50, p95) = (percentile(&mut p, 0.5), percentile(&mut p, 0.95));
            let throughput = |addr: String, host: &'static str| {
                let deadline = Instant::now() + Duration::from_secs(3);
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        let addr = addr.clone();
                        std::thread::spawn(move || {
                            let mut c = KeepAlive::connect(&addr, host);
                            let mut n = 0u64;
                            while Instant::now() < deadline {
                                assert_eq!(c.get(), 200);
                                n += 1;
                            }
                            n
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>() as f64 / 3.0
            };
            let rps_direct = throughput(direct2.clone(), "app");
            let rps_proxy = throughput(proxy2.clone(), SITE);
            (
                (p50.saturating_sub(d50), p95.saturating_sub(d95)),
                (p50, p95),
                (d50, d95),
                rps_proxy,
                rps_direct,
            )
        })
        .await
        .unwrap();
    println!("== 2. preview proxy vs the container directly (keep-alive, loopback)");
    println!(
        "   direct:  p50 {:.3} ms  p95 {:.3} ms   {:.0} req/s with 8 clients",
        ms(straight.0),
        ms(straight.1),
        rps_direct
    );
    println!(
        "   proxied: p50 {:.3} ms  p95 {:.3} ms   {:.0} req/s with 8 clients",
        ms(through.0),
        ms(through.1),
        rps_proxy
    );
    println!(
        "   added latency: p50 {:.3} ms (target < 1 ms){}  p95 {:.3} ms",
        ms(added.0),
        if added.0 < Duration::from_millis(1) {
            " MET"
        } else {
            " NOT MET"
        },
        ms(added.1)
    );

    let a = api.clone();
    let s = sha.clone();
    tokio::task::spawn_blocking(move || pr_event(&a, "pull_request.closed.json", &s, "final"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.shutdown.cancel();
    remove_images(&[format!("{host}/bench/preview:{sha}")]).await;
}
