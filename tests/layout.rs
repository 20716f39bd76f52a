//! The source tree says what the docs say it is: every module file is named
//! in its crate's `//!` module list (or its folder's), ARCHITECTURE.md names
//! every top-level module, and the api crate's layers only call downwards.
//! Reads files only: runs in milliseconds, no Docker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, relative to it, with `/` separators.
fn rust_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(dir).expect("under dir");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// The `//!` lines of a file, joined.
fn module_doc(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files of `crate_dir/src` not named in the crate root's module list nor
/// in their own folder's `mod.rs` list.
fn unnamed_modules(crate_dir: &str) -> Vec<String> {
    let src = root().join(crate_dir).join("src");
    let lib_doc = module_doc(&src.join("lib.rs"));
    let mut missing = Vec::new();
    for rel in rust_files(&src) {
        if ["lib.rs", "main.rs"].contains(&rel.as_str()) || rel.ends_with("/mod.rs") {
            continue;
        }
        let (folder, file) = rel.rsplit_once('/').unwrap_or(("", &rel));
        let name = file.trim_end_matches(".rs");
        let mut docs = lib_doc.clone();
        if !folder.is_empty() {
            let folder_doc = src.join(folder).join("mod.rs");
            if folder_doc.exists() {
                docs.push_str(&module_doc(&folder_doc));
            }
        }
        let named = [format!("`{name}`"), format!("`{file}`"), format!("`{rel}`")]
            .iter()
            .any(|n| docs.contains(n.as_str()));
        if !named {
            missing.push(format!("{crate_dir}/src/{rel}"));
        }
    }
    missing
}

#[test]
fn every_module_file_is_named_in_its_module_list() {
    let missing: Vec<String> = ["engine", "runner", "api"]
        .into_iter()
        .flat_map(unnamed_modules)
        .collect();
    assert!(
        missing.is_empty(),
        "not named in a `//!` module list (lib.rs, or the folder's mod.rs): {missing:?}"
    );
}

/// A module of a crate's top level: `src/x.rs` or `src/x/`.
fn top_level_modules(crate_dir: &str) -> BTreeSet<String> {
    let src = root().join(crate_dir).join("src");
    rust_files(&src)
        .into_iter()
        .filter(|r| !["lib.rs", "main.rs"].contains(&r.as_str()))
        .map(|r| {
            r.split('/')
                .next()
                .expect("a path")
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect()
}

#[test]
fn architecture_names_every_top_level_module() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for krate in ["engine", "runner", "api"] {
        let src = root().join(krate).join("src");
        for m in top_level_modules(krate) {
            // A folder module is named as the folder, a file module as the file.
            let name = if src.join(&m).is_dir() {
                format!("{krate}/src/{m}/")
            } else {
                format!("{krate}/src/{m}.rs")
            };
            if !arch.contains(&name) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name: {missing:?}"
    );
}

/// `crate::x` paths a file uses.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let start = i + "crate::".len();
        let word: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let before = text[..i].chars().last();
        // `slipway_api::crate` never occurs; `$crate::` (macros) is not ours.
        if !word.is_empty() && before != Some('$') && before.is_none_or(|c| !c.is_alphanumeric()) {
            out.insert(word);
        }
    }
    out
}

#[test]
fn api_layers_only_call_downwards() {
    // layer -> modules it must never use.
    let rules: [(&str, &[&str]); 5] = [
        ("store", &["http", "runs", "release", "forge", "serve"]),
        ("forge", &["http", "runs", "release", "serve"]),
        ("runs", &["http", "release", "serve"]),
        ("release", &["http", "serve"]),
        ("http", &["serve"]),
    ];
    let src = root().join("api/src");
    let mut broken = Vec::new();
    for (layer, forbidden) in rules {
        for rel in rust_files(&src.join(layer)) {
            let text = std::fs::read_to_string(src.join(layer).join(&rel)).expect("source");
            for used in crate_paths(&text) {
                if forbidden.contains(&used.as_str()) {
                    broken.push(format!("api/src/{layer}/{rel} uses crate::{used}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "a lower layer reaches up: {broken:#?}");
}
