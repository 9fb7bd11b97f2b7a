//! Namespaces, read-only: `GET /api/v1/namespaces/NAME`, the list and the watch — what the
//! kube crate's reflector asks for (kube-runtime's watcher: a list with `limit=500`, then
//! `watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=RV`, again from the
//! last version seen whenever the server ends the watch), so spark-admission's Namespace cache
//! runs against the stand-in in the end-to-end test.
//!
//! The namespaces are fixed when the stand-in starts (`--namespace`), all created at
//! resourceVersion [`store::NAMESPACES_RESOURCE_VERSION`], before anything else is stored; so a
//! watch never has a change to send. What it follows of kube-apiserver (kubernetes/kubernetes):
//! - the watch's initial events (`staging/src/k8s.io/apiserver/pkg/storage/cacher/cacher.go`,
//!   `Watch`; the "Semantics for watch" table of the API concepts doc): resourceVersion unset
//!   or `0` starts with a synthetic ADDED per object, a given version sends what changed after
//!   it (here nothing); `sendInitialEvents=true` sends the ADDED events, then a BOOKMARK
//!   annotated `k8s.io/initial-events-end: "true"` (`cache_watcher.go`);
//! - its end (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/get.go`, `ListResource`):
//!   the server closes the stream after `timeoutSeconds`, or without it after a random time
//!   between `--min-request-timeout` (1800 s) and twice that — here 1800 s;
//! - bookmarks when `allowWatchBookmarks=true` (`cache_watcher.go`, `nextBookmarkTime`):
//!   roughly every minute and 2 s before the deadline, the object carrying only its kind and
//!   the current resourceVersion.
//!
//! Not reproduced: 410 Gone for a version too old (nothing is ever compacted here),
//! pagination (`limit` is ignored: one page), field selectors, WebSocket watches.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::selector::{labels_of, Selector};
use crate::server::{json_lines, AppState};
use crate::status::{self, ApiError};
use crate::store::NAMESPACES_RESOURCE_VERSION;

/// kube-apiserver's `--min-request-timeout` default: a watch without `timeoutSeconds` lasts
/// at least this long.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
/// `cache_watcher.go`: a bookmark roughly every minute...
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// ... and this long before the watch's deadline.
const BOOKMARK_BEFORE_DEADLINE: Duration = Duration::from_secs(2);

/// The Namespace object as the API returns it.
pub fn object(name: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "resourceVersion": NAMESPACES_RESOURCE_VERSION.to_string(),
                        "labels": labels},
           "spec": {"finalizers": ["kubernetes"]},
           "status": {"phase": "Active"}})
}

pub fn get(state: &AppState, name: &str) -> Result<Value, ApiError> {
    state
        .namespaces
        .get(name)
        .map(|labels| object(name, labels))
        .ok_or_else(|| status::namespace_not_found(name))
}

fn selected(state: &AppState, params: &BTreeMap<String, String>) -> Result<Vec<Value>, ApiError> {
    let sel = Selector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| status::bad_request(e.to_string()))?;
    Ok(state
        .namespaces
        .iter()
        .map(|(name, labels)| object(name, labels))
        .filter(|o| sel.matches(&labels_of(o)))
        .collect())
}

fn current_version(state: &AppState) -> Result<String, ApiError> {
    state
        .store
        .lock()
        .map(|st| st.resource_version())
        .map_err(|_| status::internal_error("store lock poisoned".into()))
}

pub fn list(state: &AppState, params: &BTreeMap<String, String>) -> Result<Value, ApiError> {
    Ok(json!({"apiVersion": "v1", "kind": "NamespaceList",
              "metadata": {"resourceVersion": current_version(state)?},
              "items": selected(state, params)?}))
}

/// The events a watch starts with, per its `resourceVersion` and `sendInitialEvents`.
fn initial_events(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<Vec<Value>, ApiError> {
    let from = params.get("resourceVersion").map_or("", String::as_str);
    let send_initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    if !from.is_empty() && from.parse::<u64>().is_err() {
        return Err(status::bad_request(format!(
            "resourceVersion: Invalid value: {from:?}: must be a non-negative integer"
        )));
    }
    let mut events = Vec::new();
    if send_initial || from.is_empty() || from == "0" {
        events.extend(
            selected(state, params)?
                .into_iter()
                .map(|o| json!({"type": "ADDED", "object": o})),
        );
    }
    if send_initial {
        let mut end = bookmark(&current_version(state)?);
        end["object"]["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        events.push(end);
    }
    Ok(events)
}

fn bookmark(resource_version: &str) -> Value {
    json!({"type": "BOOKMARK",
           "object": {"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"resourceVersion": resource_version}}})
}

/// A chunked stream of JSON lines, kept open until its deadline.
pub fn watch(state: std::sync::Arc<AppState>, params: BTreeMap<String, String>) -> Response {
    let initial = match initial_events(&state, &params) {
        Ok(events) => events,
        Err(e) => return e.into_response(),
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(MIN_REQUEST_TIMEOUT, Duration::from_secs);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let deadline = Instant::now() + timeout;
        let line = |ev: &Value| Ok(Bytes::from(format!("{ev}\n")));
        for ev in &initial {
            if tx.send(line(ev)).await.is_err() {
                return;
            }
        }
        let last_bookmark = deadline
            .checked_sub(BOOKMARK_BEFORE_DEADLINE)
            .unwrap_or(deadline);
        loop {
            let next = (Instant::now() + BOOKMARK_EVERY).min(last_bookmark);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = tx.closed() => return,
            }
            if bookmarks {
                let Ok(rv) = current_version(&state) else {
                    return;
                };
                if tx.send(line(&bookmark(&rv))).await.is_err() {
                    return;
                }
            }
            if next >= last_bookmark {
                break;
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = tx.closed() => {}
        }
    });
    json_lines(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn state() -> AppState {
        let labels = |n: &str, extra: &[(&str, &str)]| {
            let mut l =
                BTreeMap::from([("kubernetes.io/metadata.name".to_string(), n.to_string())]);
            l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            (n.to_string(), l)
        };
        AppState {
            hooks: vec![],
            client: crate::client::WebhookClient::default(),
            probe_reinvocation: false,
            priority_classes: vec![],
            namespaces: BTreeMap::from([
                labels("default", &[]),
                labels("spark-jobs", &[("team", "data")]),
            ]),
            user: crate::admission::UserInfo {
                username: "t".into(),
                groups: vec![],
            },
            store: Mutex::new(Default::default()),
            events: tokio::sync::broadcast::channel(1).0,
            dump_dir: None,
            record_raw: None,
            recorded: Default::default(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn kinds_and_names(events: &[Value]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn a_watch_starts_with_every_namespace_only_without_a_version_or_at_zero() {
        let st = state();
        let added = vec![
            ("ADDED".to_string(), "default".to_string()),
            ("ADDED".to_string(), "spark-jobs".to_string()),
        ];
        for (query, want) in [
            (params(&[]), added.clone()),
            (params(&[("resourceVersion", "0")]), added.clone()),
            (params(&[("resourceVersion", "1")]), vec![]),
            (
                params(&[("resourceVersion", "1"), ("labelSelector", "team=data")]),
                vec![],
            ),
            (
                params(&[("labelSelector", "team=data")]),
                vec![("ADDED".to_string(), "spark-jobs".to_string())],
            ),
        ] {
            let got = initial_events(&st, &query).unwrap();
            assert_eq!(kinds_and_names(&got), want, "{query:?}");
        }
        assert!(initial_events(&st, &params(&[("resourceVersion", "x")])).is_err());
    }

    #[test]
    fn a_streaming_list_ends_its_initial_events_with_an_annotated_bookmark() {
        let got = initial_events(
            &state(),
            &params(&[("sendInitialEvents", "true"), ("resourceVersion", "1")]),
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        let end = &got[2];
        assert_eq!(end["type"], "BOOKMARK");
        assert_eq!(
            end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
            "true"
        );
    }

    #[test]
    fn the_list_carries_a_resource_version_not_older_than_its_items() {
        let list = list(&state(), &params(&[("limit", "500")])).unwrap();
        let list_rv: u64 = list["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        for item in items {
            let rv: u64 = item["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap();
            assert!(rv <= list_rv, "{item}");
        }
        assert_eq!(items[1]["metadata"]["labels"]["team"], "data");
    }
}
