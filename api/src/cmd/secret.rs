//! `slipway secret set|ls|rm` (against a server) and `slipway secret
//! rotate-key` (on the data dir, with the server stopped).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use slipway_api::vault::rotate;

/// Where a secret lives: `server`, or `owner/name` with an environment.
fn scope_query(target: &str, environment: Option<&str>) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if target != "server" {
        q.push(("repo", target.to_string()));
    }
    if let Some(e) = environment {
        q.push(("environment", e.to_string()));
    }
    q
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query(pairs: &[(&str, String)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The value, from stdin: never an argument, which every user of the
/// machine could read in the process list and shell history.
fn value_from_stdin() -> anyhow::Result<String> {
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("cannot read the secret's value from stdin")?;
    // `echo value |` and a file ending in a newline mean the value without it.
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value)
        .to_string();
    if value.is_empty() {
        anyhow::bail!(
            "no value on stdin: pipe it in, e.g. `slipway secret set acme/web NAME < token.txt`"
        );
    }
    Ok(value)
}

pub struct SetArgs<'a> {
    pub target: &'a str,
    pub name: &'a str,
    pub environment: Option<&'a str>,
    pub events: Vec<String>,
    pub branches: Vec<String>,
    pub tags: Vec<String>,
}

pub fn set(server: &str, args: SetArgs<'_>) -> anyhow::Result<ExitCode> {
    let value = value_from_stdin()?;
    let (rt, client) = super::remote::client(server)?;
    let mut body = json!({
        "name": args.name,
        "value": value,
        "events": args.events,
        "branches": args.branches,
        "tags": args.tags,
    });
    for (k, v) in scope_query(args.target, args.environment) {
        body[k] = Value::String(v);
    }
    let view = rt.block_on(client.put("/api/v1/secrets", body))?;
    println!(
        "set {} for {}",
        view["name"].as_str().unwrap_or(args.name),
        view["scope"].as_str().unwrap_or(args.target)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn ls(server: &str, repo: Option<&str>) -> anyhow::Result<ExitCode> {
    let (rt, client) = super::remote::client(server)?;
    let q = repo
        .map(|r| vec![("repo", r.to_string())])
        .unwrap_or_default();
    let list = rt.block_on(client.get(&format!("/api/v1/secrets{}", query(&q))))?;
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no secrets you may manage");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24}  {:<28}  {:<6}  {:<16}  {:<30}",
        "NAME", "SCOPE", "SOURCE", "SET BY", "ONLY FOR"
    );
    for s in list {
        let words = |k: &str| {
            s[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let mut only = Vec::new();
        for (label, key) in [
            ("events", "events"),
            ("branches", "branches"),
            ("tags", "tags"),
        ] {
            let w = words(key);
            if !w.is_empty() {
                only.push(format!("{label}={w}"));
            }
        }
        let set_by = match (s["set_by"].as_str(), s["set_ms"].as_u64()) {
            (Some(u), Some(ms)) => format!("{u} {}", super::remote::ago(ms)),
            _ => "-".into(),
        };
        println!(
            "{:<24}  {:<28}  {:<6}  {:<16}  {:<30}",
            s["name"].as_str().unwrap_or("?"),
            s["scope"].as_str().unwrap_or("?"),
            s["source"].as_str().unwrap_or("?"),
            set_by,
            if only.is_empty() {
                "-".into()
            } else {
                only.join(" ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn rm(
    server: &str,
    target: &str,
    name: &str,
    environment: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let (rt, client) = super::remote::client(server)?;
    let mut q = scope_query(target, environment);
    q.push(("name", name.to_string()));
    rt.block_on(client.delete(&format!("/api/v1/secrets{}", query(&q))))?;
    println!(
        "removed {name} from {target}{}",
        environment.map(|e| format!(":{e}")).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Re-encrypts the data dir's secrets with a new key and replaces the key
/// file: the same config and data dir `slipway serve` would use.
pub fn rotate_key(
    config_path: Option<&Path>,
    data_dir_flag: Option<PathBuf>,
    default_data_dir: PathBuf,
) -> anyhow::Result<ExitCode> {
    let (config, data_dir) = super::server_setup(config_path, data_dir_flag, default_data_dir)?;
    let store = slipway_api::Store::open(&data_dir)?;
    let done = rotate(&store, &config.secrets_key)?;
    println!(
        "re-encrypted {} secret(s) in {}: key {} replaced by {} in {}",
        done.secrets,
        data_dir.display(),
        done.old_key_id,
        done.new_key_id,
        config.secrets_key.display()
    );
    Ok(ExitCode::SUCCESS)
}
