//! Secret values in the config: inline, from an environment variable, or
//! from a file, so a config can be committed without its secrets.

use super::SecretSource;

/// The value of a secret, `None` when none is configured; an empty or
/// unreadable one is an error message for the key that names it.
pub(super) fn resolve(source: Option<&SecretSource>) -> Result<Option<String>, String> {
    match source {
        None => Ok(None),
        Some(SecretSource::Inline(s)) if s.is_empty() => Err("is empty".into()),
        Some(SecretSource::Inline(s)) => Ok(Some(s.clone())),
        Some(SecretSource::Env { env }) => match std::env::var(env) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(format!("environment variable `{env}` is not set")),
        },
        Some(SecretSource::File { file }) => match std::fs::read_to_string(file) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            Ok(_) => Err(format!("file `{}` is empty", file.display())),
            Err(e) => Err(format!("cannot read `{}`: {e}", file.display())),
        },
    }
}
