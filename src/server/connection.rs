//! One TLS connection: the handshake, HTTP/1.1 or HTTP/2 as ALPN chose, and the timeouts that
//! keep a connection from holding one of the server's slots for ever.
//!
//! Rules (the watchdog in [`serve`] applies them; [`Activity`] is what it reads):
//! - a TLS handshake must finish within `handshake`;
//! - HTTP/1.1: the head of a request must arrive within `header` of its first byte, and a new
//!   connection must start its first request within `header` (slowloris, idle opens);
//! - a connection with no request in progress is closed after `idle` (keep-alive);
//! - a request's body and answer are bounded by the API server's `?timeout=` (webhook.rs).
//!
//! `idle` must be longer than the API server's own idle timeout for webhook connections, so
//! that it is always the client that closes an idle connection: if the server closed it while
//! the client was reusing it, the POST would fail (Go's HTTP client does not retry a POST).
//! The API server's webhook client uses client-go's transport, whose `IdleConnTimeout` is
//! Go's `http.DefaultTransport` value, 90 s (k8s.io/apimachinery/pkg/util/net/http.go,
//! `SetOldTransportDefaults`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::debug;

use super::shutdown::Phase;

/// Timeouts and limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TLS handshake.
    pub handshake: Duration,
    /// HTTP/1.1 request head, from its first byte (and a new connection's first request).
    pub header: Duration,
    /// No request in progress (keep-alive); longer than the API server's 90 s.
    pub idle: Duration,
    /// Concurrent HTTP/2 streams per connection. RFC 9113 §6.5.2 recommends at least 100:
    /// a client may open that many before it sees this setting, and streams over the limit
    /// are refused (`REFUSED_STREAM`), which not every client retries.
    pub max_streams: u32,
    /// After SIGTERM, how long a connection that has not sent its first request may still
    /// send it (it is answered with `Connection: close`).
    pub stop_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake: Duration::from_secs(10),
            header: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            max_streams: 100,
            stop_grace: Duration::from_secs(1),
        }
    }
}

/// What a connection is doing, shared by its IO wrapper, its service and its watchdog.
/// Times are milliseconds since the connection opened; `waiting_since` is that + 1, 0 when
/// no request head is arriving.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    busy: AtomicU32,
    waiting_since: AtomicU64,
    last_done: AtomicU64,
    requests: AtomicU64,
}

/// Whether to keep a connection, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Look again at this time.
    Keep(Instant),
    /// Close it: the reason, for the debug log.
    Close(&'static str),
}

impl Activity {
    /// A new connection.
    pub fn new(opened: Instant) -> Activity {
        Activity {
            opened,
            busy: AtomicU32::new(0),
            waiting_since: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// Bytes arrived while no request is in progress: a request head is on its way.
    fn bytes_arrived(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.waiting_since.load(Ordering::Relaxed) == 0
        {
            self.waiting_since
                .store(self.now_ms().saturating_add(1), Ordering::Relaxed);
        }
    }

    /// A request starts; the guard marks its end.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.waiting_since.store(0, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Requests started on this connection.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether a request is in progress.
    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }

    /// When the first byte of a request head not yet complete arrived, if one is arriving.
    fn head_arriving_since(&self) -> Option<Instant> {
        match self.waiting_since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.at(ms - 1)),
        }
    }

    /// Apply the rules of the module documentation at `now`.
    pub fn check(&self, now: Instant, limits: &Limits, http1: bool) -> Check {
        let now_ms = u64::try_from(now.saturating_duration_since(self.opened).as_millis())
            .unwrap_or(u64::MAX);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Check::Keep(now + limits.header);
        }
        let waiting = self.waiting_since.load(Ordering::Relaxed);
        if http1 && waiting > 0 {
            let deadline = (waiting - 1).saturating_add(ms(limits.header));
            return if now_ms >= deadline {
                Check::Close("no complete request head within the header timeout")
            } else {
                Check::Keep(self.at(deadline))
            };
        }
        if self.requests() == 0 {
            let deadline = ms(limits.header);
            return if now_ms >= deadline {
                Check::Close("no request within the header timeout of opening")
            } else {
                Check::Keep(self.at(deadline))
            };
        }
        let deadline = self
            .last_done
            .load(Ordering::Relaxed)
            .saturating_add(ms(limits.idle));
        if now_ms >= deadline {
            Check::Close("idle")
        } else {
            Check::Keep(self.at(deadline))
        }
    }
}

/// Marks the end of a request on drop.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_done.store(a.now_ms(), Ordering::Relaxed);
        a.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The TLS stream, telling [`Activity`] when bytes arrive.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serve one accepted TCP connection until it closes, times out or the server stops.
pub async fn serve(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    router: Router,
    limits: Limits,
    mut phase: watch::Receiver<Phase>,
) {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok();
    // While the server stops, a handshake still under way gets the stop grace, not the full
    // handshake timeout: a TCP connection that never starts TLS must not hold the exit.
    let mut stop = phase.clone();
    let stopped = async {
        super::shutdown::stopping(&mut stop).await;
        tokio::time::sleep(limits.stop_grace).await;
    };
    let handshake = tokio::time::timeout(limits.handshake, acceptor.accept(tcp));
    let tls = tokio::select! {
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(?peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(?peer, "TLS handshake timed out");
                return;
            }
        },
        () = stopped => {
            debug!(?peer, "TLS handshake not done within the stop grace");
            return;
        }
    };
    let http1 = tls.get_ref().1.alpn_protocol() != Some(b"h2");
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        inner: tls,
        activity: activity.clone(),
    });
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = tracked.begin();
        let answer = router.clone().oneshot(req);
        async move {
            let response = answer.await;
            drop(guard);
            response
        }
    });
    let result = if http1 {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(None) // the watchdog's rule, which spares idle keep-alive
            .serve_connection(io, service);
        let close = |c: Pin<&mut _>| http1::Connection::graceful_shutdown(c);
        watch_over(conn, close, &activity, &limits, true, &mut phase).await
    } else {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_streams)
            .serve_connection(io, service);
        let close = |c: Pin<&mut _>| http2::Connection::graceful_shutdown(c);
        watch_over(conn, close, &activity, &limits, false, &mut phase).await
    };
    if let Err(why) = result {
        debug!(?peer, why, "connection closed");
    }
}

/// Drive `conn` to its end, closing it when a rule of the module documentation says so or
/// the server stops. After a graceful close is asked, a connection gets `header` more to end.
async fn watch_over<C, F>(
    conn: C,
    graceful_shutdown: F,
    activity: &Activity,
    limits: &Limits,
    http1: bool,
    phase: &mut watch::Receiver<Phase>,
) -> Result<(), String>
where
    C: Future<Output = Result<(), hyper::Error>>,
    F: Fn(Pin<&mut C>),
{
    let mut conn = std::pin::pin!(conn);
    let mut next = Instant::now() + limits.header.min(limits.idle);
    let mut stopping_since: Option<Instant> = None;
    let mut closing: Option<(Instant, &'static str)> = None;
    loop {
        let wake = closing.map_or(next, |(by, _)| by.min(next));
        tokio::select! {
            done = conn.as_mut() => return done.map_err(|e| e.to_string()),
            _ = phase.changed(), if stopping_since.is_none() => {
                if *phase.borrow() == Phase::Stopping {
                    let now = Instant::now();
                    stopping_since = Some(now);
                    next = now;
                    // A close already under way (a slowloris head past its timeout) ends
                    // within the stop grace too.
                    if let Some((by, why)) = closing {
                        closing = Some((by.min(now + limits.stop_grace), why));
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if let Some((by, why)) = closing {
                    // A request that started meanwhile (an HTTP/2 stream opened before the
                    // client saw GOAWAY) is bounded by its own deadline, not cut here.
                    if now >= by && !activity.is_busy() {
                        return Err(format!("{why}; did not close in time"));
                    }
                }
                let check = match stopping_since {
                    Some(since) => stop_check(activity, since, now, limits, http1),
                    None => activity.check(now, limits, http1),
                };
                match check {
                    Check::Keep(at) => next = at,
                    Check::Close(why) if closing.is_none() => {
                        graceful_shutdown(conn.as_mut());
                        // Time to end cleanly, after which the connection is cut: HTTP/2
                        // gets `header` for GOAWAY and its PING unless the server is stopping;
                        // HTTP/1.1 (an idle connection closes at once, a stalled head never
                        // does) and anything while stopping get the short stop grace, so a
                        // client that ignores the close holds nothing for long.
                        let within = if stopping_since.is_some() || http1 {
                            limits.stop_grace.min(limits.header)
                        } else {
                            limits.header
                        };
                        closing = Some((now + within, why));
                        next = now + within.min(STOP_POLL);
                    }
                    Check::Close(_) => next = now + STOP_POLL,
                }
            }
        }
    }
}

/// How often a connection is looked at while the server stops.
const STOP_POLL: Duration = Duration::from_millis(50);

/// While the server stops: close a connection as soon as no request is in progress or
/// arriving. A request in progress is bounded by its own deadline (webhook.rs); a request
/// head under way gets `stop_grace` from its first byte or from the stop, whichever is later
/// (the API server writes a head at once: one that takes longer is a stalled client); a new
/// connection that has not sent anything gets `stop_grace` to send its first request (a
/// connection opened just before the listener closed is not cut mid-way). The answer to a
/// request carries `Connection: close` (webhook.rs), HTTP/2 gets GOAWAY.
fn stop_check(
    activity: &Activity,
    since: Instant,
    now: Instant,
    limits: &Limits,
    http1: bool,
) -> Check {
    if activity.is_busy() {
        return Check::Keep(now + STOP_POLL);
    }
    let head = if http1 {
        activity.head_arriving_since()
    } else {
        None
    };
    if let Some(first_byte) = head {
        let grace_end = since.max(first_byte) + limits.stop_grace;
        return match activity.check(now, limits, http1) {
            Check::Keep(_) if now >= grace_end => {
                Check::Close("request head not complete within the stop grace")
            }
            Check::Keep(at) => Check::Keep(at.min(grace_end).min(now + STOP_POLL)),
            close => close,
        };
    }
    if http1 && activity.requests() == 0 && now < since + limits.stop_grace {
        return Check::Keep(since + limits.stop_grace);
    }
    Check::Close("server stopping")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            ..Limits::default()
        }
    }

    #[test]
    fn a_new_http1_connection_must_start_its_request_within_the_header_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        let s = Duration::from_secs;
        assert_eq!(a.check(t0 + s(5), &limits(), true), Check::Keep(t0 + s(10)));
        assert!(matches!(
            a.check(t0 + s(10), &limits(), true),
            Check::Close(_)
        ));
    }

    #[test]
    fn an_idle_keep_alive_connection_lives_longer_than_the_api_servers_90_seconds() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        drop(a.begin()); // one request, done at once
        let s = Duration::from_secs;
        assert!(limits().idle > s(90));
        assert!(matches!(
            a.check(t0 + s(95), &limits(), true),
            Check::Keep(_)
        ));
        assert!(matches!(
            a.check(t0 + s(121), &limits(), true),
            Check::Close("idle")
        ));
    }

    #[test]
    fn a_request_in_progress_is_never_closed_by_the_watchdog() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let _busy = a.begin();
        assert!(matches!(
            a.check(t0 + Duration::from_secs(1000), &limits(), true),
            Check::Keep(_)
        ));
    }

    #[test]
    fn an_http2_connection_without_requests_is_closed_after_the_header_timeout() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        a.bytes_arrived(); // SETTINGS, PING: not a request
        assert!(matches!(
            a.check(t0 + Duration::from_secs(11), &limits(), false),
            Check::Close(_)
        ));
    }

    #[test]
    fn on_stop_a_fresh_connection_gets_a_grace_window_and_an_idle_one_closes_at_once() {
        let t0 = Instant::now();
        let fresh = Activity::new(t0);
        let l = limits();
        assert_eq!(
            stop_check(&fresh, t0, t0, &l, true),
            Check::Keep(t0 + l.stop_grace)
        );
        assert!(matches!(
            stop_check(&fresh, t0, t0 + l.stop_grace, &l, true),
            Check::Close(_)
        ));
        // Its first request starts arriving at the end of the grace: the head gets the
        // grace again from its first byte, and is cut if it stalls.
        let late = Arc::new(Activity::new(t0 - l.stop_grace));
        late.bytes_arrived();
        assert!(matches!(
            stop_check(&late, t0, t0 + l.stop_grace / 2, &l, true),
            Check::Keep(_)
        ));
        assert!(matches!(
            stop_check(&late, t0, t0 + l.stop_grace * 2, &l, true),
            Check::Close(_)
        ));
        // A request in progress is never cut by the stop.
        let busy = late.begin();
        assert!(matches!(
            stop_check(&late, t0, t0 + l.stop_grace * 9, &l, true),
            Check::Keep(_)
        ));
        drop(busy);
        let used = Arc::new(Activity::new(t0));
        drop(used.begin());
        assert!(matches!(
            stop_check(&used, t0, t0, &l, true),
            Check::Close(_)
        ));
    }
}
