//! A preview per pull request: the image its green build pushed, running
//! as a container of its own, reached through Slipway's preview proxy, and
//! removed when the pull request closes, idles past the TTL, or is pushed
//! out by the repository's cap.
//!
//! The route table lives in memory (rebuilt from the store at start); the
//! store keeps one record per open preview. A new commit's container is
//! started and checked ready *before* the route moves to it; the old one is
//! removed only after in-flight requests had time to finish, so a client
//! polling through the swap sees no error.
//!
//! Each preview is served on a host name of its own
//! (`pr-<n>--<slug>.<preview_domain>`), so it is an origin of its own: a
//! pull request's page cannot read or script another's. Routing by path
//! (one origin for all) is only on with `preview_routing = "host+path"`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use slipway_runner::DockerBackend;
use slipway_runner::docker::{LABEL_PREVIEW, PreviewSpec};
use tokio::sync::Mutex as AsyncMutex;
use tracing::{info, warn};

use octocrab::models::repos::DeploymentStatusState;

use crate::config::{Config, PreviewRouting, Repo, preview_slug};
use crate::forge::deployments;
use crate::ids::now_ms;
use crate::store::{PreviewRecord, RunRecord, RunStatus, Store};

/// How long a replaced container keeps serving requests already sent to it.
const DRAIN: Duration = Duration::from_secs(2);
/// How long a new container may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

type Key = (String, u64);

struct Route {
    addr: SocketAddr,
    last_used_ms: AtomicU64,
}

/// What a green pull request build asks to deploy.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub repo: String,
    pub number: u64,
    pub sha: String,
    pub run: String,
    pub image: String,
    pub spec: slipway_engine::model::Preview,
    /// Whether the run that built the image was trusted (`runs::trust`).
    pub trusted: bool,
}

pub struct Previews {
    config: Arc<Config>,
    store: Store,
    docker: DockerBackend,
    routes: RwLock<HashMap<Key, Arc<Route>>>,
    /// Deploys and teardowns of one pull request never overlap.
    locks: AsyncMutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
    http: HttpClient<HttpConnector, Body>,
    /// Where the proxy listens (the port in preview URLs).
    listen: SocketAddr,
    /// Labels this server's preview containers.
    server: String,
}

fn key(repo: &str, number: u64) -> Key {
    (repo.to_ascii_lowercase(), number)
}

/// A green pull request build with `preview:` becomes (or updates) the
/// pull request's preview, in the background; trouble becomes a note.
impl crate::runs::RunFollower for Previews {
    fn run_finished(self: Arc<Self>, run: &RunRecord, pipeline: Option<&slipway_engine::Pipeline>) {
        let (Some(spec), Some(source)) = (pipeline.and_then(|p| p.preview.as_ref()), &run.source)
        else {
            return;
        };
        if run.status != RunStatus::Success {
            return;
        }
        let Some(number) = source.pull_request else {
            return;
        };
        let image = run
            .steps
            .iter()
            .find(|s| s.name == spec.step)
            .and_then(|s| s.output.clone());
        let store = self.store.clone();
        let run_id = run.id.clone();
        let Some(image) = image else {
            let _ = store.update_run(&run_id, |r| {
                r.notes
                    .push(format!("no preview: step `{}` pushed no image", spec.step))
            });
            return;
        };
        let req = DeployRequest {
            repo: source.repo.clone(),
            number,
            sha: source.sha.clone(),
            run: run.id.clone(),
            image,
            spec: spec.clone(),
            trusted: crate::runs::trust::of_run(run, &self.config).trusted,
        };
        let previews = self;
        tokio::spawn(async move {
            match previews.deploy(req).await {
                Ok(p) => {
                    let _ =
                        store.update_run(&run_id, |r| r.notes.push(format!("preview: {}", p.url)));
                }
                Err(e) => {
                    let _ = store.update_run(&run_id, |r| r.notes.push(format!("no preview: {e}")));
                }
            }
        });
    }
}

impl Previews {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        docker: DockerBackend,
        listen: SocketAddr,
    ) -> Arc<Previews> {
        let server = store.server_id().unwrap_or_else(|_| "unknown".into());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Arc::new(Previews {
            config,
            store,
            docker,
            routes: RwLock::default(),
            locks: AsyncMutex::default(),
            http: HttpClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            listen,
            server,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.config.preview_ttl
    }

    /// Where users open a preview: a host name of its own.
    pub fn url(&self, repo: &str, number: u64) -> String {
        format!(
            "http://pr-{number}--{}.{}:{}/",
            preview_slug(repo),
            self.config.preview_domain,
            self.listen.port()
        )
    }

    /// The same preview by path, only where path routing is on (setups
    /// without wildcard DNS).
    pub fn path_url(&self, repo: &str, number: u64) -> Option<String> {
        (self.config.preview_routing == PreviewRouting::HostAndPath)
            .then(|| format!("http://{}/previews/{repo}/{number}/", self.listen))
    }

    async fn lock(&self, k: &Key) -> Arc<AsyncMutex<()>> {
        self.locks
            .lock()
            .await
            .entry(k.clone())
            .or_default()
            .clone()
    }

    fn route_to(&self, k: Key, addr: SocketAddr) {
        let route = Arc::new(Route {
            addr,
            last_used_ms: AtomicU64::new(now_ms()),
        });
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(k, route);
    }

    fn unroute(&self, k: &Key) {
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(k);
    }

    fn route(&self, k: &Key) -> Option<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(k)
            .cloned()
    }

    /// Starts the new commit's container, waits until it is ready, moves
    /// the route, then removes the previous one. On failure the previous
    /// preview keeps serving and the reason is returned.
    pub async fn deploy(self: &Arc<Self>, req: DeployRequest) -> Result<PreviewRecord, String> {
        let repo = self
            .config
            .repo(&req.repo)
            .ok_or_else(|| format!("repository `{}` is not configured", req.repo))?
            .clone();
        if !req.trusted && !repo.previews_for_forks {
            return Err(format!(
                "pull request #{}'s run is untrusted and `{}` does not allow previews of untrusted pull requests (previews_for_forks)",
                req.number, repo.name
            ));
        }
        let k = key(&repo.name, req.number);
        let lock = self.lock(&k).await;
        let _held = lock.lock().await;
        let previous = self
            .store
            .preview(&repo.name, req.number)
            .map_err(|e| e.to_string())?;
        let spec = PreviewSpec {
            key: format!("{}#{}", repo.name, req.number),
            server: self.server.clone(),
            slug: format!("{}-pr-{}", repo.preview_slug(), req.number),
            generation: now_ms(),
            image: req.image.clone(),
            env: req.spec.env.clone(),
            credentials: self.config.registries.clone(),
        };
        let started = self
            .docker
            .start_preview(&spec)
            .await
            .map_err(|e| e.to_string())?;
        let addr: SocketAddr = format!("{}:{}", started.ip, req.spec.port)
            .parse()
            .map_err(|e| format!("bad address {}: {e}", started.ip))?;
        if let Err(e) = self.wait_ready(addr, req.spec.health.as_deref()).await {
            self.docker.remove_preview_container(&started.name).await;
            return Err(format!(
                "the preview of #{} did not become ready: {e}",
                req.number
            ));
        }
        let now = now_ms();
        let mut record = PreviewRecord {
            repo: repo.name.clone(),
            number: req.number,
            sha: req.sha.clone(),
            run: req.run.clone(),
            image: req.image.clone(),
            container: started.name.clone(),
            network: started.network.clone(),
            ip: started.ip.clone(),
            port: req.spec.port,
            url: self.url(&repo.name, req.number),
            created_ms: previous.as_ref().map_or(now, |p| p.created_ms),
            updated_ms: now,
            comment_id: previous.as_ref().and_then(|p| p.comment_id),
            deployment_id: None,
        };
        self.route_to(k.clone(), addr);
        self.store.put_preview(&record).map_err(|e| e.to_string())?;
        info!(repo = %repo.name, pr = req.number, sha = %req.sha, "preview live");
        if let Some(old) = previous
            && old.container != record.container
        {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(DRAIN).await;
                this.docker.remove_preview_container(&old.container).await;
                if old.image
                    != this
                        .store
                        .preview(&old.repo, old.number)
                        .ok()
                        .flatten()
                        .map(|p| p.image)
                        .unwrap_or_default()
                {
                    this.docker
                        .remove_preview_rest(&this.server, "", Some(&old.image))
                        .await;
                }
            });
        }
        match self.comment(&repo, &record, None).await {
            Ok(id) => record.comment_id = id,
            Err(e) => warn!(pr = req.number, error = %e, "cannot comment the preview's URL"),
        }
        match self.deployment(&repo, &record).await {
            Ok(id) => record.deployment_id = id,
            Err(e) => warn!(pr = req.number, error = %e, "cannot report the preview's deployment"),
        }
        let _ = self.store.put_preview(&record);
        drop(_held);
        self.enforce_cap(&repo).await;
        Ok(record)
    }

    async fn wait_ready(&self, addr: SocketAddr, health: Option<&str>) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            let uri: Uri = format!("http://{addr}{}", health.unwrap_or("/"))
                .parse()
                .map_err(|e| format!("{e}"))?;
            let req = axum::http::Request::get(uri)
                .body(Body::empty())
                .map_err(|e| e.to_string())?;
            match tokio::time::timeout(Duration::from_secs(2), self.http.request(req)).await {
                Ok(Ok(resp)) if health.is_none() || resp.status().is_success() => return Ok(()),
                Ok(Ok(resp)) => {
                    last = format!("{} answered {}", health.unwrap_or("/"), resp.status())
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no answer within 2s".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    /// Removes the preview of a pull request: route, containers, network
    /// and image. Idempotent.
    pub async fn close(
        self: &Arc<Self>,
        repo_name: &str,
        number: u64,
        why: &str,
    ) -> Result<bool, String> {
        let k = key(repo_name, number);
        let lock = self.lock(&k).await;
        let _held = lock.lock().await;
        self.unroute(&k);
        let record = self
            .store
            .preview(repo_name, number)
            .map_err(|e| e.to_string())?;
        let label = format!("{repo_name}#{number}");
        if let Ok(found) = self.docker.list_previews(&self.server).await {
            for c in found.iter().filter(|c| c.key.eq_ignore_ascii_case(&label)) {
                self.docker.remove_preview_container(&c.name).await;
            }
        }
        let label = record
            .as_ref()
            .map(|r| format!("{}#{}", r.repo, r.number))
            .unwrap_or(label);
        self.docker
            .remove_preview_rest(
                &self.server,
                &label,
                record.as_ref().map(|r| r.image.as_str()),
            )
            .await;
        let Some(record) = record else {
            return Ok(false);
        };
        self.store
            .delete_preview(repo_name, number)
            .map_err(|e| e.to_string())?;
        info!(repo = repo_name, pr = number, why, "preview removed");
        if let Some(repo) = self.config.repo(repo_name).cloned() {
            if let Err(e) = self.comment(&repo, &record, Some(why)).await {
                warn!(pr = number, error = %e, "cannot update the preview comment");
            }
            if let Err(e) = self.deployment_inactive(&repo, &record).await {
                warn!(pr = number, error = %e, "cannot mark the preview's deployment inactive");
            }
        }
        Ok(true)
    }

    /// The oldest previews of the repository beyond its cap go.
    async fn enforce_cap(self: &Arc<Self>, repo: &Repo) {
        let Ok(all) = self.store.previews() else {
            return;
        };
        let mut mine: Vec<PreviewRecord> = all
            .into_iter()
            .filter(|p| p.repo.eq_ignore_ascii_case(&repo.name))
            .collect();
        mine.sort_by_key(|p| p.created_ms);
        while mine.len() > repo.max_previews {
            let oldest = mine.remove(0);
            let why = format!("more than {} previews of {}", repo.max_previews, repo.name);
            if let Err(e) = self.close(&oldest.repo, oldest.number, &why).await {
                warn!(error = %e, "cannot remove a preview over the cap");
            }
        }
    }

    /// Previews nobody asked for within the TTL are removed.
    pub async fn expire_idle(self: &Arc<Self>) {
        let ttl = self.config.preview_ttl.as_millis() as u64;
        let now = now_ms();
        let Ok(all) = self.store.previews() else {
            return;
        };
        for p in all {
            let last = self
                .route(&key(&p.repo, p.number))
                .map_or(p.updated_ms, |r| r.last_used_ms.load(Ordering::Relaxed))
                .max(p.updated_ms);
            if now.saturating_sub(last) > ttl {
                let why = format!(
                    "idle for more than {}",
                    slipway_engine::duration::format_duration(self.config.preview_ttl)
                );
                if let Err(e) = self.close(&p.repo, p.number, &why).await {
                    warn!(error = %e, "cannot remove an idle preview");
                }
            }
        }
    }

    /// After a restart: routes for records whose container still runs
    /// (at its current address); records whose container vanished are
    /// started again; containers nobody has a record of are removed.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), String> {
        let records = self.store.previews().map_err(|e| e.to_string())?;
        let found = self
            .docker
            .list_previews(&self.server)
            .await
            .map_err(|e| e.to_string())?;
        for c in &found {
            let known = records.iter().any(|r| {
                format!("{}#{}", r.repo, r.number).eq_ignore_ascii_case(&c.key)
                    && r.container == c.name
            });
            if !known {
                self.docker.remove_preview_container(&c.name).await;
            }
        }
        for r in records {
            let alive = found.iter().any(|c| c.name == r.container && c.running);
            let ip = if alive {
                self.docker.preview_ip(&r.container, &r.network).await.ok()
            } else {
                None
            };
            match ip.and_then(|ip| format!("{ip}:{}", r.port).parse::<SocketAddr>().ok()) {
                Some(addr) => self.route_to(key(&r.repo, r.number), addr),
                None => {
                    warn!(repo = %r.repo, pr = r.number, "preview container gone; starting it again");
                    let this = self.clone();
                    tokio::spawn(async move {
                        // Asked again: the config may have changed since.
                        let trusted =
                            this.store
                                .get_run(&r.run)
                                .ok()
                                .flatten()
                                .is_some_and(|run| {
                                    crate::runs::trust::of_run(&run, &this.config).trusted
                                });
                        let req = DeployRequest {
                            repo: r.repo.clone(),
                            number: r.number,
                            sha: r.sha.clone(),
                            run: r.run.clone(),
                            image: r.image.clone(),
                            spec: slipway_engine::model::Preview {
                                step: String::new(),
                                port: r.port,
                                health: None,
                                env: Vec::new(),
                            },
                            trusted,
                        };
                        if let Err(e) = this.deploy(req).await {
                            warn!(error = %e, "cannot restart a preview");
                        }
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes (first time) or edits the pull request's one preview comment.
    async fn comment(
        &self,
        repo: &Repo,
        p: &PreviewRecord,
        closed: Option<&str>,
    ) -> Result<Option<u64>, String> {
        let body = match closed {
            None => format!(
                "Preview of {} is live: {}\n\n({}updated {} for commit `{}`)\n\n<!-- slipway-preview -->",
                p.image,
                p.url,
                self.path_url(&p.repo, p.number)
                    .map(|u| format!("also at {u}; "))
                    .unwrap_or_default(),
                p.updated_ms,
                p.sha
            ),
            Some(why) => format!("Preview removed: {why}.\n\n<!-- slipway-preview -->"),
        };
        deployments::comment(repo, p.number, p.comment_id, body, closed.is_none()).await
    }

    /// A deployment of the shown commit to `preview/pr-<n>`, marked live
    /// with the URL (GitHub marks the previous one inactive).
    async fn deployment(&self, repo: &Repo, p: &PreviewRecord) -> Result<Option<u64>, String> {
        let made = deployments::create(
            repo,
            &deployments::NewDeployment {
                sha: p.sha.clone(),
                environment: format!("preview/pr-{}", p.number),
                description: format!("Slipway preview of #{}", p.number),
                production: false,
                transient: true,
            },
        )
        .await?;
        if let Some(id) = made {
            let live = deployments::DeploymentState {
                state: DeploymentStatusState::Success,
                description: None,
                url: Some(&p.url),
                supersede: true,
            };
            deployments::set_state(repo, id, &live).await?;
        }
        Ok(made)
    }

    async fn deployment_inactive(&self, repo: &Repo, p: &PreviewRecord) -> Result<(), String> {
        let Some(id) = p.deployment_id else {
            return Ok(());
        };
        let gone = deployments::DeploymentState {
            state: DeploymentStatusState::Inactive,
            description: None,
            url: None,
            supersede: false,
        };
        deployments::set_state(repo, id, &gone).await
    }

    /// Open previews, for the API and the 404 page.
    pub fn list(&self) -> Vec<PreviewRecord> {
        self.store.previews().unwrap_or_default()
    }
}

/// Which preview a request is for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// By host name: the preview, and the path and query to ask it.
    Host(Key, String),
    /// By path, with path routing on.
    Path(Key, String),
    /// By path, with path routing off: the repository as configured, the
    /// pull request, and the path and query asked (without the leading `/`).
    PathOff(String, u64, String),
}

/// `host[:port]` -> `host`, lowercase.
fn host_without_port(host: &str) -> String {
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    host.to_ascii_lowercase()
}

/// Reads a request's preview from its host name or, failing that, its
/// path; a host maps to at most one repository because the config refuses
/// two with the same slug.
fn target(config: &Config, host: Option<&str>, uri: &Uri) -> Option<Target> {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(host) = host.map(host_without_port)
        && let Some(label) = host
            .strip_suffix(&config.preview_domain)
            .and_then(|h| h.strip_suffix('.'))
        && let Some((n, repo_slug)) = label.strip_prefix("pr-").and_then(|s| s.split_once("--"))
        // One spelling per number: `pr-02` or `pr-+2` would be other origins of the same preview.
        && let Some(n) = n.parse::<u64>().ok().filter(|v| v.to_string() == n)
        && let Some(repo) = config.repos.iter().find(|r| r.preview_slug() == repo_slug)
    {
        return Some(Target::Host(key(&repo.name, n), path_and_query.to_string()));
    }
    let rest = uri.path().strip_prefix("/previews/")?;
    let mut parts = rest.splitn(4, '/');
    let (owner, name, n) = (
        parts.next()?,
        parts.next()?,
        parts.next()?.parse::<u64>().ok()?,
    );
    let tail = parts.next().unwrap_or("");
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let repo = format!("{owner}/{name}");
    match config.preview_routing {
        PreviewRouting::HostAndPath => Some(Target::Path(key(&repo, n), format!("/{tail}{query}"))),
        PreviewRouting::Host => Some(Target::PathOff(
            config.repo(&repo)?.name.clone(),
            n,
            format!("{tail}{query}"),
        )),
    }
}

fn not_found(previews: &Previews, what: &str) -> Response {
    let mut list = String::new();
    for p in previews.list() {
        list.push_str(&format!(
            "<li><a href=\"{0}\">{1} #{2}</a> (commit <code>{3}</code>){4}</li>",
            html_escape(&p.url),
            html_escape(&p.repo),
            p.number,
            html_escape(p.sha.get(..12).unwrap_or(&p.sha)),
            previews
                .path_url(&p.repo, p.number)
                .map(|u| format!(" &middot; <a href=\"{}\">by path</a>", html_escape(&u)))
                .unwrap_or_default()
        ));
    }
    if list.is_empty() {
        list = "<li>none: open a pull request whose pipeline has <code>preview:</code></li>".into();
    }
    (
        StatusCode::NOT_FOUND,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No such preview</title></head>\
             <body><h1>No preview at {}</h1><p>Open previews:</p><ul>{list}</ul></body></html>",
            html_escape(what)
        )),
    )
        .into_response()
}

/// A request by path where previews answer only by host name: not
/// proxied (all previews by path would share one origin), and pointed to
/// the preview's own host.
fn path_routing_off(previews: &Previews, repo: &str, number: u64, rest: &str) -> Response {
    let url = format!("{}{rest}", previews.url(repo, number));
    (
        StatusCode::NOT_FOUND,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Path routing is off</title></head>\
             <body><h1>Path routing is off</h1><p>Previews on this server answer only at a host name of their own \
             (<code>preview_routing = \"host\"</code>), so one pull request's page cannot read another's cookies or storage.</p>\
             <p>The preview of {} #{number}: <a href=\"{1}\">{1}</a></p></body></html>",
            html_escape(repo),
            html_escape(&url)
        )),
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The preview proxy: every request, whatever its path.
pub async fn proxy(State(previews): State<Arc<Previews>>, mut req: Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let (k, path) = match target(&previews.config, host.as_deref(), req.uri()) {
        Some(Target::Host(k, path) | Target::Path(k, path)) => (k, path),
        Some(Target::PathOff(repo, number, rest)) => {
            return path_routing_off(&previews, &repo, number, &rest);
        }
        None => {
            let what = format!("{}{}", host.unwrap_or_default(), req.uri().path());
            return not_found(&previews, &what);
        }
    };
    let own_host = host
        .as_deref()
        .or(req.uri().host())
        .map(host_without_port)
        .unwrap_or_default();
    let Some(route) = previews.route(&k) else {
        return not_found(&previews, &format!("{} #{}", k.0, k.1));
    };
    route.last_used_ms.store(now_ms(), Ordering::Relaxed);
    let Ok(uri) = format!("http://{}{path}", route.addr).parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad path").into_response();
    };
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    strip_for_preview(headers);
    if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert("x-forwarded-host", h);
    }
    match previews.http.request(req).await {
        Ok(resp) => {
            let mut resp = resp.map(Body::new);
            drop_foreign_cookies(resp.headers_mut(), &own_host);
            resp.into_response()
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the preview of {} #{} did not answer: {e}\n", k.0, k.1),
        )
            .into_response(),
    }
}

/// What a pull request's container must not see of a request: hop-by-hop
/// headers, and the user's credentials (`Authorization`, `Cookie`): the
/// container runs the pull request's code, and path-based previews share
/// an origin with each other.
fn strip_for_preview(headers: &mut axum::http::HeaderMap) {
    for h in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(h);
    }
}

/// Keeps a preview's cookies on its own host: a `Set-Cookie` whose
/// `Domain` names any other host (the preview domain, a parent shared with
/// Slipway's own origin) is dropped whole, so a pull request cannot plant
/// cookies other previews or Slipway would be sent. Cookies without
/// `Domain` are host-only already.
fn drop_foreign_cookies(headers: &mut axum::http::HeaderMap, own_host: &str) {
    let stays_home = |v: &HeaderValue| {
        String::from_utf8_lossy(v.as_bytes())
            .split(';')
            .skip(1)
            .all(|attribute| match attribute.split_once('=') {
                Some((k, domain)) if k.trim().eq_ignore_ascii_case("domain") => domain
                    .trim()
                    .trim_start_matches('.')
                    .eq_ignore_ascii_case(own_host),
                _ => true,
            })
    };
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| stays_home(v))
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in kept {
        headers.append(header::SET_COOKIE, v);
    }
}

/// The proxy's router.
pub fn proxy_app(previews: Arc<Previews>) -> axum::Router {
    axum::Router::new().fallback(proxy).with_state(previews)
}

/// The label preview containers carry, for tests and operators.
pub const PREVIEW_LABEL: &str = LABEL_PREVIEW;

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: the proxy forwarded the user's `Authorization` and
    /// `Cookie` to the pull request's container.
    #[test]
    fn a_preview_never_sees_the_users_credentials() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer slipway-token"),
        );
        headers.insert(header::COOKIE, HeaderValue::from_static("session=abc"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        strip_for_preview(&mut headers);
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get(header::COOKIE).is_none());
        assert_eq!(headers.get(header::ACCEPT).unwrap(), "text/html");
    }

    fn config(repos: &[&str], server: &str) -> Config {
        let mut text = format!("[server]\npreview_domain = \"preview.test\"\n{server}");
        for name in repos {
            text.push_str(&format!(
                "[[repos]]\nname = \"{name}\"\nprovider = \"github\"\nclone_url = \"file:///x\"\nwebhook_secret = \"test-secret\"\n"
            ));
        }
        Config::parse("s.toml", &text).unwrap()
    }

    fn by(config: &Config, host: &str, path: &str) -> Option<Target> {
        target(config, Some(host), &path.parse().unwrap())
    }

    /// Issue 14: both names answered at `pr-2--acme-web-app`, and the
    /// proxy sent that host to whichever repository was configured first.
    #[test]
    fn each_host_maps_back_to_exactly_one_repository() {
        let c = config(&["acme/web-app", "acme-web/app"], "");
        for repo in ["acme/web-app", "acme-web/app"] {
            let host = format!("pr-2--{}.preview.test:8081", preview_slug(repo));
            assert_eq!(
                by(&c, &host, "/a?b=1"),
                Some(Target::Host(key(repo, 2), "/a?b=1".into())),
                "{host}"
            );
        }
        assert_eq!(by(&c, "pr-2--acme-web-app.preview.test", "/"), None);
        // One spelling per pull request number.
        let slug = preview_slug("acme/web-app");
        for n in ["02", "+2"] {
            assert_eq!(by(&c, &format!("pr-{n}--{slug}.preview.test"), "/"), None);
        }
        assert_eq!(by(&c, &format!("pr-2--{slug}.other.test"), "/"), None);
    }

    /// Issue 14: every preview was also served by path on the proxy's one
    /// origin, where each pull request's page could read the others'.
    #[test]
    fn paths_reach_a_preview_only_where_path_routing_is_on() {
        let path = "/previews/Acme/Web-App/2/index.html?x=1";
        let c = config(&["acme/web-app"], "");
        assert_eq!(
            by(&c, "127.0.0.1:8081", path),
            Some(Target::PathOff(
                "acme/web-app".into(),
                2,
                "index.html?x=1".into()
            ))
        );
        assert_eq!(by(&c, "127.0.0.1:8081", "/previews/acme/other/2/"), None);
        let c = config(&["acme/web-app"], "preview_routing = \"host+path\"\n");
        assert_eq!(
            by(&c, "127.0.0.1:8081", path),
            Some(Target::Path(
                key("acme/web-app", 2),
                "/index.html?x=1".into()
            ))
        );
    }

    /// Issue 14: a preview could set a cookie for the whole preview domain
    /// (every other preview) or a parent it shares with Slipway.
    #[test]
    fn a_preview_sets_cookies_only_on_its_own_host() {
        let own = "pr-2--acme--web.preview.test";
        let mut headers = axum::http::HeaderMap::new();
        for cookie in [
            "plain=1; Path=/; HttpOnly",
            "mine=1; Domain=PR-2--acme--web.preview.test; Secure",
            "dotted=1; domain=.pr-2--acme--web.preview.test",
            "parent=1; Domain=preview.test; Path=/",
            "dotparent=1; Path=/; domain=.preview.test",
            "slipway=1; Domain=test",
            "other=1; Domain=pr-3--acme--web.preview.test",
            "twice=1; Domain=pr-2--acme--web.preview.test; Domain=preview.test",
            "empty=1; Domain=",
        ] {
            headers.append(header::SET_COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        drop_foreign_cookies(&mut headers, own);
        let kept: Vec<&str> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split('=').next().unwrap())
            .collect();
        assert_eq!(kept, ["plain", "mine", "dotted"]);
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "text/html");
    }

    #[test]
    fn ports_and_brackets_are_not_part_of_the_host() {
        assert_eq!(
            host_without_port("PR-2--a--b.Preview.Test:8081"),
            "pr-2--a--b.preview.test"
        );
        assert_eq!(host_without_port("[::1]:8081"), "::1");
        assert_eq!(host_without_port("localhost"), "localhost");
    }
}
