use std::path::Path;
use std::process::ExitCode;

use slipway_api::Store;
use slipway_engine::duration::format_duration;

pub fn run(data_dir: &Path, limit: usize) -> anyhow::Result<ExitCode> {
    let store = Store::open(data_dir)?;
    let runs = store.list_runs(limit)?;
    if runs.is_empty() {
        println!("no runs yet in {}", data_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12}  {:<20}  {:<11}  {:<8}  {:<10}  {:>9}",
        "RUN", "PIPELINE", "STATUS", "EVENT", "BRANCH", "DURATION"
    );
    for r in runs {
        let duration = r
            .finished_ms
            .map(|f| {
                format_duration(std::time::Duration::from_millis(
                    f.saturating_sub(r.created_ms),
                ))
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<12}  {:<20}  {:<11}  {:<8}  {:<10}  {:>9}",
            r.id,
            r.pipeline,
            r.status,
            r.event,
            r.branch.as_deref().unwrap_or("-"),
            duration
        );
    }
    Ok(ExitCode::SUCCESS)
}
