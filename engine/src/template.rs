//! The two small languages inside pipeline strings:
//! - `${NAME}` in build args and tags, replaced by the step's variables;
//! - cache keys such as `deps-{{ hash 'Cargo.lock' }}`, whose `hash` part is
//!   computed at run time from files of the workspace.
//!
//! Both are parsed here (so mistakes are reported with the file and line
//! before anything runs); the runner only fills in what needs the disk.

/// One piece of a cache key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KeyPart {
    Text(String),
    /// The hash of these workspace files' contents, in this order.
    Hash(Vec<String>),
}

/// A parsed cache key template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyTemplate {
    pub source: String,
    pub parts: Vec<KeyPart>,
}

impl KeyTemplate {
    /// The files whose contents the key depends on.
    pub fn hashed_files(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().flat_map(|p| match p {
            KeyPart::Hash(files) => files.iter().map(String::as_str).collect::<Vec<_>>(),
            KeyPart::Text(_) => Vec::new(),
        })
    }

    /// The key, given the hash of each `hash` part's files.
    pub fn render(&self, mut hash: impl FnMut(&[String]) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                KeyPart::Text(t) => out.push_str(t),
                KeyPart::Hash(files) => out.push_str(&hash(files)),
            }
        }
        out
    }
}

/// Parses `text {{ hash 'a' 'b' }} text`. Errors say what is wrong, for a
/// diagnostic at the key.
pub fn parse_key(source: &str) -> Result<KeyTemplate, String> {
    let mut parts = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(KeyPart::Text(rest[..open].to_string()));
        }
        let Some(close) = rest[open..].find("}}") else {
            return Err("`{{` without a closing `}}`".into());
        };
        let inner = rest[open + 2..open + close].trim();
        let (func, args) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
        if func != "hash" {
            return Err(format!(
                "unknown function `{func}` in a cache key (only `hash 'file' ...` is known)"
            ));
        }
        let files = quoted_args(args)?;
        if files.is_empty() {
            return Err("`hash` needs at least one file, e.g. {{ hash 'Cargo.lock' }}".into());
        }
        for f in &files {
            check_relative(f)?;
        }
        parts.push(KeyPart::Hash(files));
        rest = &rest[open + close + 2..];
    }
    if rest.contains("}}") {
        return Err("`}}` without an opening `{{`".into());
    }
    if !rest.is_empty() {
        parts.push(KeyPart::Text(rest.to_string()));
    }
    let template = KeyTemplate {
        source: source.to_string(),
        parts,
    };
    let sample = template.render(|_| "0".into());
    if sample.is_empty() {
        return Err("the cache key is empty".into());
    }
    if let Some(c) = sample
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "`{c}` cannot be part of a cache key: use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(template)
}

fn quoted_args(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = args.trim();
    while !rest.is_empty() {
        let quote = rest.chars().next().unwrap_or('\'');
        if quote != '\'' && quote != '"' {
            return Err(format!("put file names in quotes: `{rest}`"));
        }
        let Some(end) = rest[1..].find(quote) else {
            return Err(format!("unclosed quote in `{args}`"));
        };
        out.push(rest[1..1 + end].to_string());
        rest = rest[end + 2..].trim_start();
    }
    Ok(out)
}

/// A path inside the workspace: relative, and never climbing out of it.
pub fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "`{path}` is absolute: paths are relative to the workspace"
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("`{path}` climbs out of the workspace with `..`"));
    }
    Ok(())
}

/// Replaces `${NAME}` with the value `lookup` gives; a name it does not know
/// is an error naming it. `$$` is a literal `$`.
pub fn expand(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("`${{` without a closing `}}` in `{text}`"));
            };
            let name = &body[..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("`${{{name}}}` is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_hashes_render_and_bad_ones_say_why() {
        let k = parse_key("deps-{{ hash 'Cargo.lock' \"b/c.txt\" }}-v1").unwrap();
        assert_eq!(
            k.parts,
            [
                KeyPart::Text("deps-".into()),
                KeyPart::Hash(vec!["Cargo.lock".into(), "b/c.txt".into()]),
                KeyPart::Text("-v1".into()),
            ]
        );
        assert_eq!(
            k.hashed_files().collect::<Vec<_>>(),
            ["Cargo.lock", "b/c.txt"]
        );
        assert_eq!(k.render(|f| format!("{}", f.len())), "deps-2-v1");
        assert!(parse_key("plain").is_ok());
        for (bad, says) in [
            ("a-{{ hash 'x' ", "without a closing"),
            ("a-{{ md5 'x' }}", "unknown function `md5`"),
            ("a-{{ hash }}", "at least one file"),
            ("a-{{ hash x }}", "in quotes"),
            ("a-{{ hash '../x' }}", "climbs out"),
            ("a/b", "`/` cannot be part"),
            ("", "empty"),
            ("x }}", "without an opening"),
        ] {
            let e = parse_key(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn variables_expand_and_unknown_ones_are_named() {
        let env = |n: &str| (n == "SHA").then(|| "abc".to_string());
        assert_eq!(expand("r:${SHA}-$$x-$y", env).unwrap(), "r:abc-$x-$y");
        assert_eq!(expand("${NOPE}", env).unwrap_err(), "`${NOPE}` is not set");
        assert!(expand("${SHA", env).unwrap_err().contains("closing"));
    }
}
