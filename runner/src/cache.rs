//! Directory caches on the local disk: tar archives, content-addressed,
//! found by scope and key.
//!
//! A scope is a repository and a ref, as in GitHub Actions: untrusted code
//! (a fork's pull request) must not be able to put an archive where the
//! default branch will unpack it. A run reads the scopes of its
//! [`CacheScope`] in order and writes only its own; see
//! [`CacheScope::for_run`] for which scopes a run gets.
//!
//! Layout under the cache root:
//! - `blobs/<sha256>.tar`: an archive, named by the hash of its bytes,
//!   shared by every scope (a name that is a hash cannot be poisoned);
//! - `scopes/<sha256 of scope>/<sha256 of key>.json`: which blob a key of
//!   a scope holds, its size, and when it was made and last used. Hashed
//!   names, because scopes and keys come from branch names and pipeline
//!   files: `../` in either must not reach outside the root.
//!
//! Every file appears by `rename` of a finished temporary file, so a reader
//! (another run, another process) sees a whole entry or none. Two runs
//! saving the same key both write whole blobs; the last rename wins and
//! both are valid. A blob whose bytes no longer match its name is corrupt:
//! it is discarded with a warning and the lookup is a miss. Above the size
//! limit the least recently used keys go first, whatever their scope.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cache entry `{key}` in scope `{scope}`")]
    NotFound { scope: String, key: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The scope of `slipway run` on this machine: the user's own code, never
/// read by a server run.
pub const LOCAL_SCOPE: &str = "local";

/// What a run is of, as far as its caches' scope goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRef<'a> {
    Branch(&'a str),
    Tag(&'a str),
    /// A pull request, `base` the branch it targets.
    PullRequest {
        number: u64,
        base: &'a str,
    },
    /// Any other ref (a commit asked for by its sha, say).
    Other(&'a str),
}

/// Which scopes a run's caches are read from, and the one they are saved to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheScope {
    /// Where the run's saves go; `None`: it saves nothing.
    pub write: Option<String>,
    /// Searched in this order; the first scope with a hit (exact key or
    /// restore prefix) wins.
    pub read: Vec<String>,
}

impl CacheScope {
    /// Reads and writes `scope` alone.
    pub fn single(scope: &str) -> CacheScope {
        CacheScope {
            write: Some(scope.into()),
            read: vec![scope.into()],
        }
    }

    /// GitHub Actions' rules for a run of `repo`: a branch or tag reads its
    /// own scope, then the default branch's; a pull request reads
    /// `pr-<n>`, then its base branch's, then the default branch's, and
    /// writes only `pr-<n>`, which no other scope reads, so what a fork
    /// saves stays with its pull request. An untrusted run that is not a
    /// pull request has no scope of its own that nobody else reads: it
    /// saves nothing.
    pub fn for_run(repo: &str, of: RunRef, default_branch: &str, trusted: bool) -> CacheScope {
        // Full refs for branches and tags, so a branch called `pr-2` is
        // not pull request #2's scope.
        let branch = |b: &str| format!("{repo}:refs/heads/{b}");
        let (own, mut read) = match of {
            RunRef::Branch(b) => (branch(b), vec![]),
            RunRef::Tag(t) => (format!("{repo}:refs/tags/{t}"), vec![]),
            RunRef::PullRequest { number, base } => {
                (format!("{repo}:pr-{number}"), vec![branch(base)])
            }
            RunRef::Other(r) => (format!("{repo}:{r}"), vec![]),
        };
        read.insert(0, own.clone());
        read.push(branch(default_branch));
        let mut seen = std::collections::HashSet::new();
        read.retain(|s| seen.insert(s.clone()));
        let pull_request = matches!(of, RunRef::PullRequest { .. });
        CacheScope {
            write: (trusted || pull_request).then_some(own),
            read,
        }
    }
}

/// One key's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The scope it was saved in (see [`CacheScope`]).
    pub scope: String,
    pub key: String,
    /// sha256 of the archive, hex.
    pub blob: String,
    pub size: u64,
    pub created_ms: u64,
    pub used_ms: u64,
}

/// How a lookup was satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    Exact(Entry),
    /// The newest entry under one of the restore prefixes.
    Prefix(Entry),
}

impl Hit {
    pub fn entry(&self) -> &Entry {
        match self {
            Hit::Exact(e) | Hit::Prefix(e) => e,
        }
    }
}

#[derive(Debug)]
pub struct CacheStore {
    root: PathBuf,
    max_bytes: u64,
    /// Tells temporary files of this process apart.
    counter: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hashed(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

impl CacheStore {
    pub fn open(root: &Path, max_bytes: u64) -> Result<CacheStore, CacheError> {
        for dir in ["blobs", "scopes", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        // Keys from before scopes, one namespace for every repository and
        // fork: nothing says who wrote them, so none may be restored. Their
        // blobs go with the next eviction.
        let legacy = root.join("keys");
        if legacy.is_dir() {
            fs::remove_dir_all(&legacy).map_err(io_err(&legacy))?;
        }
        Ok(CacheStore {
            root: root.to_path_buf(),
            max_bytes,
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh temporary path inside the store (same file system, so a
    /// rename into place is atomic).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}-{}", std::process::id(), now_ms()))
    }

    fn scope_dir(&self, scope: &str) -> PathBuf {
        self.root.join("scopes").join(hashed(scope))
    }

    fn key_path(&self, scope: &str, key: &str) -> PathBuf {
        self.scope_dir(scope).join(format!("{}.json", hashed(key)))
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{blob}.tar"))
    }

    /// The entry stored for `key` in `scope`, if its file says it is that.
    fn read_key(&self, scope: &str, key: &str) -> Option<Entry> {
        read_entry(&self.key_path(scope, key)).filter(|e| e.scope == scope && e.key == key)
    }

    /// Every entry of every scope, newest use first.
    pub fn list(&self) -> Result<Vec<Entry>, CacheError> {
        let dir = self.root.join("scopes");
        let mut out = Vec::new();
        for item in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = item.map_err(io_err(&dir))?.path();
            if path.is_dir() {
                out.extend(entries_in(&path)?);
            }
        }
        out.sort_by(|a, b| {
            b.used_ms
                .cmp(&a.used_ms)
                .then(a.scope.cmp(&b.scope))
                .then(a.key.cmp(&b.key))
        });
        Ok(out)
    }

    /// Searches `scopes` in order; in each, the entry for `key`, else the
    /// newest one whose key starts with one of `prefixes` (tried in order).
    /// The first scope with a hit wins. A corrupt blob is discarded and
    /// skipped; `warn` hears about it.
    pub fn lookup(
        &self,
        scopes: &[String],
        key: &str,
        prefixes: &[String],
        mut warn: impl FnMut(String),
    ) -> Result<Option<Hit>, CacheError> {
        for scope in scopes {
            if let Some(entry) = self.read_key(scope, key)
                && self.verify(&entry, &mut warn)?
            {
                return Ok(Some(Hit::Exact(self.touch(entry))));
            }
            if prefixes.is_empty() {
                continue;
            }
            let all: Vec<Entry> = entries_in(&self.scope_dir(scope))?
                .into_iter()
                .filter(|e| e.scope == *scope)
                .collect();
            for prefix in prefixes {
                let mut candidates: Vec<&Entry> = all
                    .iter()
                    .filter(|e| e.key.starts_with(prefix.as_str()))
                    .collect();
                candidates.sort_by_key(|e| std::cmp::Reverse(e.created_ms));
                for entry in candidates {
                    if self.verify(entry, &mut warn)? {
                        return Ok(Some(Hit::Prefix(self.touch(entry.clone()))));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether the blob is whole; a corrupt one is removed with its key.
    fn verify(&self, entry: &Entry, warn: &mut impl FnMut(String)) -> Result<bool, CacheError> {
        let path = self.blob_path(&entry.blob);
        let key_path = self.key_path(&entry.scope, &entry.key);
        let actual = match File::open(&path).and_then(|f| hash_reader(f).map(|(h, _)| h)) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                warn(format!(
                    "cache `{}`: its archive is missing; ignored",
                    entry.key
                ));
                let _ = fs::remove_file(key_path);
                return Ok(false);
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if actual != entry.blob {
            warn(format!(
                "cache `{}`: archive is corrupt (sha256 {actual}, expected {}); discarded",
                entry.key, entry.blob
            ));
            let _ = fs::remove_file(key_path);
            let _ = fs::remove_file(&path);
            return Ok(false);
        }
        Ok(true)
    }

    fn touch(&self, mut entry: Entry) -> Entry {
        entry.used_ms = now_ms();
        // Best effort: a lost timestamp only makes eviction less precise.
        let _ = self.write_entry(&entry);
        entry
    }

    fn write_entry(&self, entry: &Entry) -> Result<(), CacheError> {
        let tmp = self.temp_path("key");
        let json = serde_json::to_vec_pretty(entry).map_err(|e| CacheError::Io {
            path: tmp.clone(),
            source: io::Error::other(e),
        })?;
        fs::write(&tmp, json).map_err(io_err(&tmp))?;
        let dir = self.scope_dir(&entry.scope);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = self.key_path(&entry.scope, &entry.key);
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Stores the finished archive at `archive` (a path from
    /// [`CacheStore::temp_path`]) under `key` in `scope`, then evicts down
    /// to the limit.
    pub fn save(&self, scope: &str, key: &str, archive: &Path) -> Result<Entry, CacheError> {
        let (blob, size) = File::open(archive)
            .and_then(hash_reader)
            .map_err(io_err(archive))?;
        let target = self.blob_path(&blob);
        if target.exists() {
            let _ = fs::remove_file(archive);
        } else {
            fs::rename(archive, &target).map_err(io_err(&target))?;
        }
        let now = now_ms();
        let entry = Entry {
            scope: scope.into(),
            key: key.into(),
            blob,
            size,
            created_ms: now,
            used_ms: now,
        };
        self.write_entry(&entry)?;
        self.evict(self.max_bytes)?;
        Ok(entry)
    }

    /// Removes one key of one scope (its blob too, unless another key
    /// shares it).
    pub fn remove(&self, scope: &str, key: &str) -> Result<Entry, CacheError> {
        let entry = self
            .read_key(scope, key)
            .ok_or_else(|| CacheError::NotFound {
                scope: scope.into(),
                key: key.into(),
            })?;
        let path = self.key_path(scope, key);
        fs::remove_file(&path).map_err(io_err(&path))?;
        self.remove_unreferenced()?;
        Ok(entry)
    }

    /// Drops least recently used keys, of any scope, until the blobs fit in
    /// `max_bytes`, and any blob or temporary file nothing refers to.
    /// Returns the entries removed.
    pub fn evict(&self, max_bytes: u64) -> Result<Vec<Entry>, CacheError> {
        let mut entries = self.list()?;
        entries.reverse(); // oldest use first
        let mut total = self.blob_bytes()?;
        let mut removed = Vec::new();
        while total > max_bytes {
            let Some(oldest) = entries.first().cloned() else {
                break;
            };
            entries.remove(0);
            let _ = fs::remove_file(self.key_path(&oldest.scope, &oldest.key));
            if !entries.iter().any(|e| e.blob == oldest.blob) {
                let _ = fs::remove_file(self.blob_path(&oldest.blob));
                total = total.saturating_sub(oldest.size);
            }
            removed.push(oldest);
        }
        self.remove_unreferenced()?;
        Ok(removed)
    }

    fn blob_bytes(&self) -> Result<u64, CacheError> {
        let dir = self.root.join("blobs");
        let mut total = 0;
        for item in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let item = item.map_err(io_err(&dir))?;
            total += item.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }

    fn remove_unreferenced(&self) -> Result<(), CacheError> {
        let referenced: std::collections::HashSet<String> =
            self.list()?.into_iter().map(|e| e.blob).collect();
        let dir = self.root.join("blobs");
        for item in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = item.map_err(io_err(&dir))?.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            // A blob renamed into place just before its key is written is
            // young; leave anything under a minute old alone.
            let young = path
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 60);
            if !referenced.contains(stem) && !young {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

/// The entries in one scope's directory (none if it does not exist yet).
fn entries_in(dir: &Path) -> Result<Vec<Entry>, CacheError> {
    let items = match fs::read_dir(dir) {
        Ok(items) => items,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for item in items {
        let path = item.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(entry) = read_entry(&path)
        {
            out.push(entry);
        }
    }
    Ok(out)
}

fn read_entry(path: &Path) -> Option<Entry> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// sha256 (hex) and length of everything `r` yields.
pub fn hash_reader(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W: Write> {
    pub inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
        }
    }
    pub fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `500MB`, `10GiB`, `1024` (bytes): the one size syntax of pipeline
/// files and server configs.
pub use slipway_engine::size::parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: u64) -> (CacheStore, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "slipway-cache-test-{}-{}",
            std::process::id(),
            now_ms() ^ rand_bits()
        ));
        (CacheStore::open(&dir, max).unwrap(), dir)
    }

    fn rand_bits() -> u64 {
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed) << 40
    }

    fn archive(store: &CacheStore, content: &[u8]) -> PathBuf {
        let p = store.temp_path("test");
        fs::write(&p, content).unwrap();
        p
    }

    /// The scope most tests save in and read from.
    const S: &str = "acme/web:refs/heads/main";

    fn only(scope: &str) -> Vec<String> {
        vec![scope.to_string()]
    }

    fn no_warn(w: String) {
        panic!("unexpected warning: {w}")
    }

    #[test]
    fn exact_key_then_newest_prefix_match() {
        let (s, dir) = store(u64::MAX);
        s.save(S, "deps-aaa", &archive(&s, b"one")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.save(S, "deps-bbb", &archive(&s, b"two")).unwrap();
        s.save(S, "other-1", &archive(&s, b"three")).unwrap();
        let hit = s
            .lookup(&only(S), "deps-aaa", &[], no_warn)
            .unwrap()
            .unwrap();
        assert!(matches!(&hit, Hit::Exact(e) if e.key == "deps-aaa"));
        assert_eq!(fs::read(s.blob_path(&hit.entry().blob)).unwrap(), b"one");
        let hit = s
            .lookup(
                &only(S),
                "deps-ccc",
                &["nope-".into(), "deps-".into()],
                no_warn,
            )
            .unwrap()
            .unwrap();
        assert!(
            matches!(&hit, Hit::Prefix(e) if e.key == "deps-bbb"),
            "{hit:?}"
        );
        assert_eq!(s.lookup(&only(S), "deps-ccc", &[], no_warn).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_archive_is_discarded_with_a_warning_and_misses() {
        let (s, dir) = store(u64::MAX);
        let e = s.save(S, "k", &archive(&s, b"good bytes")).unwrap();
        fs::write(s.blob_path(&e.blob), b"bad bytes!").unwrap();
        let mut warnings = Vec::new();
        assert_eq!(
            s.lookup(&only(S), "k", &["k".into()], |w| warnings.push(w))
                .unwrap(),
            None
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("corrupt"), "{warnings:?}");
        assert!(s.list().unwrap().is_empty());
        assert!(!s.blob_path(&e.blob).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn least_recently_used_keys_of_any_scope_go_first_above_the_limit() {
        let (s, dir) = store(250);
        let blob = |c: u8| vec![c; 100];
        s.save(S, "a", &archive(&s, &blob(1))).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.save("acme/web:pr-2", "b", &archive(&s, &blob(2)))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Using `a` makes `b` the least recently used.
        s.lookup(&only(S), "a", &[], no_warn).unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.save(S, "c", &archive(&s, &blob(3))).unwrap();
        let keys: Vec<String> = s.list().unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["c", "a"]);
        assert_eq!(s.blob_bytes().unwrap(), 200);
        assert_eq!(s.evict(0).unwrap().len(), 2);
        assert!(s.list().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    const MAIN: &str = "acme/web:refs/heads/main";
    const PR: &str = "acme/web:pr-2";

    #[test]
    fn scopes_follow_github_actions_a_pull_request_reads_its_own_then_base_then_default() {
        let pr = CacheScope::for_run(
            "acme/web",
            RunRef::PullRequest {
                number: 2,
                base: "release",
            },
            "main",
            true,
        );
        assert_eq!(pr.write.as_deref(), Some(PR));
        assert_eq!(
            pr.read,
            [PR, "acme/web:refs/heads/release", MAIN].map(String::from)
        );
        // A fork's pull request reads the same, and writes only its own
        // scope, which the next assertions show nobody else reads.
        let fork = CacheScope::for_run(
            "acme/web",
            RunRef::PullRequest {
                number: 2,
                base: "main",
            },
            "main",
            false,
        );
        assert_eq!(fork.write.as_deref(), Some(PR));
        assert_eq!(fork.read, [PR, MAIN].map(String::from));
        let main = CacheScope::for_run("acme/web", RunRef::Branch("main"), "main", true);
        assert_eq!(main, CacheScope::single(MAIN));
        let feature = CacheScope::for_run("acme/web", RunRef::Branch("pr-2"), "main", true);
        assert_eq!(
            feature.write.as_deref(),
            Some("acme/web:refs/heads/pr-2"),
            "a branch named like a pull request is not its scope"
        );
        assert_eq!(
            feature.read,
            ["acme/web:refs/heads/pr-2", MAIN].map(String::from)
        );
        let tag = CacheScope::for_run("acme/web", RunRef::Tag("v1"), "main", true);
        assert_eq!(tag.read, ["acme/web:refs/tags/v1", MAIN].map(String::from));
        let other = CacheScope::for_run("acme/web", RunRef::Other("a1b2"), "main", true);
        assert_eq!(other.read, ["acme/web:a1b2", MAIN].map(String::from));
        for reader in [&main, &feature, &tag, &other] {
            assert!(
                !reader.read.iter().any(|r| r.contains(":pr-")),
                "{reader:?}"
            );
        }
        // Untrusted code that is no pull request has no scope of its own.
        let untrusted = CacheScope::for_run("acme/web", RunRef::Branch("x"), "main", false);
        assert_eq!(untrusted.write, None);
        // Scopes of another repository are never read.
        let other_repo = CacheScope::for_run("acme/api", RunRef::Branch("main"), "main", true);
        assert_eq!(
            other_repo.read,
            ["acme/api:refs/heads/main"].map(String::from)
        );
    }

    #[test]
    fn the_default_branch_never_restores_what_a_pull_request_saved() {
        let (s, dir) = store(u64::MAX);
        let main_reads = CacheScope::for_run("acme/web", RunRef::Branch("main"), "main", true);
        let pr_reads = CacheScope::for_run(
            "acme/web",
            RunRef::PullRequest {
                number: 2,
                base: "main",
            },
            "main",
            false,
        );
        s.save(MAIN, "deps-main", &archive(&s, b"main's")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Newer, and under the same prefix: flat, it would win.
        s.save(PR, "deps-zzzz-fork", &archive(&s, b"fork's"))
            .unwrap();
        let prefixes = ["deps-".to_string()];
        let hit = s
            .lookup(&main_reads.read, "deps-new", &prefixes, no_warn)
            .unwrap()
            .unwrap();
        assert!(
            matches!(&hit, Hit::Prefix(e) if e.key == "deps-main" && e.scope == MAIN),
            "{hit:?}"
        );
        assert_eq!(
            s.lookup(&main_reads.read, "deps-zzzz-fork", &[], no_warn)
                .unwrap(),
            None,
            "not even by its exact key"
        );
        // The pull request finds its own entry first.
        let hit = s
            .lookup(&pr_reads.read, "deps-new", &prefixes, no_warn)
            .unwrap()
            .unwrap();
        assert!(matches!(&hit, Hit::Prefix(e) if e.scope == PR), "{hit:?}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn scopes_are_searched_in_order_and_the_first_with_any_hit_wins() {
        let (s, dir) = store(u64::MAX);
        let reads = [PR.to_string(), MAIN.to_string()];
        s.save(MAIN, "deps-a", &archive(&s, b"main a")).unwrap();
        // With nothing in its own scope, the pull request gets the default
        // branch's entry, by exact key or by prefix.
        let hit = s.lookup(&reads, "deps-a", &[], no_warn).unwrap().unwrap();
        assert!(matches!(&hit, Hit::Exact(e) if e.scope == MAIN), "{hit:?}");
        // A prefix hit in its own scope comes before an exact one further on.
        s.save(PR, "deps-b", &archive(&s, b"pr b")).unwrap();
        let prefixes = ["deps-".to_string()];
        let hit = s
            .lookup(&reads, "deps-a", &prefixes, no_warn)
            .unwrap()
            .unwrap();
        assert!(
            matches!(&hit, Hit::Prefix(e) if e.key == "deps-b" && e.scope == PR),
            "{hit:?}"
        );
        // One key in two scopes is two entries.
        s.save(PR, "deps-a", &archive(&s, b"pr a")).unwrap();
        let main_a = s
            .lookup(&reads[1..], "deps-a", &[], no_warn)
            .unwrap()
            .unwrap();
        assert_eq!(
            fs::read(s.blob_path(&main_a.entry().blob)).unwrap(),
            b"main a"
        );
        assert_eq!(s.list().unwrap().len(), 3);
        s.remove(PR, "deps-a").unwrap();
        assert!(
            s.lookup(&reads[1..], "deps-a", &[], no_warn)
                .unwrap()
                .is_some()
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keys_and_scopes_that_climb_stay_inside_the_cache_root() {
        let parent = std::env::temp_dir().join(format!(
            "slipway-cache-climb-{}-{}",
            std::process::id(),
            now_ms() ^ rand_bits()
        ));
        let s = CacheStore::open(&parent.join("cache"), u64::MAX).unwrap();
        for (scope, key) in [
            (S, "../../escape"),
            ("../../../x", "k"),
            ("acme/web:refs/heads/a/../../..", "/abs/../../k"),
        ] {
            let e = s.save(scope, key, &archive(&s, b"x")).unwrap();
            let hit = s.lookup(&only(scope), key, &[], no_warn).unwrap().unwrap();
            assert_eq!(
                hit.entry(),
                &Entry {
                    used_ms: hit.entry().used_ms,
                    ..e
                }
            );
        }
        let beside: Vec<_> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["cache"]);
        assert_eq!(s.list().unwrap().len(), 3);
        fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn unscoped_keys_from_before_scopes_are_never_restored() {
        let (s, dir) = store(u64::MAX);
        let e = s.save(S, "deps-a", &archive(&s, b"x")).unwrap();
        fs::create_dir_all(dir.join("keys")).unwrap();
        let legacy = serde_json::json!({
            "key": "deps-zzzz-fork", "blob": e.blob, "size": e.size,
            "created_ms": e.created_ms, "used_ms": e.used_ms,
        });
        fs::write(dir.join("keys/deps-zzzz-fork.json"), legacy.to_string()).unwrap();
        let s = CacheStore::open(&dir, u64::MAX).unwrap();
        assert!(!dir.join("keys").exists());
        assert_eq!(s.list().unwrap().len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_saves_of_one_key_leave_one_whole_entry() {
        let (s, dir) = store(u64::MAX);
        let s = std::sync::Arc::new(s);
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let content = vec![i; 200_000];
                    let p = s.temp_path("t");
                    fs::write(&p, &content).unwrap();
                    s.save(S, "same", &p).unwrap();
                })
            })
            .collect();
        // Readers meanwhile see a whole entry or none, never a torn one.
        for _ in 0..50 {
            if let Some(hit) = s.lookup(&only(S), "same", &[], no_warn).unwrap() {
                let bytes = fs::read(s.blob_path(&hit.entry().blob)).unwrap();
                assert_eq!(bytes.len(), 200_000);
                assert!(bytes.iter().all(|b| *b == bytes[0]));
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        let all = s.list().unwrap();
        assert_eq!(all.len(), 1);
        let hit = s.lookup(&only(S), "same", &[], no_warn).unwrap().unwrap();
        assert_eq!(hit.entry().size, 200_000);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn removing_a_key_removes_its_archive() {
        let (s, dir) = store(u64::MAX);
        let e = s.save(S, "k", &archive(&s, b"x")).unwrap();
        // Old enough to count as unreferenced once the key is gone.
        let old = SystemTime::now() - std::time::Duration::from_secs(120);
        File::options()
            .write(true)
            .open(s.blob_path(&e.blob))
            .unwrap()
            .set_modified(old)
            .unwrap();
        s.remove(S, "k").unwrap();
        assert!(!s.blob_path(&e.blob).exists());
        assert!(matches!(s.remove(S, "k"), Err(CacheError::NotFound { .. })));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("5 gb"), Some(5_000_000_000));
        assert_eq!(parse_size("lots"), None);
    }
}
