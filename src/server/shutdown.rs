//! The TLS accept loop and the SIGTERM sequence.
//!
//! 1. SIGTERM: the phase becomes `Draining`; `/readyz` fails at once so the endpoints
//!    controller takes the pod out of the Service, but requests are still served (HTTP/1
//!    answers carry `Connection: close` so the API server moves to another replica).
//! 2. After `--drain-delay`: `Stopping`; the listener is closed, idle keep-alive connections
//!    are closed, HTTP/2 connections get GOAWAY, in-flight requests finish.
//! 3. At most `--shutdown-timeout` later, whatever is left is cut and the process exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// A client that has not finished its TLS handshake in this time is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    Draining,
    Stopping,
}

/// Starts the drain sequence once.
pub struct Drain {
    phase: Arc<watch::Sender<Phase>>,
    delay: Duration,
}

impl Drain {
    pub fn new(phase: watch::Sender<Phase>, delay: Duration) -> Drain {
        Drain {
            phase: Arc::new(phase),
            delay,
        }
    }

    pub fn begin(&self) {
        let started = self.phase.send_if_modified(|p| {
            if *p == Phase::Serving {
                *p = Phase::Draining;
                true
            } else {
                false
            }
        });
        if !started {
            return;
        }
        let phase = self.phase.clone();
        let delay = self.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = phase.send(Phase::Stopping);
        });
    }
}

/// SIGTERM or SIGINT.
pub async fn wait_for_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r?; info!("SIGINT received") }
    }
    Ok(())
}

/// Resolves once the phase is `Stopping` (or the sender is gone).
pub async fn stopping(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Stopping).await;
}

/// Accept TLS connections until the phase is `Stopping`, then shut down gracefully.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    mut phase: watch::Receiver<Phase>,
    shutdown_timeout: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let conn_phase = phase.clone();
    loop {
        tokio::select! {
            () = stopping(&mut phase) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(serve_connection(
                        tcp,
                        peer,
                        acceptor.clone(),
                        router.clone(),
                        graceful.watcher(),
                        conn_phase.clone(),
                    ));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let open = graceful.count();
    info!(
        open_connections = open,
        "stopped accepting; closing idle connections and finishing in-flight requests"
    );
    match tokio::time::timeout(shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => info!("all connections closed"),
        Err(_) => {
            warn!(
                timeout = ?shutdown_timeout,
                remaining = connections.len(),
                "shutdown timeout reached; cutting the remaining connections"
            );
            connections.abort_all();
        }
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    watcher: Watcher,
    mut phase: watch::Receiver<Phase>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        // No request can be in flight before the handshake ends: drop it.
        () = stopping(&mut phase) => return,
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    let service = TowerToHyperService::new(router);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn).await {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}
