//! The TLS accept loop: a bounded number of connections, accept errors that back off and are
//! logged at a bounded rate, and the last part of the SIGTERM sequence (shutdown.rs).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::connection::{self, Limits};
use super::shutdown::{stopping, Phase};
use super::AppState;

/// File descriptors kept free for everything but client connections: the admin port, policy
/// and certificate reads, logs. So a flood of connections cannot stop `/healthz`.
pub const RESERVED_FDS: u64 = 64;

/// The most connections this process can hold: `wanted`, or fewer when the open-files limit
/// (`RLIMIT_NOFILE`, read from /proc/self/limits) leaves less room.
pub fn connection_cap(wanted: usize) -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_limit(&text));
    match limit {
        Some(n) => wanted
            .min(usize::try_from(n.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX))
            .max(1),
        None => wanted,
    }
}

/// The soft "Max open files" of a /proc/PID/limits text.
fn open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Accept errors (EMFILE, ENFILE, ENOBUFS…) back off from 10 ms to 1 s; a warning is logged at
/// most every 10 s, with the number of errors since the last one.
struct AcceptBackoff {
    delay: Duration,
    errors: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn new() -> AcceptBackoff {
        AcceptBackoff {
            delay: Self::FIRST,
            errors: 0,
            last_log: None,
        }
    }

    /// An error: how long to wait before the next accept.
    fn failed(&mut self, e: &std::io::Error, now: Instant) -> Duration {
        self.errors += 1;
        if self.last_log.is_none_or(|t| now >= t + Self::LOG_EVERY) {
            warn!(error = %e, errors = self.errors, "accept failed; backing off");
            self.errors = 0;
            self.last_log = Some(now);
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        wait
    }

    fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }
}

/// What [`serve`] needs besides the listener.
pub struct Serving {
    pub tls: Arc<ServerConfig>,
    pub router: Router,
    pub limits: Limits,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    pub state: Arc<AppState>,
}

/// Accept TLS connections until the phase is `Stopping`, then wait for the connections to
/// finish (each closes itself as soon as it is idle, see connection.rs) for at most
/// `shutdown_timeout`, and cut the rest.
pub async fn serve(listener: TcpListener, serving: Serving, mut phase: watch::Receiver<Phase>) {
    let acceptor = TlsAcceptor::from(serving.tls.clone());
    let slots = Arc::new(Semaphore::new(serving.max_connections));
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    loop {
        // A slot first: at the cap, new connections wait in the kernel's backlog.
        let slot = tokio::select! {
            () = stopping(&mut phase) => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = stopping(&mut phase) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                backoff.succeeded();
                let open = OpenConnection::new(serving.state.clone());
                let conn = connection::serve(
                    tcp,
                    acceptor.clone(),
                    serving.router.clone(),
                    serving.limits,
                    phase.clone(),
                );
                connections.spawn(async move {
                    conn.await;
                    drop((open, slot));
                });
            }
            Err(e) if is_per_connection(&e) => {}
            Err(e) => {
                drop(slot);
                let wait = backoff.failed(&e, Instant::now());
                tokio::select! {
                    () = stopping(&mut phase) => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    // The counts are the connection tasks still running (the finished ones reaped first).
    while connections.try_join_next().is_some() {}
    info!(
        open_connections = connections.len(),
        "stopped accepting; idle connections close now, requests in flight finish"
    );
    let drained = tokio::time::timeout(serving.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    match drained {
        Ok(()) => info!("all connections closed"),
        Err(_) => {
            warn!(
                timeout = ?serving.shutdown_timeout,
                remaining = connections.len(),
                "shutdown timeout reached; cutting the remaining connections"
            );
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
    }
}

/// Counts a connection in the `open_connections` gauge while it lives, also when its task is
/// cut at the shutdown timeout.
struct OpenConnection(Arc<AppState>);

impl OpenConnection {
    fn new(state: Arc<AppState>) -> OpenConnection {
        state.metrics.connection_opened();
        OpenConnection(state)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connection_closed();
    }
}

/// Errors about one connection that has already gone (the next accept is fine).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some(1024));
        assert_eq!(open_files_limit("nothing"), None);
    }

    #[test]
    fn the_connection_cap_leaves_room_for_the_admin_port() {
        let cap = connection_cap(usize::MAX);
        if let Some(limit) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| open_files_limit(&t))
        {
            assert!((cap as u64) <= limit.saturating_sub(RESERVED_FDS).max(1));
        }
        assert_eq!(connection_cap(10), 10.min(cap));
    }

    #[test]
    fn accept_errors_back_off_and_are_logged_at_a_bounded_rate() {
        let mut b = AcceptBackoff::new();
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..10)
            .map(|i| b.failed(&e, t0 + Duration::from_millis(i)))
            .collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        // One log line for the ten errors (the first); the count restarts after it.
        assert_eq!(b.errors, 9);
        b.succeeded();
        assert_eq!(
            b.failed(&e, t0 + Duration::from_secs(11)),
            Duration::from_millis(10)
        );
        assert_eq!(b.errors, 0);
    }
}
