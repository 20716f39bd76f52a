//! Registry logins in the Docker `config.json` format, which every
//! registry's docs already tell users how to make.

use base64::Engine;
use serde::Deserialize;

use crate::backend::{Credentials, RegistryAuth};

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The logins of a Docker `config.json` (`{"auths": {"host": {"auth":
/// base64("user:password")}}}`, or `username` / `password`), by host.
pub fn parse_docker_config(json: &str) -> Result<Credentials, String> {
    let config: DockerConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut out = Credentials::new();
    for (host, entry) in config.auths {
        // Docker writes Docker Hub as a URL.
        let key = host
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .replace("index.docker.io", "docker.io");
        let auth = match (entry.auth, entry.username, entry.password) {
            (Some(b64), _, _) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| format!("auths.{host}.auth: not base64: {e}"))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("auths.{host}.auth: not UTF-8"))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{host}.auth: not `user:password`"))?;
                RegistryAuth {
                    username: u.into(),
                    password: p.into(),
                }
            }
            (None, Some(username), Some(password)) => RegistryAuth { username, password },
            _ => {
                return Err(format!(
                    "auths.{host}: needs `auth`, or `username` and `password`"
                ));
            }
        };
        out.insert(key, auth);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_base64_and_plain_logins_by_host() {
        let creds = parse_docker_config(
            r#"{"auths": {
                "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcmV0"},
                "https://index.docker.io/v1/": {"username": "bob", "password": "pw"}
            }}"#,
        )
        .unwrap();
        assert_eq!(creds["127.0.0.1:5000"].username, "alice");
        assert_eq!(creds["127.0.0.1:5000"].password, "s3cret");
        assert_eq!(creds["docker.io"].username, "bob");
        assert!(
            parse_docker_config(r#"{"auths": {"h": {"auth": "!!"}}}"#)
                .unwrap_err()
                .contains("auths.h.auth")
        );
        assert!(parse_docker_config(r#"{"auths": {"h": {}}}"#).is_err());
    }
}
