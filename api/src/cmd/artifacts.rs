//! `slipway artifacts RUN [STEP/PATH] [-o FILE]`: what a run kept, from the
//! server with `--server`, else from the local data dir where `slipway run`
//! keeps them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use slipway_api::Store;

/// One kept file: the step that made it, its path in the workspace, its size.
pub struct Artifact {
    pub step: String,
    pub path: String,
    pub size: u64,
}

/// Prints the list, or says there is none.
pub fn print_list(run: &str, artifacts: &[Artifact]) {
    if artifacts.is_empty() {
        println!("run {run} kept no artifacts");
    }
    for a in artifacts {
        println!("{}/{}  {} bytes", a.step, a.path, a.size);
    }
}

/// `STEP/PATH` split, or an error saying how to name one.
pub fn split_name<'a>(run: &str, wanted: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    wanted.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("name the artifact as STEP/PATH (see `slipway artifacts {run}`)")
    })
}

/// Where a download goes: `-o`, else the artifact's file name here.
pub fn target(path: &str, output: Option<&Path>) -> PathBuf {
    output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(path.rsplit('/').next().unwrap_or(path)))
}

/// A local run's artifacts, from the store and `<data>/artifacts/<run>/<step>/`.
pub fn local(
    data_dir: &Path,
    run: &str,
    artifact: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let store = Store::open(data_dir)?;
    let record = store.find_run(run)?;
    let kept: Vec<Artifact> = record
        .steps
        .iter()
        .flat_map(|s| {
            s.artifacts.iter().map(|(path, size)| Artifact {
                step: s.name.clone(),
                path: path.clone(),
                size: *size,
            })
        })
        .collect();
    let Some(wanted) = artifact else {
        print_list(&record.id, &kept);
        return Ok(ExitCode::SUCCESS);
    };
    let (step, path) = split_name(&record.id, wanted)?;
    // Only files the run recorded, so a name cannot climb out of its folder.
    if !kept.iter().any(|a| a.step == step && a.path == path) {
        anyhow::bail!(
            "run {} kept no artifact `{wanted}` (see `slipway artifacts {}`)",
            record.id,
            record.id
        );
    }
    let source = data_dir
        .join("artifacts")
        .join(&record.id)
        .join(step)
        .join(path);
    let target = target(path, output);
    let bytes = std::fs::copy(&source, &target)
        .with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
    println!("{} ({bytes} bytes)", target.display());
    Ok(ExitCode::SUCCESS)
}
