//! The CLI's commands against a server (`--server` / `SLIPWAY_SERVER`,
//! with `SLIPWAY_TOKEN`).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use slipway_api::client::Client;
use slipway_engine::duration::format_duration;

fn client(server: &str) -> anyhow::Result<(tokio::runtime::Runtime, Client)> {
    let token = std::env::var("SLIPWAY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    Ok((rt, Client::new(server, token)?))
}

fn ended(status: &str) -> bool {
    !["queued", "running"].contains(&status)
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
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a run's logs; with `follow`, keeps printing until the run ends,
/// then exits 0 only if it succeeded.
pub fn logs(server: &str, run: &str, only: Option<&str>, follow: bool) -> anyhow::Result<ExitCode> {
    let (rt, client) = client(server)?;
    rt.block_on(async {
        let mut offsets: HashMap<String, u64> = HashMap::new();
        loop {
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
            let mut all_complete = true;
            for step in &steps {
                let name = step["name"].as_str().unwrap_or_default();
                if only.is_some_and(|o| o != name) || step["status"] == "pending" {
                    continue;
                }
                let offset = offsets.get(name).copied().unwrap_or(0);
                let chunk = client
                    .get(&format!("/api/v1/runs/{id}/logs/{name}?offset={offset}"))
                    .await?;
                for line in chunk["text"].as_str().unwrap_or_default().lines() {
                    if only.is_some() {
                        println!("{line}");
                    } else {
                        println!("{name:>width$} | {line}");
                    }
                }
                offsets.insert(
                    name.to_string(),
                    chunk["next_offset"].as_u64().unwrap_or(offset),
                );
                all_complete &= chunk["complete"].as_bool().unwrap_or(true);
            }
            let status = view["status"].as_str().unwrap_or("?").to_string();
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            if ended(&status) && all_complete {
                if let Some(error) = view["error"].as_str() {
                    println!("run error: {error}");
                }
                println!("run {id} {status}");
                return Ok(if status == "success" {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
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
