use std::path::Path;
use std::process::ExitCode;

use slipway_engine::{GraphFormat, Plan};

pub fn run(file: &Path, format: &str) -> anyhow::Result<ExitCode> {
    let format: GraphFormat = format.parse().map_err(anyhow::Error::msg)?;
    let parsed = super::load(file)?;
    if super::report(&parsed) {
        return Ok(ExitCode::FAILURE);
    }
    let plan = Plan::new(parsed.pipeline.as_ref().expect("valid"))?;
    print!("{}", plan.render(format));
    Ok(ExitCode::SUCCESS)
}
