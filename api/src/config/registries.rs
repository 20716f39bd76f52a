//! `[[registries]]`: logins for image builds, pushes and promotions.

use super::RawRegistry;
use super::secrets::resolve;

/// Every login, by host; problems are added to `problems`.
pub(super) fn resolve_all(
    file: &str,
    raw: &[RawRegistry],
    problems: &mut Vec<String>,
) -> slipway_runner::Credentials {
    let mut out = slipway_runner::Credentials::default();
    for (i, r) in raw.iter().enumerate() {
        let key = |k: &str| format!("{file}: registries[{i}].{k}");
        match (&r.docker_config, &r.host) {
            (Some(path), None) => match std::fs::read_to_string(path) {
                Ok(json) => match slipway_runner::credentials::parse_docker_config(&json) {
                    Ok(creds) => out.extend(creds),
                    Err(e) => problems.push(format!("{}: {}: {e}", key("docker_config"), path.display())),
                },
                Err(e) => problems.push(format!("{}: cannot read {}: {e}", key("docker_config"), path.display())),
            },
            (None, Some(host)) => {
                let password = resolve(r.password.as_ref())
                    .map_err(|m| problems.push(format!("{}: {m}", key("password"))))
                    .ok()
                    .flatten();
                match (&r.username, password) {
                    (Some(username), Some(password)) => {
                        out.insert(
                            host.clone(),
                            slipway_runner::RegistryAuth {
                                username: username.clone(),
                                password,
                            },
                        );
                    }
                    _ => problems.push(format!("{}: give `username` and `password`", key("host"))),
                }
            }
            _ => problems.push(format!(
                "{file}: registries[{i}]: give either `host` with `username` and `password`, or `docker_config`"
            )),
        }
    }
    out
}
