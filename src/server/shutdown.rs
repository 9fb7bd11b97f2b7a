//! The SIGTERM sequence.
//!
//! 1. SIGTERM: the phase becomes `Draining`; `/readyz` fails at once so the endpoints
//!    controller takes the pod out of the Service, but requests are still served (HTTP/1
//!    answers carry `Connection: close` so the API server moves to another replica).
//! 2. After `--drain-delay`: `Stopping`; the listener is closed (listener.rs); each
//!    connection closes as soon as it has no request in progress (connection.rs): idle
//!    keep-alive connections at once, HTTP/2 with GOAWAY; one opened just before the close
//!    gets a short grace (`stop_grace`, 1 s) to send its first request; a request in
//!    progress finishes within its own deadline; a stalled client (a TLS handshake or a
//!    request head not done, an HTTP/2 client ignoring GOAWAY) is cut after the grace.
//! 3. At most `--shutdown-timeout` later, whatever is left is cut and the process exits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::info;

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
