//! `POST /mutate`: limits, the API server's `?timeout=`, metrics and the per-admission span
//! around [`crate::admission::review`].

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
use tracing::field::Empty;
use tracing::{info, info_span, warn, Instrument as _};

use super::duration::parse_duration;
use super::shutdown::Phase;
use super::AppState;
use crate::admission::{self, error_summary, plain_reply, Outcome, Reply};

/// Used when the caller sends no `?timeout=` (the API server always does): its maximum.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The `timeout` query parameter, if any.
fn api_timeout(query: Option<&str>) -> Result<Option<Duration>, String> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(("timeout", value)) = pair.split_once('=') {
            return parse_duration(value)
                .map(Some)
                .map_err(|e| format!("invalid ?timeout= query: {e}"));
        }
    }
    Ok(None)
}

/// Answer a little before the API server gives up: 10% early, at most 1 s.
fn answer_budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_secs(1)))
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
    let span = info_span!(
        "admission",
        uid = Empty,
        operation = Empty,
        namespace = Empty,
        pod = Empty,
        role = Empty,
        policies = Empty,
        outcome = Empty,
        dry_run = Empty,
        duration_us = Empty,
    );
    let reply = answer(&state, query, &headers, body, started)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let s = &reply.summary;
    state.metrics.admission(
        s.outcome,
        s.role,
        &s.applied,
        &s.audited,
        elapsed.as_secs_f64(),
    );
    if let Some(uid) = &s.uid {
        span.record("uid", uid.as_str());
    }
    if let Some(op) = &s.operation {
        span.record("operation", op.as_str());
    }
    if let Some(ns) = &s.namespace {
        span.record("namespace", ns.as_str());
    }
    if let Some(pod) = &s.pod_name {
        span.record("pod", pod.as_str());
    }
    span.record("role", s.role.map_or("none", |r| r.as_str()));
    span.record("policies", s.applied.join(",").as_str());
    span.record("outcome", s.outcome.as_str());
    span.record("dry_run", s.dry_run);
    span.record("duration_us", elapsed.as_micros() as u64);
    let note = s.note.as_deref().unwrap_or("");
    span.in_scope(|| {
        if s.outcome == Outcome::Error {
            warn!(status = reply.http_status, note, "admission failed");
        } else {
            info!(note, "admission");
        }
    });

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
    let too_late = || {
        refuse(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "could not answer within the caller's timeout of {caller_timeout:?}; \
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

    // The body is read before any other check so that a refusal keeps the connection usable.
    let bytes = match tokio::time::timeout_at(deadline, read_body(body, limit)).await {
        Err(_) => return too_late(),
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

    // Off the async workers: evaluation is CPU work, and a slow one must not stop us from
    // answering before the deadline (or take the server down if it panics).
    let task = tokio::task::spawn_blocking(move || admission::review(&policies, &bytes));
    match tokio::time::timeout_at(deadline, task).await {
        Err(_) => too_late(),
        Ok(Err(e)) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error while evaluating the request: {e}"),
        ),
        Ok(Ok(reply)) => reply,
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
        assert!(api_timeout(Some("timeout=soon")).is_err());
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
