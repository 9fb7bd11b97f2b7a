//! The active policy set and its reload from the policy directory.
//!
//! The directory is polled and fingerprinted by content, following symlinks and skipping
//! dot-entries. A ConfigMap volume is `name.yaml -> ..data/name.yaml` with `..data` an atomic
//! symlink to a timestamped directory; the kubelet swaps `..data`, the files behind the
//! visible names change, and the fingerprint with them. A set that fails to load is rejected
//! whole and the last good one stays active.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::policy::{PolicyErrors, PolicySet};

/// Symlinked directories can loop; a policy tree is never this deep.
const MAX_DEPTH: usize = 16;

/// What a poll of the policy directory found.
#[derive(Debug)]
pub enum PolicyPoll {
    Unchanged,
    Loaded { generation: u64, names: Vec<String> },
    Failed(PolicyErrors),
}

#[derive(Debug)]
pub struct PolicyStore {
    dir: PathBuf,
    current: RwLock<Option<Arc<PolicySet>>>,
    generation: AtomicU64,
    last_seen: Mutex<Option<u64>>,
}

impl PolicyStore {
    pub fn new(dir: PathBuf) -> PolicyStore {
        PolicyStore {
            dir,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            last_seen: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The active set, `None` before the first good load.
    pub fn current(&self) -> Option<Arc<PolicySet>> {
        self.current.read().ok().and_then(|c| c.clone())
    }

    /// 0 before the first good load, then +1 per accepted set.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// If the directory's content changed since the last poll, load it. Blocking.
    pub fn poll(&self) -> PolicyPoll {
        let mut hasher = DefaultHasher::new();
        fingerprint(&self.dir, 0, &mut hasher);
        let fp = hasher.finish();
        {
            let Ok(mut last) = self.last_seen.lock() else {
                return PolicyPoll::Unchanged;
            };
            if *last == Some(fp) {
                return PolicyPoll::Unchanged;
            }
            *last = Some(fp);
        }
        match PolicySet::load_dir(&self.dir) {
            Ok(set) => {
                let names = set.names().to_vec();
                if let Ok(mut current) = self.current.write() {
                    *current = Some(Arc::new(set));
                }
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                PolicyPoll::Loaded { generation, names }
            }
            Err(errors) => PolicyPoll::Failed(errors),
        }
    }
}

/// Hash the names and contents of the files under `path`, in a stable order.
fn fingerprint(path: &Path, depth: usize, hasher: &mut DefaultHasher) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => {
            (path, e.kind() as u32, e.to_string()).hash(hasher);
            return;
        }
    };
    let mut names: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    names.sort();
    for name in names {
        let child = path.join(&name);
        name.hash(hasher);
        // fs::metadata follows symlinks, as the loader does.
        match fs::metadata(&child) {
            Ok(m) if m.is_dir() => fingerprint(&child, depth + 1, hasher),
            Ok(_) => match fs::read(&child) {
                Ok(bytes) => bytes.hash(hasher),
                Err(e) => e.to_string().hash(hasher),
            },
            Err(e) => e.to_string().hash(hasher),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_symlink_swaps_and_ignores_dot_entries() {
        let dir = std::env::temp_dir().join(format!("sa-reload-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("..v1")).unwrap();
        fs::create_dir_all(dir.join("..v2")).unwrap();
        fs::write(dir.join("..v1/p.yaml"), "a: 1").unwrap();
        fs::write(dir.join("..v2/p.yaml"), "a: 2").unwrap();
        std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.yaml", dir.join("p.yaml")).unwrap();
        let fp = || {
            let mut h = DefaultHasher::new();
            fingerprint(&dir, 0, &mut h);
            h.finish()
        };
        let first = fp();
        assert_eq!(first, fp());
        std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
        fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        assert_ne!(first, fp());
        fs::remove_dir_all(&dir).unwrap();
    }
}
