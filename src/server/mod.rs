//! `spark-admission serve`: the TLS admission server around the policy engine.
//!
//! Wiring only; each concern has its module: [`tls`] (rustls + certificate reload),
//! [`listener`] (accept loop, connection cap), [`connection`] (one connection's protocol and
//! timeouts), [`reload`] (policy directory), [`webhook`] (`POST /mutate`), [`admin`] (health,
//! readiness, metrics, on a thread of its own), [`shutdown`] (SIGTERM drain), [`metrics`].
//!
//! Bounded by construction: a fixed number of threads (the runtime's `--workers`, one admin
//! thread, at most one blocking thread for reloads), at most `--max-connections`
//! connections of at most 100 HTTP/2 streams, at most `--max-inflight-bytes` of request
//! bodies, and a timeout on every wait.

pub mod admin;
pub mod connection;
pub mod duration;
pub mod listener;
pub mod metrics;
pub mod reload;
pub mod shutdown;
pub mod tls;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::certs::{ensure_dev_certs, CertError};
use connection::Limits;
use duration::GoDuration;
use metrics::Metrics;
use reload::{PolicyPoll, PolicyStore};
use shutdown::Phase;
use tls::{CertPoll, CertStore, TlsError};
use webhook::{BodyBudget, Evaluator};

/// The defaults of `serve`, stated once: the CLI shows them, [`Config::new`] uses them.
pub mod defaults {
    use std::time::Duration;

    /// A Pod is at most ~1.5 MiB in etcd and the API server accepts request bodies of at
    /// most 3 MiB; a CREATE review carries one copy, so 6 MiB leaves room without inviting
    /// abuse.
    pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
    /// Request bodies held at once (reading and evaluating). A review is 5–20 KB; this
    /// holds thousands of them, or five of the largest.
    pub const MAX_INFLIGHT_BYTES: usize = 32 * 1024 * 1024;
    pub const MAX_CONNECTIONS: usize = 1024;
    pub const DRAIN_DELAY: Duration = Duration::from_secs(5);
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
    pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
    pub const ADDR: &str = "0.0.0.0:8443";
    pub const ADMIN_ADDR: &str = "0.0.0.0:8080";
}

/// Default body size limit of `/mutate` (see [`defaults::MAX_BODY_BYTES`]).
pub const DEFAULT_MAX_BODY_BYTES: usize = defaults::MAX_BODY_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Arguments of `spark-admission serve` (each also read from `SPARK_ADMISSION_<FLAG>`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Directory of policy files (watched; reloaded on change).
    #[arg(long, default_value = "policies", env = "SPARK_ADMISSION_POLICIES")]
    pub policies: PathBuf,
    /// Serving certificate, PEM; may hold a chain (leaf first). Reloaded on change.
    /// Without --cert/--key a development CA and certificate are made in --dev-cert-dir.
    #[arg(long, env = "SPARK_ADMISSION_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key of the serving certificate, PEM. Reloaded on change.
    #[arg(long, env = "SPARK_ADMISSION_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, env = "SPARK_ADMISSION_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Address of the TLS admission endpoint.
    #[arg(long, default_value = defaults::ADDR, env = "SPARK_ADMISSION_ADDR")]
    pub addr: SocketAddr,
    /// Address of the plain-HTTP admin endpoint (/healthz, /readyz, /metrics).
    #[arg(long, default_value = defaults::ADMIN_ADDR, env = "SPARK_ADMISSION_ADMIN_ADDR")]
    pub admin_addr: SocketAddr,
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "SPARK_ADMISSION_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// After SIGTERM, keep serving this long (with /readyz failing) so endpoints update.
    #[arg(long, default_value_t = GoDuration(defaults::DRAIN_DELAY), env = "SPARK_ADMISSION_DRAIN_DELAY")]
    pub drain_delay: GoDuration,
    /// After the drain delay, wait at most this long for in-flight requests.
    #[arg(long, default_value_t = GoDuration(defaults::SHUTDOWN_TIMEOUT), env = "SPARK_ADMISSION_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: GoDuration,
    /// Largest accepted /mutate body in bytes (larger gets HTTP 413).
    #[arg(long, default_value_t = defaults::MAX_BODY_BYTES, env = "SPARK_ADMISSION_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Request bodies held at once, in bytes; past it requests get HTTP 503 at once.
    #[arg(long, default_value_t = defaults::MAX_INFLIGHT_BYTES, env = "SPARK_ADMISSION_MAX_INFLIGHT_BYTES")]
    pub max_inflight_bytes: usize,
    /// Connections held at once on the TLS port (fewer if the open-files limit is lower).
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS, env = "SPARK_ADMISSION_MAX_CONNECTIONS")]
    pub max_connections: usize,
    /// Threads that serve connections and evaluate pods; 0 means one per CPU available.
    #[arg(long, default_value_t = 0, env = "SPARK_ADMISSION_WORKERS")]
    pub workers: usize,
    /// How often the certificate files and the policy directory are checked for changes.
    #[arg(long, default_value_t = GoDuration(defaults::RELOAD_INTERVAL), env = "SPARK_ADMISSION_RELOAD_INTERVAL")]
    pub reload_interval: GoDuration,
    /// Where the development certificate goes when no --cert/--key is given.
    #[arg(
        long,
        default_value = "certs/dev",
        env = "SPARK_ADMISSION_DEV_CERT_DIR"
    )]
    pub dev_cert_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot load the serving certificate: {0}")]
    Certificate(TlsError),
    #[error(transparent)]
    Certs(#[from] CertError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("server task failed: {0}")]
    Task(String),
}

/// Everything `start` needs; [`ServeArgs`] with the certificate paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub policies: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_inflight_bytes: usize,
    pub max_connections: usize,
    pub reload_interval: Duration,
    pub limits: Limits,
    /// What answers a `/mutate` body (tests replace it to make the engine fail).
    pub evaluator: Evaluator,
}

impl Config {
    /// The defaults of the CLI, on the given files.
    pub fn new(policies: PathBuf, cert: PathBuf, key: PathBuf) -> Config {
        let addr = |a: &str| a.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        Config {
            policies,
            cert,
            key,
            client_ca: None,
            addr: addr(defaults::ADDR),
            admin_addr: addr(defaults::ADMIN_ADDR),
            drain_delay: defaults::DRAIN_DELAY,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            max_inflight_bytes: defaults::MAX_INFLIGHT_BYTES,
            max_connections: defaults::MAX_CONNECTIONS,
            reload_interval: defaults::RELOAD_INTERVAL,
            limits: Limits::default(),
            evaluator: crate::admission::review,
        }
    }
}

/// State shared by the handlers and the reloaders.
pub struct AppState {
    pub policies: PolicyStore,
    pub certs: Arc<CertStore>,
    pub metrics: Metrics,
    pub phase: watch::Receiver<Phase>,
    pub max_body_bytes: usize,
    pub body_budget: BodyBudget,
    pub evaluator: Evaluator,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("policies", &self.policies)
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Ready: a good policy set, a certificate, and not shutting down.
    pub fn readiness(&self) -> Result<(), String> {
        let mut problems = vec![];
        if self.policies.current().is_none() {
            problems.push(format!(
                "no valid policy set loaded from {}",
                self.policies.dir().display()
            ));
        }
        if !self.certs.is_loaded() {
            problems.push("no serving certificate loaded".to_string());
        }
        if *self.phase.borrow() != Phase::Serving {
            problems.push("shutting down".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Load the certificate again if its files changed; log and count the result.
pub async fn reload_certificate(state: &Arc<AppState>) -> Option<TlsError> {
    let s = state.clone();
    let polled = tokio::task::spawn_blocking(move || s.certs.poll()).await;
    match polled {
        Ok(CertPoll::Unchanged) => None,
        Ok(CertPoll::Loaded { not_after }) => {
            info!(not_after, "serving certificate loaded");
            state.metrics.certificate_reload(true, not_after);
            None
        }
        Ok(CertPoll::Failed(e)) => {
            error!(error = %e, "certificate reload failed; keeping the current certificate");
            state.metrics.certificate_reload(false, None);
            Some(e)
        }
        Err(e) => {
            error!(error = %e, "certificate reload task failed");
            None
        }
    }
}

/// Load the policy set again if the directory changed; log and count the result.
pub async fn reload_policies(state: &Arc<AppState>, settle: Duration) {
    let s = state.clone();
    let polled = tokio::task::spawn_blocking(move || s.policies.poll(settle)).await;
    match polled {
        Ok(PolicyPoll::Unchanged) => {}
        Ok(PolicyPoll::Unsettled) => {
            info!(dir = %state.policies.dir().display(), "policy files are being written; reading them again at the next poll")
        }
        Ok(PolicyPoll::Loaded { generation, names }) => {
            info!(
                generation,
                policies = names.join(","),
                dir = %state.policies.dir().display(),
                "policy set loaded"
            );
            state.metrics.policy_reload(true, Some(generation));
        }
        Ok(PolicyPoll::Failed(errors)) => {
            for e in &errors.0 {
                error!(error = %e, "invalid policy");
            }
            error!(
                dir = %state.policies.dir().display(),
                errors = errors.0.len(),
                active_generation = state.policies.generation(),
                "policy set rejected; the last good set stays active"
            );
            state.metrics.policy_reload(false, None);
        }
        Err(e) => error!(error = %e, "policy reload task failed"),
    }
}

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`] and
/// [`RunningServer::wait`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    drain: shutdown::Drain,
    tls_task: JoinHandle<()>,
    admin_stop: oneshot::Sender<()>,
    admin_thread: std::thread::JoinHandle<()>,
    pollers: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Begin the SIGTERM sequence: not ready at once, stop accepting after the drain delay.
    pub fn shutdown(&self) {
        self.drain.begin();
    }

    /// Wait until the TLS server has stopped, then stop the admin server and the reloaders.
    pub async fn wait(self) -> Result<(), ServerError> {
        let tls = self.tls_task.await;
        let _ = self.admin_stop.send(());
        let admin_thread = self.admin_thread;
        let admin = tokio::task::spawn_blocking(move || admin_thread.join()).await;
        for p in &self.pollers {
            p.abort();
        }
        tls.map_err(|e| ServerError::Task(e.to_string()))?;
        match admin {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(ServerError::Task("the admin thread panicked".into())),
            Err(e) => return Err(ServerError::Task(e.to_string())),
        }
        info!("server stopped");
        Ok(())
    }
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, what, source })
}

fn local_addr(
    l: &TcpListener,
    addr: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, ServerError> {
    l.local_addr()
        .map_err(|source| ServerError::Bind { addr, what, source })
}

/// Load certificate and policies, bind both ports and start serving.
///
/// Fails if the certificate cannot be loaded at start (a typo in a path should not leave a
/// pod that never gets ready without saying why); an invalid policy set only keeps the server
/// unready until a good one appears.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let certs = Arc::new(CertStore::new(config.cert.clone(), config.key.clone()));
    let tls_config = tls::server_config(certs.clone(), config.client_ca.as_deref())?;
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let state = Arc::new(AppState {
        policies: PolicyStore::new(config.policies.clone()),
        certs,
        metrics: Metrics::new(),
        phase: phase_rx.clone(),
        max_body_bytes: config.max_body_bytes,
        body_budget: BodyBudget::new(config.max_inflight_bytes),
        evaluator: config.evaluator,
    });
    if let Some(e) = reload_certificate(&state).await {
        return Err(ServerError::Certificate(e));
    }
    let settle = reload::settle_time(config.reload_interval);
    reload_policies(&state, settle).await;

    let listener = bind(config.addr, "admission, TLS").await?;
    let admin_listener = bind(config.admin_addr, "admin").await?;
    let addr = local_addr(&listener, config.addr, "admission, TLS")?;
    let admin_addr = local_addr(&admin_listener, config.admin_addr, "admin")?;

    // A zero interval would spin; 10 ms is already far more often than files change.
    let interval = config.reload_interval.max(Duration::from_millis(10));
    let pollers = vec![
        {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    reload_certificate(&state).await;
                }
            })
        },
        {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    reload_policies(&state, settle).await;
                }
            })
        },
    ];

    let (admin_stop, admin_stopped) = oneshot::channel();
    let admin_std = admin_listener
        .into_std()
        .map_err(|source| ServerError::Bind {
            addr: admin_addr,
            what: "admin",
            source,
        })?;
    let admin_thread =
        admin::spawn(admin_std, state.clone(), admin_stopped).map_err(ServerError::Runtime)?;
    let max_connections = listener::connection_cap(config.max_connections);
    if max_connections < config.max_connections {
        warn!(
            max_connections,
            asked = config.max_connections,
            "the open-files limit allows fewer connections than asked"
        );
    }
    let tls_task = tokio::spawn(listener::serve(
        listener,
        listener::Serving {
            tls: tls_config,
            router: webhook::router(state.clone()),
            limits: config.limits,
            max_connections,
            shutdown_timeout: config.shutdown_timeout,
            state: state.clone(),
        },
        phase_rx,
    ));
    info!(
        version = crate::VERSION,
        revision = crate::REVISION,
        %addr,
        %admin_addr,
        policies = %config.policies.display(),
        max_connections,
        "serving"
    );
    Ok(RunningServer {
        addr,
        admin_addr,
        state,
        drain: shutdown::Drain::new(phase_tx, config.drain_delay),
        tls_task,
        admin_stop,
        admin_thread,
        pollers,
    })
}

/// Install the tracing subscriber for `serve` (level from `RUST_LOG`, default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    // try_init: a subscriber installed earlier by the binary wins.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The runtime of `serve`: `workers` threads (0: one per CPU this process may use) and at
/// most one blocking thread (policy and certificate reloads).
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = if workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        workers
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(1)
        .thread_name("spark-admission")
        .enable_all()
        .build()
}

/// `spark-admission serve` from `main`: the exit code (errors printed to stderr).
pub fn main(args: ServeArgs) -> i32 {
    let result = runtime(args.workers)
        .map_err(ServerError::Runtime)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// `spark-admission serve`: run until SIGTERM/SIGINT, then drain and exit.
pub async fn run(args: ServeArgs) -> Result<(), ServerError> {
    init_logging(args.log_format);
    // A panic is logged like any error (request handling also turns it into an answer).
    std::panic::set_hook(Box::new(|panic| error!(%panic, "panic")));
    let (cert, key, dev_ca) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), None),
        _ => {
            let (written, created) = ensure_dev_certs(&args.dev_cert_dir)?;
            info!(
                dir = %args.dev_cert_dir.display(),
                created,
                "no --cert/--key: using the development certificate (localhost, 127.0.0.1)"
            );
            (written.cert, written.key, Some(written.ca_cert))
        }
    };
    let mut config = Config::new(args.policies.clone(), cert, key);
    config.client_ca = args.client_ca.clone();
    config.addr = args.addr;
    config.admin_addr = args.admin_addr;
    config.drain_delay = args.drain_delay.0;
    config.shutdown_timeout = args.shutdown_timeout.0;
    config.max_body_bytes = args.max_body_bytes;
    config.max_inflight_bytes = args.max_inflight_bytes;
    config.max_connections = args.max_connections;
    config.reload_interval = args.reload_interval.0;
    let server = start(config).await?;
    if let Some(ca) = dev_ca {
        println!("Try it (another terminal):");
        println!(
            "  curl --cacert {} -H 'Content-Type: application/json' -d @examples/admission-review.json https://localhost:{}/mutate",
            ca.display(),
            server.addr.port()
        );
    }
    shutdown::wait_for_signal()
        .await
        .map_err(ServerError::Signal)?;
    warn!(
        drain_delay = %args.drain_delay,
        shutdown_timeout = %args.shutdown_timeout,
        "shutdown requested: not ready now, draining"
    );
    server.shutdown();
    tokio::select! {
        r = server.wait() => r,
        r = shutdown::wait_for_signal() => {
            r.map_err(ServerError::Signal)?;
            warn!("second signal: exiting at once");
            Ok(())
        }
    }
}
