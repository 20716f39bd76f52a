use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let parsed = super::load(file)?;
    if super::report(&parsed) {
        let n = parsed.diagnostics.iter().filter(|d| d.is_error()).count();
        eprintln!(
            "{}: {n} error{}",
            file.display(),
            if n == 1 { "" } else { "s" }
        );
        return Ok(ExitCode::FAILURE);
    }
    let p = parsed.pipeline.expect("no errors means a pipeline");
    println!(
        "{}: valid ({} steps, {} services)",
        file.display(),
        p.steps.len(),
        p.services.len()
    );
    Ok(ExitCode::SUCCESS)
}
