//! The active policy set and its reload from the policy directory.
//!
//! The directory is polled and its policy files read (following symlinks, skipping
//! dot-entries, exactly as the loader does: [`crate::policy::load::read_dir`]). A ConfigMap
//! volume is `name.yaml -> ..data/name.yaml` with `..data` an atomic symlink to a timestamped
//! directory; the kubelet swaps `..data`, and the next poll sees new contents. A set is taken
//! only when a second read, a moment later, finds the same contents (so a file caught in the
//! middle of an in-place rewrite is never loaded), and only if it is valid as a whole;
//! otherwise the last good set stays active.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::policy::load::{load_snapshot, read_dir};
use crate::policy::{PolicyErrors, PolicySet};

/// What a poll of the policy directory found.
#[derive(Debug)]
pub enum PolicyPoll {
    Unchanged,
    /// The contents changed between two reads (being written): try again at the next poll.
    Unsettled,
    Loaded {
        generation: u64,
        names: Vec<String>,
        /// kustomize's files found beside the policies, not read (said in the log).
        ignored: Vec<PathBuf>,
    },
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

    /// If the directory's contents changed since the last poll and read the same again after
    /// `settle`, load them. Blocking (reads files, sleeps `settle`).
    pub fn poll(&self, settle: Duration) -> PolicyPoll {
        let first = read_dir(&self.dir);
        let fingerprint = {
            let mut hasher = DefaultHasher::new();
            match &first {
                Ok(snapshot) => snapshot.hash(&mut hasher),
                Err(errors) => errors.to_string().hash(&mut hasher),
            }
            hasher.finish()
        };
        let Ok(last) = self.last_seen.lock().map(|l| *l) else {
            return PolicyPoll::Unchanged;
        };
        if last == Some(fingerprint) {
            return PolicyPoll::Unchanged;
        }
        let snapshot = match first {
            Ok(snapshot) => snapshot,
            Err(errors) => {
                self.remember(fingerprint);
                return PolicyPoll::Failed(errors);
            }
        };
        std::thread::sleep(settle);
        if read_dir(&self.dir).ok().as_ref() != Some(&snapshot) {
            return PolicyPoll::Unsettled;
        }
        self.remember(fingerprint);
        match load_snapshot(&snapshot) {
            Ok(set) => {
                let names = set.names().to_vec();
                if let Ok(mut current) = self.current.write() {
                    *current = Some(Arc::new(set));
                }
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                PolicyPoll::Loaded {
                    generation,
                    names,
                    ignored: snapshot.ignored().to_vec(),
                }
            }
            Err(errors) => PolicyPoll::Failed(errors),
        }
    }

    fn remember(&self, fingerprint: u64) {
        if let Ok(mut last) = self.last_seen.lock() {
            *last = Some(fingerprint);
        }
    }
}

/// How long a reload waits before reading the directory a second time: long enough for a
/// writer to be caught in the act, short against the poll interval.
pub fn settle_time(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const POLICY: &str = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\n\
                          metadata: {name: p}\nspec: {match: {roles: [driver]}, \
                          tolerations: [{key: k, operator: Exists}]}\n";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sa-reload-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_kubelet_symlink_swap_is_loaded_and_dot_entries_are_not_read_twice() {
        let dir = temp_dir("swap");
        fs::create_dir_all(dir.join("..v1")).unwrap();
        fs::create_dir_all(dir.join("..v2")).unwrap();
        fs::write(dir.join("..v1/p.yaml"), POLICY).unwrap();
        fs::write(
            dir.join("..v2/p.yaml"),
            POLICY.replace("name: p", "name: q"),
        )
        .unwrap();
        std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/p.yaml", dir.join("p.yaml")).unwrap();
        let store = PolicyStore::new(dir.clone());
        assert!(
            matches!(store.poll(Duration::ZERO), PolicyPoll::Loaded { generation: 1, ref names, .. } if names == &["p"])
        );
        assert!(matches!(store.poll(Duration::ZERO), PolicyPoll::Unchanged));
        std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
        fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        assert!(
            matches!(store.poll(Duration::ZERO), PolicyPoll::Loaded { generation: 2, ref names, .. } if names == &["q"])
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_or_truncated_file_never_becomes_the_active_set() {
        let dir = temp_dir("partial");
        let file = dir.join("p.yaml");
        fs::write(&file, POLICY).unwrap();
        let store = PolicyStore::new(dir.clone());
        assert!(matches!(
            store.poll(Duration::ZERO),
            PolicyPoll::Loaded { .. }
        ));
        for partial in ["", "# only a comment\n", &POLICY[..POLICY.len() / 2]] {
            fs::write(&file, partial).unwrap();
            assert!(
                matches!(store.poll(Duration::ZERO), PolicyPoll::Failed(_)),
                "{partial:?} must be rejected"
            );
            assert_eq!(store.current().unwrap().names(), ["p"]);
            assert_eq!(store.generation(), 1);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn contents_that_change_between_two_reads_are_not_loaded() {
        let dir = temp_dir("unsettled");
        let file = dir.join("p.yaml");
        fs::write(&file, POLICY).unwrap();
        let store = Arc::new(PolicyStore::new(dir.clone()));
        // A writer rewrites the file in place while the store waits for its second read.
        let writer = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                fs::write(&file, POLICY.replace("name: p", "name: r")).unwrap();
            })
        };
        assert!(matches!(
            store.poll(Duration::from_millis(300)),
            PolicyPoll::Unsettled
        ));
        writer.join().unwrap();
        assert!(store.current().is_none());
        // Settled now: the next poll takes it.
        assert!(
            matches!(store.poll(Duration::ZERO), PolicyPoll::Loaded { ref names, .. } if names == &["r"])
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
