use std::path::Path;
use std::process::ExitCode;

use slipway_api::Store;

pub fn run(data_dir: &Path, run: &str, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let store = Store::open(data_dir)?;
    let record = store.find_run(run)?;
    if let Some(step) = only
        && !record.steps.iter().any(|s| s.name == step)
    {
        let names: Vec<&str> = record.steps.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "run {} has no step `{step}` (steps: {})",
            record.id,
            names.join(", ")
        );
    }
    let width = record.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for step in record
        .steps
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.name))
    {
        let log = store.read_log(&record.id, &step.name)?;
        for line in log.lines() {
            if only.is_some() {
                println!("{line}");
            } else {
                println!("{:>width$} | {line}", step.name);
            }
        }
    }
    if let Some(error) = &record.error {
        println!("run error: {error}");
    }
    Ok(ExitCode::SUCCESS)
}
