//! `POST /mutate`: limits, the API server's `?timeout=`, metrics and the per-admission span
//! around [`crate::admission::review`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt as _;
use tracing::{debug, info, warn};

use super::duration::parse_duration;
use super::shutdown::Phase;
use super::AppState;
use crate::admission::{error_summary, plain_reply, Outcome, Reply};

/// Used when the caller sends no `?timeout=` (the API server always does): its maximum.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `?timeout=` accepted: the API server's maximum `timeoutSeconds`.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// What answers a `/mutate` body; [`crate::admission::review`] in the product, a stand-in in
/// tests that need the engine to fail.
pub type Evaluator =
    fn(&crate::policy::PolicySet, &dyn crate::admission::Namespaces, &[u8]) -> Reply;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(mutate).fallback(|| async {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use POST /mutate with an AdmissionReview\n",
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: the admission endpoint is POST /mutate\n",
            )
        })
        .with_state(state)
}

/// The `timeout` query parameter, if any: more than zero and at most [`MAX_TIMEOUT`].
fn api_timeout(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(("timeout", value)) = pair.split_once('=') {
            let invalid = |why: String| format!("invalid ?timeout= query: {why}");
            let timeout = parse_duration(value).map_err(invalid)?;
            if timeout.is_zero() || timeout > MAX_TIMEOUT {
                return Err(invalid(format!(
                    "{value:?} is not between 0 and {MAX_TIMEOUT:?} (the API server sends its \
                     webhook timeoutSeconds, 1s to 30s)"
                )));
            }
            return Ok(Some(timeout));
        }
    }
    Ok(None)
}

/// Answer a little before the API server gives up: 10% early, at most 1 s.
fn answer_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_secs(1)))
}

/// Bytes of request bodies that may be held at once, over all connections: the bound on the
/// memory requests can take while they are read and evaluated.
#[derive(Debug)]
pub struct BodyBudget {
    capacity: usize,
    used: AtomicUsize,
}

/// Bytes taken from a [`BodyBudget`], given back on drop.
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(capacity: usize) -> BodyBudget {
        BodyBudget {
            capacity,
            used: AtomicUsize::new(0),
        }
    }

    /// Take `bytes`, or `None` when that would exceed the capacity.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.capacity)
            })
            .ok()
            .map(|_| Reservation {
                budget: self,
                bytes,
            })
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(ct) = content_type.to_str() else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.to_ascii_lowercase().ends_with("+json")
}

fn refuse(status: StatusCode, message: String) -> Reply {
    plain_reply(status.as_u16(), message.clone(), error_summary(message))
}

async fn mutate(
    State(state): State<Arc<AppState>>,
    version: Version,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let reply = answer(&state, query, &headers, body, started).await;
    let elapsed = started.elapsed();
    let s = &reply.summary;
    state.metrics.admission(
        s.outcome,
        s.role,
        &s.applied,
        &s.audited,
        elapsed.as_secs_f64(),
    );
    log(&reply, elapsed);

    let status = StatusCode::from_u16(reply.http_status).unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response();
    // While draining, ask HTTP/1 clients to reconnect (to another replica).
    if *state.phase.borrow() != Phase::Serving && version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// One log event per admission: `debug` for the ordinary outcomes (thousands a second
/// during a large job; metrics count them, the API server's audit log keeps the policies
/// applied), `info` for a denial, `warn` for an error. Fields are formatted only when the
/// level is enabled. Never pod contents.
fn log(reply: &Reply, elapsed: Duration) {
    let s = &reply.summary;
    macro_rules! event {
        ($level:ident, $message:literal) => {
            $level!(
                uid = s.uid.as_deref().unwrap_or(""),
                operation = s.operation.as_deref().unwrap_or(""),
                namespace = s.namespace.as_deref().unwrap_or(""),
                pod = s.pod_name.as_deref().unwrap_or(""),
                role = s.role.map_or("none", |r| r.as_str()),
                policies = s.applied.join(","),
                outcome = s.outcome.as_str(),
                dry_run = s.dry_run,
                status = reply.http_status,
                duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                note = s.note.as_deref().unwrap_or(""),
                $message
            )
        };
    }
    match s.outcome {
        Outcome::Error => event!(warn, "admission failed"),
        Outcome::Denied => event!(info, "admission denied"),
        Outcome::Patched | Outcome::Unchanged => event!(debug, "admission"),
    }
}

/// How a request body was read.
enum BodyRead {
    Complete(Bytes),
    /// Over the limit; the rest was read and dropped (up to [`DRAIN_FACTOR`] × limit) so the
    /// answer reaches the client instead of being lost to a TCP reset on close.
    TooLarge,
    Failed(String),
}

/// Bodies over the limit are drained up to this multiple of it before answering.
const DRAIN_FACTOR: usize = 4;

async fn read_body(mut body: Body, limit: usize) -> BodyRead {
    let drain_bound = limit.saturating_mul(DRAIN_FACTOR);
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(_) if total > limit => return BodyRead::TooLarge,
            Err(e) => return BodyRead::Failed(e.to_string()),
        };
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > drain_bound {
                return BodyRead::TooLarge;
            }
        }
    }
    if total > limit {
        BodyRead::TooLarge
    } else {
        BodyRead::Complete(Bytes::from(buf))
    }
}

async fn answer(
    state: &Arc<AppState>,
    query: Option<String>,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Reply {
    let timeout = api_timeout(query.as_deref());
    // An invalid ?timeout= is refused below, after the body is read; until then use the default.
    let caller_timeout = timeout.clone().ok().flatten().unwrap_or(DEFAULT_TIMEOUT);
    let deadline = tokio::time::Instant::from_std(started + answer_budget(caller_timeout));
    let too_late = |when: &str| {
        refuse(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "could not answer within the caller's timeout of {caller_timeout:?} ({when}); \
                 the webhook's failurePolicy applies"
            ),
        )
    };
    let limit = state.max_body_bytes;
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_mul(DRAIN_FACTOR) as u64) {
        // Too large even to drain: answer at once (the connection is closed).
        return too_large();
    }
    // Memory for the body, from a budget shared by all requests: when it is spent the
    // request is refused at once rather than queued (the API server then applies the
    // failurePolicy without waiting).
    let wanted = declared.map_or(limit, |n| usize::try_from(n).unwrap_or(limit).min(limit));
    let Some(_reservation) = state.body_budget.reserve(wanted) else {
        state.metrics.shed("overloaded");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "overloaded: {} bytes of request bodies are already in flight; \
                 the webhook's failurePolicy applies",
                state.body_budget.in_use()
            ),
        );
    };

    // The body is read before any other check so that a refusal keeps the connection usable.
    let bytes = match tokio::time::timeout_at(deadline, read_body(body, limit)).await {
        Err(_) => return too_late("the request body did not arrive in time"),
        Ok(BodyRead::TooLarge) => return too_large(),
        Ok(BodyRead::Failed(e)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        }
        Ok(BodyRead::Complete(bytes)) => bytes,
    };
    if let Err(message) = timeout {
        return refuse(StatusCode::BAD_REQUEST, message);
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        if !is_json(ct) {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type must be application/json, got {:?} \
                     (with curl add -H 'Content-Type: application/json')",
                    ct.to_str().unwrap_or("<not text>")
                ),
            );
        }
    }
    let Some(policies) = state.policies.current() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "no valid policy set loaded yet from {}; see the server log",
                state.policies.dir().display()
            ),
        );
    };
    // The worker may have been busy with other requests since the body arrived: work past
    // the deadline is not started.
    if tokio::time::Instant::now() >= deadline {
        state.metrics.shed("deadline");
        return too_late("the server was busy");
    }
    // Evaluation runs here, on the runtime's fixed set of worker threads (no hand-off to
    // another thread, no thread per request): its cost is linear in the body, which is
    // bounded. A panic becomes an answer, never a dropped connection.
    let evaluate = state.evaluator;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        evaluate(&policies, &state.namespaces, &bytes)
    })) {
        Ok(reply) => reply,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "internal error while evaluating the request: {what}; \
                     the webhook's failurePolicy applies"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_query_and_budget() {
        assert_eq!(api_timeout(None), Ok(None));
        assert_eq!(
            api_timeout(Some("timeout=10s")),
            Ok(Some(Duration::from_secs(10)))
        );
        assert_eq!(
            api_timeout(Some("a=b&timeout=250ms")),
            Ok(Some(Duration::from_millis(250)))
        );
        for bad in [
            "timeout=soon",
            "timeout=1e19",
            "timeout=0s",
            "timeout=31s",
            "timeout=9999999999h",
        ] {
            let e = api_timeout(Some(bad)).unwrap_err();
            assert!(e.starts_with("invalid ?timeout= query"), "{bad}: {e}");
        }
        assert_eq!(
            answer_budget(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
        assert_eq!(
            answer_budget(Duration::from_secs(30)),
            Duration::from_secs(29)
        );
        assert_eq!(
            answer_budget(Duration::from_millis(500)),
            Duration::from_millis(450)
        );
    }

    #[test]
    fn the_body_budget_refuses_what_exceeds_it_and_takes_back_what_is_dropped() {
        let budget = BodyBudget::new(100);
        let a = budget.reserve(60).unwrap();
        assert!(budget.reserve(41).is_none());
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        drop(a);
        assert_eq!(budget.in_use(), 40);
        assert!(budget.reserve(usize::MAX).is_none());
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn json_content_types() {
        for (ct, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("application/x-www-form-urlencoded", false),
            ("text/plain", false),
        ] {
            assert_eq!(is_json(&HeaderValue::from_static(ct)), ok, "{ct}");
        }
    }
}
