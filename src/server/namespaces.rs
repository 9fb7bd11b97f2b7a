//! The labels of the cluster's namespaces, for policies with `match.namespaceSelector`: a
//! cache of the API's Namespaces kept by kube-runtime's reflector (a list, then a watch).
//!
//! Started only when a policy set that selects namespaces by label is loaded, so a server
//! whose policies do not never talks to the API (and `serve` runs without a cluster). The
//! server is not ready until the first list has arrived. After that, the cache stays: when
//! the API cannot be reached the watcher retries with kube-runtime's default backoff (0.8 s
//! doubling to at most 30 s) and admissions are answered from the last state seen, so a label
//! changed during an outage takes effect at most about 30 s after the API is reachable again
//! (plus the time of a new list). A namespace the cache has not seen (created a moment ago,
//! or during an outage) gets HTTP 503 for pods a label-selecting policy may apply to, and the
//! webhook's failurePolicy decides.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use tracing::{info, warn};

/// How long to wait before trying again to build an API client (no kubeconfig, no
/// in-cluster credentials yet).
const CLIENT_RETRY: Duration = Duration::from_secs(5);

/// The cache, empty and not started until [`NamespaceCache::start`].
#[derive(Debug, Default)]
pub struct NamespaceCache {
    store: OnceLock<Store<Namespace>>,
    synced: Arc<AtomicBool>,
    /// The last error talking to the API, for `/readyz` and the log.
    last_error: Arc<Mutex<Option<String>>>,
}

impl NamespaceCache {
    pub fn new() -> NamespaceCache {
        NamespaceCache::default()
    }

    pub fn is_started(&self) -> bool {
        self.store.get().is_some()
    }

    /// Whether the first list of Namespaces has arrived.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Why the cache is not synced, for `/readyz`.
    pub fn not_synced_reason(&self) -> String {
        let last = self.last_error.lock().ok().and_then(|e| e.clone());
        match last {
            Some(e) => format!("namespace cache not synced yet (last error: {e})"),
            None => "namespace cache not synced yet".to_string(),
        }
    }

    /// Start watching Namespaces in the background (once; later calls do nothing). Needs
    /// a Tokio runtime. The API is found as kubectl finds it: `KUBECONFIG` or
    /// `~/.kube/config`, else the pod's service account (in a cluster).
    pub fn start(&self) {
        let (reader, writer) = reflector::store::<Namespace>();
        if self.store.set(reader).is_err() {
            return;
        }
        let synced = self.synced.clone();
        let last_error = self.last_error.clone();
        let record = move |e: String| {
            if let Ok(mut last) = last_error.lock() {
                *last = Some(e);
            }
        };
        info!("a policy selects namespaces by label: watching Namespaces");
        let ready = self.store.get().cloned();
        tokio::spawn(async move {
            let client = loop {
                match kube::Client::try_default().await {
                    Ok(client) => break client,
                    Err(e) => {
                        warn!(error = %e, "cannot reach the Kubernetes API for Namespaces; retrying");
                        record(format!("no API client: {e}"));
                        tokio::time::sleep(CLIENT_RETRY).await;
                    }
                }
            };
            if let Some(reader) = ready {
                let synced = synced.clone();
                tokio::spawn(async move {
                    if reader.wait_until_ready().await.is_ok() {
                        synced.store(true, Ordering::Release);
                        info!(namespaces = reader.state().len(), "namespace cache synced");
                    }
                });
            }
            let api = kube::Api::<Namespace>::all(client);
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(|event| {
                    if let Err(e) = event {
                        warn!(error = %e, "watching Namespaces failed; serving from the last state seen, retrying");
                        record(e.to_string());
                    }
                    async {}
                })
                .await;
        });
    }
}

impl crate::admission::Namespaces for NamespaceCache {
    fn labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let ns = self.store.get()?.get(&ObjectRef::new(namespace))?;
        Some(ns.metadata.labels.clone().unwrap_or_default())
    }
}
