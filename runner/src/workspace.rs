//! What of the user's tree goes into a run's workspace, packed as a tar.
//!
//! Inside a git work tree we copy what git would see (tracked files plus
//! untracked ones that are not ignored), so `target/` or `node_modules/`
//! never slow a run down; elsewhere, every file but `.git`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files of the tree at `root`, as paths relative to it, sorted.
pub fn list_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    if let Some(files) = git_files(root) {
        return Ok(files);
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

fn git_files(root: &Path) -> Option<Vec<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let mut files: Vec<PathBuf> = output
        .stdout
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
        // Deleted but still in the index.
        .filter(|p| root.join(p).symlink_metadata().is_ok())
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let path = rel.join(&name);
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Writes the files as a tar (modes and symlinks kept) to `writer`. Blocking.
pub fn write_tar(root: &Path, files: &[PathBuf], writer: impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(writer);
    tar.follow_symlinks(false);
    for f in files {
        tar.append_path_with_name(root.join(f), f)?;
    }
    tar.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_without_git_and_packs_a_readable_tar() {
        let dir = std::env::temp_dir().join(format!("slipway-ws-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/deep")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("a.txt"), "a").unwrap();
        std::fs::write(dir.join("src/deep/b.txt"), "b").unwrap();
        std::fs::write(dir.join(".git/HEAD"), "x").unwrap();
        let files = walk_only(&dir);
        assert_eq!(
            files,
            [PathBuf::from("a.txt"), PathBuf::from("src/deep/b.txt")]
        );
        let mut buf = Vec::new();
        write_tar(&dir, &files, &mut buf).unwrap();
        let names: Vec<String> = tar::Archive::new(&buf[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "src/deep/b.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn walk_only(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(root, Path::new(""), &mut out).unwrap();
        out.sort();
        out
    }
}
