//! The CLI's commands against a server (`--server` / `SLIPWAY_SERVER`,
//! with `SLIPWAY_TOKEN`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use slipway_api::client::Client;
use slipway_engine::duration::format_duration;

pub(crate) fn client(server: &str) -> anyhow::Result<(tokio::runtime::Runtime, Client)> {
    let token = std::env::var("SLIPWAY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    Ok((rt, Client::new(server, token)?))
}

/// `3m ago`, from a time in ms since the epoch.
pub(crate) fn ago(ms: u64) -> String {
    let now = slipway_api::ids::now_ms();
    format!(
        "{} ago",
        format_duration(Duration::from_millis(now.saturating_sub(ms) / 1000 * 1000))
    )
}

/// A status word from the server; one it does not know counts as ended.
fn ended(status: &str) -> bool {
    slipway_api::store::RunStatus::parse(status).is_none_or(|s| s.is_ended())
}

pub fn runs(server: &str, limit: usize) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let page = rt.block_on(client.get(&format!("/api/v1/runs?limit={limit}")))?;
    let runs = page["runs"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        println!("no runs yet on {server}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12}  {:<24}  {:<11}  {:<12}  {:<10}  {:>9}",
        "RUN", "REPO", "STATUS", "EVENT", "REF", "DURATION"
    );
    for r in runs {
        let duration = r["duration_ms"]
            .as_u64()
            .map(|ms| format_duration(Duration::from_millis(ms)))
            .unwrap_or_else(|| "-".into());
        let git_ref = r["git_ref"].as_str().map(|g| {
            g.trim_start_matches("refs/heads/")
                .trim_start_matches("refs/")
                .to_string()
        });
        println!(
            "{:<12}  {:<24}  {:<11}  {:<12}  {:<10}  {:>9}",
            r["id"].as_str().unwrap_or("?"),
            r["repo"].as_str().unwrap_or("-"),
            r["status"].as_str().unwrap_or("?"),
            r["event"].as_str().unwrap_or("?"),
            git_ref.as_deref().unwrap_or("-"),
            duration
        );
        // A queued run says why it has not started.
        if let Some(why) = r["waiting"].as_str() {
            println!("{:<12}  waiting: {why}", "");
        } else if let Some(runner) = r["runner"].as_str()
            && r["status"] == "running"
        {
            println!("{:<12}  on runner {runner}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a run's logs; with `follow`, streams them until the run ends
/// (resuming where it left off if the connection drops), then exits 0 only
/// if it succeeded.
pub fn logs(server: &str, run: &str, only: Option<&str>, follow: bool) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    rt.block_on(async {
        let view = client.get(&format!("/api/v1/runs/{run}")).await?;
        let id = view["id"].as_str().unwrap_or(run).to_string();
        let steps: Vec<Value> = view["steps"].as_array().cloned().unwrap_or_default();
        if let Some(step) = only
            && !steps.iter().any(|s| s["name"] == step)
            && ended(view["status"].as_str().unwrap_or("queued"))
        {
            anyhow::bail!("run {id} has no step `{step}`");
        }
        let width = steps
            .iter()
            .filter_map(|s| s["name"].as_str())
            .map(str::len)
            .max()
            .unwrap_or(0);
        let print = |name: &str, text: &str| {
            for line in text.lines() {
                if only.is_some() {
                    println!("{line}");
                } else {
                    println!("{name:>width$} | {line}");
                }
            }
        };
        if !follow {
            for step in &steps {
                let name = step["name"].as_str().unwrap_or_default();
                if only.is_some_and(|o| o != name) || step["status"] == "pending" {
                    continue;
                }
                let log = client
                    .get(&format!("/api/v1/runs/{id}/logs/{name}"))
                    .await?;
                print(name, log["text"].as_str().unwrap_or_default());
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut last_id: Option<String> = None;
        let mut drops = 0;
        'connect: loop {
            let mut events = client
                .events(&format!("/api/v1/runs/{id}/events"), last_id.as_deref())
                .await?;
            loop {
                let message = match events.next().await {
                    Ok(Some(m)) => m,
                    // Dropped mid-run: resume after the last event seen.
                    Ok(None) | Err(_) if drops < 5 => {
                        drops += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue 'connect;
                    }
                    Ok(None) => anyhow::bail!("the server keeps closing the event stream"),
                    Err(e) => return Err(e.into()),
                };
                drops = 0;
                if message.id.is_some() {
                    last_id = message.id.clone();
                }
                match message.event.as_str() {
                    "log" => {
                        let event: Value = serde_json::from_str(&message.data)?;
                        let name = event["step"].as_str().unwrap_or_default();
                        if only.is_none_or(|o| o == name) {
                            print(name, event["text"].as_str().unwrap_or_default());
                        }
                    }
                    "end" => break 'connect,
                    _ => {}
                }
            }
        }
        let view = client.get(&format!("/api/v1/runs/{id}")).await?;
        let status = view["status"].as_str().unwrap_or("?");
        if let Some(error) = view["error"].as_str() {
            println!("run error: {error}");
        }
        println!("run {id} {status}");
        Ok(if status == "success" {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

pub fn cancel(server: &str, run: &str) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let answer = rt.block_on(client.post(&format!("/api/v1/runs/{run}/cancel"), None))?;
    println!(
        "run {} {}",
        answer["run"].as_str().unwrap_or(run),
        answer["status"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn rerun(server: &str, run: &str, failed: bool) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let path = format!(
        "/api/v1/runs/{run}/rerun{}",
        if failed { "?failed=true" } else { "" }
    );
    let answer = rt.block_on(client.post(&path, None))?;
    println!("{}", answer["run"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

pub fn trigger(server: &str, repo: &str, git_ref: &str) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let answer = rt.block_on(client.post(
        "/api/v1/trigger",
        Some(serde_json::json!({ "repo": repo, "ref": git_ref })),
    ))?;
    println!("{}", answer["run"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

/// Lists a run's artifacts, or downloads `STEP/PATH`.
pub fn artifacts(
    server: &str,
    run: &str,
    artifact: Option<&str>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let view = rt.block_on(client.get(&format!("/api/v1/runs/{run}")))?;
    let id = view["id"].as_str().unwrap_or(run).to_string();
    let Some(wanted) = artifact else {
        let mut kept = Vec::new();
        for step in view["steps"].as_array().into_iter().flatten() {
            for a in step["artifacts"].as_array().into_iter().flatten() {
                kept.push(super::artifacts::Artifact {
                    step: step["name"].as_str().unwrap_or("?").into(),
                    path: a["path"].as_str().unwrap_or("?").into(),
                    size: a["size"].as_u64().unwrap_or(0),
                });
            }
        }
        super::artifacts::print_list(&id, &kept);
        return Ok(ExitCode::SUCCESS);
    };
    let (step, path) = super::artifacts::split_name(&id, wanted)?;
    let bytes =
        rt.block_on(client.get_bytes(&format!("/api/v1/runs/{id}/artifacts/{step}/{path}")))?;
    let target = super::artifacts::target(path, output);
    std::fs::write(&target, &bytes)
        .with_context(|| format!("cannot write {}", target.display()))?;
    println!("{} ({} bytes)", target.display(), bytes.len());
    Ok(ExitCode::SUCCESS)
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// Environments of a repository, what each holds, and what waits.
pub fn envs(server: &str, repo: &str) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let envs = rt.block_on(client.get(&format!("/api/v1/repos/{repo}/environments")))?;
    println!(
        "{:<12}  {:<22}  {:<12}  {:<10}  PENDING",
        "ENVIRONMENT", "DIGEST", "RUN", "COMMIT"
    );
    for e in envs.as_array().into_iter().flatten() {
        let cur = &e["current"];
        let pending = match e["pending"].as_object() {
            Some(p) => format!(
                "{} {} ({}/{} approvals)",
                p["id"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?"),
                p["approvals"].as_array().map_or(0, Vec::len),
                e["approvals"]
            ),
            None => "-".into(),
        };
        println!(
            "{:<12}  {:<22}  {:<12}  {:<10}  {pending}",
            e["name"].as_str().unwrap_or("?"),
            cur["digest"].as_str().map_or("-", short),
            cur["run"].as_str().unwrap_or("-"),
            cur["sha"]
                .as_str()
                .map_or("-", |s| s.get(..10).unwrap_or(s)),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_promotion(p: &Value) {
    println!(
        "promotion {} to {}: {} ({}, {} approval(s))",
        p["id"].as_str().unwrap_or("?"),
        p["environment"].as_str().unwrap_or("?"),
        p["status"].as_str().unwrap_or("?"),
        p["digest"].as_str().unwrap_or("?"),
        p["approvals"].as_array().map_or(0, Vec::len)
    );
}

pub fn promote(
    server: &str,
    repo: &str,
    to: &str,
    digest: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let p = rt.block_on(client.post(
        &format!("/api/v1/repos/{repo}/promotions"),
        Some(serde_json::json!({ "to": to, "digest": digest })),
    ))?;
    print_promotion(&p);
    Ok(ExitCode::SUCCESS)
}

/// `approve` or `reject`.
pub fn decide(
    server: &str,
    id: &str,
    verb: &str,
    comment: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    let p = rt.block_on(client.post(
        &format!("/api/v1/promotions/{id}/{verb}"),
        Some(serde_json::json!({ "comment": comment })),
    ))?;
    print_promotion(&p);
    Ok(ExitCode::SUCCESS)
}

/// Open previews, or (with `rm`) removes one: `owner/name#N`.
pub fn previews(server: &str, rm: Option<&str>) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    if let Some(which) = rm {
        let (repo, n) = which
            .split_once('#')
            .ok_or_else(|| anyhow::anyhow!("name the preview as owner/name#NUMBER"))?;
        rt.block_on(client.delete(&format!("/api/v1/previews/{repo}/{n}")))?;
        println!("removed the preview of {repo} #{n}");
        return Ok(ExitCode::SUCCESS);
    }
    let list = rt.block_on(client.get("/api/v1/previews"))?;
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no open previews");
    }
    for p in list {
        println!(
            "{}#{}  {}  {}  {}",
            p["repo"].as_str().unwrap_or("?"),
            p["number"],
            p["sha"].as_str().map_or("?", |s| s.get(..10).unwrap_or(s)),
            p["url"].as_str().unwrap_or("?"),
            p["image"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}
