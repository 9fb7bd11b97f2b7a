//! The API server's webhook client: HTTPS with the chain verified against the webhook's
//! `caBundle` for `<service>.<namespace>.svc`, ALPN `http/1.1` only, kept-alive connections
//! reused across calls, and the call bounded by `timeoutSeconds` (also sent as `?timeout=`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::webhook_config::{Target, Webhook};

/// Largest webhook response read (the API server's limit is in the same range).
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no endpoints available for service \"{0}\"")]
    NoEndpoints(String),
    #[error("webhook clientConfig.url {0:?} is not an https URL with host and port")]
    BadUrl(String),
    #[error("caBundle holds no usable certificate: {0}")]
    CaBundle(String),
    #[error("dial tcp {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Http(String),
    #[error("context deadline exceeded (timeout {0}s)")]
    Timeout(u64),
    #[error("an error on the server (\"{body}\") has prevented the request from succeeding (HTTP {status})")]
    Status { status: u16, body: String },
}

/// Where and how one call goes.
struct Endpoint {
    url: String,
    host_header: String,
    path_and_query: String,
    server_name: String,
    connect: SocketAddr,
}

fn endpoint(hook: &Webhook) -> Result<Endpoint, CallError> {
    let timeout = format!("timeout={}s", hook.timeout_seconds);
    match &hook.target {
        Target::Service {
            name,
            namespace,
            port,
            path,
            connect,
        } => {
            let server_name = format!("{name}.{namespace}.svc");
            let connect = connect.ok_or_else(|| CallError::NoEndpoints(name.clone()))?;
            let host_header = format!("{server_name}:{port}");
            let path_and_query = format!("{path}?{timeout}");
            Ok(Endpoint {
                url: format!("https://{host_header}{path_and_query}"),
                host_header,
                path_and_query,
                server_name,
                connect,
            })
        }
        Target::Url(url) => {
            let bad = || CallError::BadUrl(url.clone());
            let rest = url.strip_prefix("https://").ok_or_else(bad)?;
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "443"));
            let port: u16 = port.parse().map_err(|_| bad())?;
            let ip: std::net::IpAddr = if host == "localhost" {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                host.trim_matches(['[', ']']).parse().map_err(|_| bad())?
            };
            let path = if path.is_empty() { "/" } else { path };
            let sep = if path.contains('?') { '&' } else { '?' };
            let path_and_query = format!("{path}{sep}{timeout}");
            Ok(Endpoint {
                url: format!("https://{authority}{path_and_query}"),
                host_header: authority.to_string(),
                path_and_query,
                server_name: host.trim_matches(['[', ']']).to_string(),
                connect: SocketAddr::new(ip, port),
            })
        }
    }
}

type PoolKey = (SocketAddr, String, Vec<u8>);

/// One client for all webhooks, like the API server's per-webhook cached clients.
#[derive(Default)]
pub struct WebhookClient {
    idle: Mutex<HashMap<PoolKey, Vec<SendRequest<Full<Bytes>>>>>,
    tls: Mutex<HashMap<Vec<u8>, Arc<rustls::ClientConfig>>>,
    connections_opened: AtomicU64,
}

/// A call's answer: HTTP status was 2xx; the body is still to be checked.
pub struct CallResponse {
    pub body: Bytes,
    /// `Content-Type` of the answer (None when absent).
    pub content_type: Option<String>,
    pub reused_connection: bool,
}

impl WebhookClient {
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// The URL the API server would post to, for messages.
    pub fn url_for(hook: &Webhook) -> String {
        endpoint(hook)
            .map(|e| e.url)
            .unwrap_or_else(|e| format!("<{e}>"))
    }

    /// POSTs `body` to the webhook, bounded by its timeout.
    pub async fn call(&self, hook: &Webhook, body: Vec<u8>) -> Result<CallResponse, CallError> {
        let ep = endpoint(hook)?;
        let limit = Duration::from_secs(hook.timeout_seconds);
        tokio::time::timeout(limit, self.call_inner(hook, &ep, body))
            .await
            .map_err(|_| CallError::Timeout(hook.timeout_seconds))?
    }

    async fn call_inner(
        &self,
        hook: &Webhook,
        ep: &Endpoint,
        body: Vec<u8>,
    ) -> Result<CallResponse, CallError> {
        let key: PoolKey = (ep.connect, ep.server_name.clone(), hook.ca_bundle.clone());
        let (mut sender, reused) = match self.take_idle(&key) {
            Some(s) => (s, true),
            None => (self.connect(&key).await?, false),
        };
        let req = hyper::Request::post(&ep.path_and_query)
            .header(hyper::header::HOST, &ep.host_header)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json, */*")
            .header(hyper::header::USER_AGENT, "kube-apiserver-admission")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| CallError::Http(e.to_string()))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Http(e.to_string()))?
            .to_bytes();
        if !sender.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.entry(key).or_default().push(sender);
            }
        }
        if !status.is_success() {
            return Err(CallError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        Ok(CallResponse {
            body,
            content_type,
            reused_connection: reused,
        })
    }

    fn take_idle(&self, key: &PoolKey) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        while let Some(s) = list.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    async fn connect(&self, key: &PoolKey) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let (addr, server_name, ca) = key;
        let config = self.tls_config(ca)?;
        let name = ServerName::try_from(server_name.clone())
            .map_err(|e| CallError::Tls(std::io::Error::other(e)))?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| CallError::Connect {
                addr: *addr,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(CallError::Tls)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| CallError::Http(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("webhook connection ended: {e}");
            }
        });
        self.connections_opened.fetch_add(1, Ordering::Relaxed);
        Ok(sender)
    }

    fn tls_config(&self, ca: &[u8]) -> Result<Arc<rustls::ClientConfig>, CallError> {
        if let Some(c) = self.tls.lock().ok().and_then(|m| m.get(ca).cloned()) {
            return Ok(c);
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| CallError::CaBundle(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| CallError::CaBundle(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(CallError::CaBundle("empty".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| CallError::CaBundle(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut m) = self.tls.lock() {
            m.insert(ca.to_vec(), config.clone());
        }
        Ok(config)
    }
}
