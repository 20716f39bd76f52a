//! Directory caches on the local disk: tar archives, content-addressed,
//! found by key.
//!
//! Layout under the cache root:
//! - `blobs/<sha256>.tar`: an archive, named by the hash of its bytes;
//! - `keys/<key>.json`: which blob a key holds, its size, and when it was
//!   made and last used.
//!
//! Every file appears by `rename` of a finished temporary file, so a reader
//! (another run, another process) sees a whole entry or none. Two runs
//! saving the same key both write whole blobs; the last rename wins and
//! both are valid. A blob whose bytes no longer match its name is corrupt:
//! it is discarded with a warning and the lookup is a miss. Above the size
//! limit the least recently used keys go first.

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
    #[error("no cache entry `{0}`")]
    NotFound(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One key's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
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

impl CacheStore {
    pub fn open(root: &Path, max_bytes: u64) -> Result<CacheStore, CacheError> {
        for dir in ["blobs", "keys", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_err(&d))?;
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

    fn key_path(&self, key: &str) -> PathBuf {
        self.root.join("keys").join(format!("{key}.json"))
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{blob}.tar"))
    }

    /// Every entry, newest use first.
    pub fn list(&self) -> Result<Vec<Entry>, CacheError> {
        let dir = self.root.join("keys");
        let mut out = Vec::new();
        for item in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = item.map_err(io_err(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(entry) = read_entry(&path)
            {
                out.push(entry);
            }
        }
        out.sort_by(|a, b| b.used_ms.cmp(&a.used_ms).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    /// The entry for `key`, else the newest one whose key starts with one of
    /// `prefixes` (tried in order). A corrupt blob is discarded and skipped;
    /// `warn` hears about it.
    pub fn lookup(
        &self,
        key: &str,
        prefixes: &[String],
        mut warn: impl FnMut(String),
    ) -> Result<Option<Hit>, CacheError> {
        if let Some(entry) = read_entry(&self.key_path(key))
            && self.verify(&entry, &mut warn)?
        {
            return Ok(Some(Hit::Exact(self.touch(entry))));
        }
        let all = self.list()?;
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
        Ok(None)
    }

    /// Whether the blob is whole; a corrupt one is removed with its key.
    fn verify(&self, entry: &Entry, warn: &mut impl FnMut(String)) -> Result<bool, CacheError> {
        let path = self.blob_path(&entry.blob);
        let actual = match File::open(&path).and_then(|f| hash_reader(f).map(|(h, _)| h)) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                warn(format!(
                    "cache `{}`: its archive is missing; ignored",
                    entry.key
                ));
                let _ = fs::remove_file(self.key_path(&entry.key));
                return Ok(false);
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if actual != entry.blob {
            warn(format!(
                "cache `{}`: archive is corrupt (sha256 {actual}, expected {}); discarded",
                entry.key, entry.blob
            ));
            let _ = fs::remove_file(self.key_path(&entry.key));
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
        let path = self.key_path(&entry.key);
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Stores the finished archive at `archive` (a path from
    /// [`CacheStore::temp_path`]) under `key`, then evicts down to the limit.
    pub fn save(&self, key: &str, archive: &Path) -> Result<Entry, CacheError> {
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

    /// Removes one key (its blob too, unless another key shares it).
    pub fn remove(&self, key: &str) -> Result<Entry, CacheError> {
        let path = self.key_path(key);
        let entry = read_entry(&path).ok_or_else(|| CacheError::NotFound(key.into()))?;
        fs::remove_file(&path).map_err(io_err(&path))?;
        self.remove_unreferenced()?;
        Ok(entry)
    }

    /// Drops least recently used keys until the blobs fit in `max_bytes`,
    /// and any blob or temporary file nothing refers to. Returns the keys
    /// removed.
    pub fn evict(&self, max_bytes: u64) -> Result<Vec<String>, CacheError> {
        let mut entries = self.list()?;
        entries.reverse(); // oldest use first
        let mut total = self.blob_bytes()?;
        let mut removed = Vec::new();
        while total > max_bytes {
            let Some(oldest) = entries.first().cloned() else {
                break;
            };
            entries.remove(0);
            let _ = fs::remove_file(self.key_path(&oldest.key));
            removed.push(oldest.key.clone());
            if !entries.iter().any(|e| e.blob == oldest.blob) {
                let _ = fs::remove_file(self.blob_path(&oldest.blob));
                total = total.saturating_sub(oldest.size);
            }
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

/// `500MB`, `10GiB`, `1024` (bytes).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        _ => return None,
    };
    Some((n * mult) as u64)
}

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

    fn no_warn(w: String) {
        panic!("unexpected warning: {w}")
    }

    #[test]
    fn exact_key_then_newest_prefix_match() {
        let (s, dir) = store(u64::MAX);
        s.save("deps-aaa", &archive(&s, b"one")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.save("deps-bbb", &archive(&s, b"two")).unwrap();
        s.save("other-1", &archive(&s, b"three")).unwrap();
        let hit = s.lookup("deps-aaa", &[], no_warn).unwrap().unwrap();
        assert!(matches!(&hit, Hit::Exact(e) if e.key == "deps-aaa"));
        assert_eq!(fs::read(s.blob_path(&hit.entry().blob)).unwrap(), b"one");
        let hit = s
            .lookup("deps-ccc", &["nope-".into(), "deps-".into()], no_warn)
            .unwrap()
            .unwrap();
        assert!(
            matches!(&hit, Hit::Prefix(e) if e.key == "deps-bbb"),
            "{hit:?}"
        );
        assert_eq!(s.lookup("deps-ccc", &[], no_warn).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupt_archive_is_discarded_with_a_warning_and_misses() {
        let (s, dir) = store(u64::MAX);
        let e = s.save("k", &archive(&s, b"good bytes")).unwrap();
        fs::write(s.blob_path(&e.blob), b"bad bytes!").unwrap();
        let mut warnings = Vec::new();
        assert_eq!(
            s.lookup("k", &["k".into()], |w| warnings.push(w)).unwrap(),
            None
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("corrupt"), "{warnings:?}");
        assert!(s.list().unwrap().is_empty());
        assert!(!s.blob_path(&e.blob).exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn least_recently_used_keys_go_first_above_the_limit() {
        let (s, dir) = store(250);
        let blob = |c: u8| vec![c; 100];
        s.save("a", &archive(&s, &blob(1))).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.save("b", &archive(&s, &blob(2))).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Using `a` makes `b` the least recently used.
        s.lookup("a", &[], no_warn).unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        s.save("c", &archive(&s, &blob(3))).unwrap();
        let keys: Vec<String> = s.list().unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["c", "a"]);
        assert_eq!(s.blob_bytes().unwrap(), 200);
        assert_eq!(s.evict(0).unwrap().len(), 2);
        assert!(s.list().unwrap().is_empty());
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
                    s.save("same", &p).unwrap();
                })
            })
            .collect();
        // Readers meanwhile see a whole entry or none, never a torn one.
        for _ in 0..50 {
            if let Some(hit) = s.lookup("same", &[], no_warn).unwrap() {
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
        let hit = s.lookup("same", &[], no_warn).unwrap().unwrap();
        assert_eq!(hit.entry().size, 200_000);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn removing_a_key_removes_its_archive() {
        let (s, dir) = store(u64::MAX);
        let e = s.save("k", &archive(&s, b"x")).unwrap();
        // Old enough to count as unreferenced once the key is gone.
        let old = SystemTime::now() - std::time::Duration::from_secs(120);
        File::options()
            .write(true)
            .open(s.blob_path(&e.blob))
            .unwrap()
            .set_modified(old)
            .unwrap();
        s.remove("k").unwrap();
        assert!(!s.blob_path(&e.blob).exists());
        assert!(matches!(s.remove("k"), Err(CacheError::NotFound(_))));
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
