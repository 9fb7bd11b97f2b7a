#![forbid(unsafe_code)]
//! `apiserver-standin`: see the library docs for what it reproduces of the API server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use apiserver_standin::admission::UserInfo;
use apiserver_standin::client::WebhookClient;
use apiserver_standin::plugins::PriorityClass;
use apiserver_standin::server::{router, AppState};
use apiserver_standin::webhook_config::{self, Overrides};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Test-only stand-in for the Kubernetes API server (pods + webhook dispatch)")]
struct Args {
    /// Plain-HTTP listen address for the Kubernetes REST API (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the bound address (`127.0.0.1:PORT`) to this file once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Rendered manifests (multi-document YAML, e.g. `kubectl kustomize manifests/`) holding
    /// the MutatingWebhookConfiguration(s). Without it, no webhook is called.
    #[arg(long)]
    webhook_config: Option<String>,
    /// PEM CA replacing every webhook's clientConfig.caBundle.
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// `SERVICE.NAMESPACE:PORT=ADDR`: where a webhook Service's endpoint listens (repeatable).
    /// A Service without an endpoint fails every call, as with no ready pods.
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// Extra namespace `NAME[,KEY=VALUE...]` (repeatable). Always known: default, kube-system,
    /// kube-public, kube-node-lease, spark-admission.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Call each IfNeeded webhook whose last call was in the first round once more with the
    /// final object (idempotence probe), as a later webhook's change would.
    #[arg(long)]
    probe_reinvocation: bool,
    /// A PriorityClass `NAME=VALUE[,globalDefault][,preemptionPolicy=Never]` (repeatable);
    /// system-node-critical and system-cluster-critical always exist.
    #[arg(long = "priority-class")]
    priority_classes: Vec<String>,
    /// Write each stored pod to DIR/<namespace>__<name>.json.
    #[arg(long)]
    dump_dir: Option<PathBuf>,
    /// Write every POSTed body (pods, PVCs, ConfigMaps...) exactly as received, before any
    /// defaulting, to DIR/<seq>__<namespace>__<resource>.json (tests/fixtures/record.py).
    #[arg(long)]
    record_raw: Option<PathBuf>,
    /// userInfo.username in AdmissionReviews.
    #[arg(long, default_value = "spark-submitter")]
    user: String,
}

fn namespaces(extra: &[String]) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out = BTreeMap::new();
    let builtin = [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "spark-admission",
    ];
    for spec in builtin
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
    {
        let mut parts = spec.split(',');
        let name = parts.next().unwrap_or("").to_string();
        if name.is_empty() {
            bail!("--namespace {spec:?}: empty name");
        }
        let mut labels =
            BTreeMap::from([("kubernetes.io/metadata.name".to_string(), name.clone())]);
        for kv in parts {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--namespace {spec:?}: {kv:?} is not KEY=VALUE"))?;
            labels.insert(k.to_string(), v.to_string());
        }
        out.insert(name, labels);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "apiserver_standin=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut overrides = Overrides::default();
    if let Some(ca) = &args.ca_bundle {
        overrides.ca_bundle =
            Some(std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?);
    }
    for e in &args.endpoints {
        let (svc, addr) = e
            .split_once('=')
            .with_context(|| format!("--endpoint {e:?}: expected SERVICE.NAMESPACE:PORT=ADDR"))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--endpoint {e:?}: bad address"))?;
        overrides.endpoints.insert(svc.to_string(), addr);
    }
    let hooks = match &args.webhook_config {
        Some(path) => webhook_config::load(path, &overrides)?,
        None => Vec::new(),
    };
    for h in &hooks {
        tracing::info!(webhook = %h.name, url = %WebhookClient::url_for(h),
            failure_policy = ?h.failure_policy, timeout = h.timeout_seconds, "webhook");
    }
    for dir in [&args.dump_dir, &args.record_raw].into_iter().flatten() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let state = Arc::new(AppState {
        hooks,
        client: WebhookClient::default(),
        probe_reinvocation: args.probe_reinvocation,
        priority_classes: {
            let mut classes = PriorityClass::system();
            for spec in &args.priority_classes {
                classes.push(
                    PriorityClass::parse(spec)
                        .map_err(|e| anyhow::anyhow!("--priority-class {e}"))?,
                );
            }
            classes
        },
        namespaces: namespaces(&args.namespaces)?,
        user: UserInfo {
            username: args.user.clone(),
            groups: vec!["system:authenticated".into()],
        },
        store: Mutex::new(Default::default()),
        events,
        dump_dir: args.dump_dir.clone(),
        record_raw: args.record_raw.clone(),
        recorded: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(f) = &args.ready_file {
        std::fs::write(f, addr.to_string()).with_context(|| format!("writing {}", f.display()))?;
    }
    eprintln!("apiserver-standin listening on http://{addr}");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
