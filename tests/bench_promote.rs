//! Promotion benchmark, printed as a ratio measured in one run:
//!
//!   cargo bench -p slipway-tests --bench promote
//!
//! A multi-layer image of about 100 MB is promoted to another repository of
//! the same registry (a real `docker-registry` on loopback): by Slipway's
//! oci-client copy (manifest by digest, blobs mounted across repositories)
//! vs `docker pull` + `docker tag` + `docker push` with the image and the
//! build cache removed from the daemon first (this prunes the daemon's
//! build cache). Target: ratio <= 0.05. Medians of 3 rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    CreateImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;
use slipway_runner::registry::Copier;
use slipway_runner::{Backend, DockerBackend, ImageBuild, RunSpec, Workspace};
use slipway_tests::{BUSYBOX, Registry, TempDir, docker, forget_local_builds};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run());
}

async fn run() {
    let d = docker().await;
    let backend = Arc::new(
        DockerBackend::connect(Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let registry = Registry::start();
    let host = registry.host.clone();

    // The image: four random 25 MB layers on busybox, built and pushed.
    let src = TempDir::new("bench-promote");
    let mut dockerfile = format!("FROM {BUSYBOX}\n");
    for i in 0..4 {
        dockerfile.push_str(&format!(
            "RUN dd if=/dev/urandom of=/layer{i} bs=1M count=25 2>/dev/null\n"
        ));
    }
    src.write("Dockerfile", &dockerfile);
    let run = RunSpec {
        run_id: format!("b{}", slipway_api::ids::new_run_id()),
        workspace: Workspace::Copy(src.path().to_path_buf()),
        helper_image: BUSYBOX.into(),
    };
    backend.setup_run(&run).await.unwrap();
    let (tx, mut rx) = mpsc::channel(256);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let built = backend
        .build_image(
            &run,
            &ImageBuild {
                step: "image".into(),
                context: ".".into(),
                dockerfile: "Dockerfile".into(),
                target: None,
                args: Vec::new(),
                tags: vec![format!("{host}/bench/app:src")],
                push: true,
                cache_from: Vec::new(),
                cache_to: None,
                credentials: Default::default(),
            },
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    // The pushed tag is not a daemon name (issue 14): the build is, until teardown.
    let size: i64 = d
        .inspect_image(&built.image_id)
        .await
        .unwrap()
        .size
        .unwrap_or(0);
    backend.teardown_run(&run.run_id).await.unwrap();
    let source = built.pushed.expect("pushed");
    let digest = source.split_once('@').unwrap().1.to_string();
    println!(
        "== promotion of a 4-layer image ({:.0} MB) to another repository, {ROUNDS} rounds, medians",
        size as f64 / 1e6
    );

    let copier = Copier::new(Default::default(), Vec::new());
    let mut oci = Vec::new();
    let mut via_docker = Vec::new();
    // A fresh daemon cache: the image, and the build cache that still
    // holds its layers, are gone before every docker round.
    let forget = |refs: Vec<String>| async move { forget_local_builds(&refs).await };
    forget(vec![format!("{host}/bench/app:src"), source.clone()]).await;
    for round in 0..ROUNDS {
        let target = format!("{host}/bench/oci-{round}:prod");
        let started = Instant::now();
        let copied = copier.copy(&source, &target).await.unwrap();
        oci.push(started.elapsed());
        assert_eq!(copied, digest);

        // The docker way, from an empty daemon cache for this image.
        let repo = format!("{host}/bench/docker-{round}");
        let started = Instant::now();
        let mut pull = d.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(&source)
                    .build(),
            ),
            None,
            None,
        );
        while let Some(item) = pull.next().await {
            item.unwrap();
        }
        d.tag_image(
            &source,
            Some(
                TagImageOptionsBuilder::default()
                    .repo(&repo)
                    .tag("prod")
                    .build(),
            ),
        )
        .await
        .unwrap();
        let mut push = d.push_image(
            &repo,
            Some(PushImageOptionsBuilder::default().tag("prod").build()),
            None,
        );
        while let Some(item) = push.next().await {
            item.unwrap();
        }
        via_docker.push(started.elapsed());
        assert_eq!(
            registry
                .manifest_digest(&format!("bench/docker-{round}"), "prod")
                .as_deref(),
            Some(digest.as_str())
        );
        forget(vec![format!("{repo}:prod"), source.clone()]).await;
    }
    let (o, k) = (median(oci), median(via_docker));
    println!(
        "oci-client copy (mount blobs, copy manifest)   {:>8.1} ms",
        o.as_secs_f64() * 1e3
    );
    println!(
        "docker pull + tag + push                       {:>8.1} ms",
        k.as_secs_f64() * 1e3
    );
    println!(
        "ratio {:.4} (target <= 0.05){}",
        o.as_secs_f64() / k.as_secs_f64(),
        if o.as_secs_f64() / k.as_secs_f64() <= 0.05 {
            "  MET"
        } else {
            "  NOT MET"
        }
    );
}
