//! A Docker daemon that stops answering, on demand: a proxy to the real
//! socket that the test can freeze.

use crate::TempDir;

/// A proxy to the real Docker socket that can be frozen: once frozen it
/// accepts connections and forwards nothing, in either direction, as a
/// wedged daemon does (seen: Docker 20.10 after losing shims).
pub struct Wedge {
    pub path: std::path::PathBuf,
    frozen: tokio::sync::watch::Sender<bool>,
    _dir: TempDir,
}

impl Wedge {
    pub fn start() -> Wedge {
        let dir = TempDir::new("wedge");
        let path = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind the proxy socket");
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(String::from))
            .unwrap_or_else(|| "/var/run/docker.sock".into());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(daemon) = tokio::net::UnixStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (dr, dw) = daemon.into_split();
                tokio::spawn(Wedge::pipe(cr, dw, watch.clone()));
                tokio::spawn(Wedge::pipe(dr, cw, watch.clone()));
            }
        });
        Wedge {
            path,
            frozen,
            _dir: dir,
        }
    }

    async fn pipe(
        mut from: tokio::net::unix::OwnedReadHalf,
        mut to: tokio::net::unix::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Frozen: nothing moves until thawed, like a daemon that hangs.
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    pub fn freeze(&self, frozen: bool) {
        let _ = self.frozen.send(frozen);
    }
}

impl Wedge {
    /// A backend that talks to the daemon through this proxy, with
    /// `deadline` for its control calls.
    pub async fn backend(&self, deadline: std::time::Duration) -> slipway_runner::DockerBackend {
        let client = bollard::Docker::connect_with_unix(
            self.path.to_str().expect("utf-8 path"),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .expect("a client of the proxy");
        slipway_runner::DockerBackend::with_client(
            client,
            std::time::Duration::from_secs(1),
            deadline,
        )
        .await
        .expect("connect through the proxy")
    }
}
