//! The plain-HTTP admin endpoint: `/healthz`, `/readyz`, `/metrics`.
//!
//! It runs on a thread and runtime of its own, with its own small connection cap, so probes
//! are answered however busy the admission workers are and however many connections hold
//! the TLS port (which leaves [`super::listener::RESERVED_FDS`] descriptors for this).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tower::ServiceExt as _;
use tracing::{debug, error};

use super::AppState;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Probes and scrapes are few: kubelet, Prometheus, a person with curl.
const MAX_CONNECTIONS: usize = 32;
/// A probe sends its request at once; a connection that does not (or keeps one open idle)
/// gives its slot back after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Start the admin server on a thread of its own; it serves until `stop` fires.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || runtime.block_on(serve(listener, state, stop)))
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<AppState>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "admin server cannot start");
            return;
        }
    };
    let router = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            _ = &mut stop => return,
            slot = slots.clone().acquire_owned() => match slot { Ok(s) => s, Err(_) => return },
        };
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                router.clone().oneshot(req)
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(e) = served {
                debug!(error = %e, "admin connection ended with an error");
            }
            drop(slot);
        });
    }
}
