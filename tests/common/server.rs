//! Helpers for the server integration tests: certificates made in the test, a real server on
//! free loopback ports, a TLS client that verifies the chain against the CA for the in-cluster
//! name (as the API server does with caBundle), and pods defaulted as the API server would.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Frame};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{json, Value};
use spark_admission::certs::{service_dns_names, CertAuthority, IssuedCert};
use spark_admission::server::{start, Config, RunningServer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The name the API server uses to reach the webhook Service.
pub const SERVICE_DNS: &str = "spark-admission.spark-admission.svc";

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spark-admission-test-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a serving certificate (chain) for the in-cluster Service name.
pub struct Pki {
    pub ca: CertAuthority,
    pub serving: IssuedCert,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = CertAuthority::generate("test CA").unwrap();
        let serving = ca
            .issue_server(&service_dns_names("spark-admission", "spark-admission"), 30)
            .unwrap();
        Pki { ca, serving }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// Policies used by the server tests: executors to AKS spot (preferred) with two hostPath
/// local dirs and a secret env var; drivers to on-demand with a toleration that duplicates
/// one the API server already added, a secret env var and a memory cap.
pub const TEST_POLICIES: &str = r#"apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata:
  name: executors-on-spot
spec:
  match:
    roles: [executor]
  placement:
    capacity: spot
    provider: aks
    scheduling: preferred
    weight: 100
  localDirs:
    volumes:
      - hostPath: {path: /tmp/mnt-1}
      - hostPath: {path: /tmp/mnt-2}
  secretEnv:
    - {name: APP_ID, secretName: app, key: app_id}
---
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata:
  name: drivers-on-demand
spec:
  match:
    roles: [driver]
  placement:
    capacity: on-demand
    provider: aks
  tolerations:
    - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}
  secretEnv:
    - {name: APP_SECRET, secretName: app, key: app_secret}
  memory:
    maxPodMemory: {value: 64Gi, action: deny}
"#;

/// Write policy files, each `(file name, contents)`, into `dir`.
pub fn write_policies(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Lay out `files` as a kubelet-managed volume in `dir`, version `version`, swapping `..data`.
pub fn kubelet_update(dir: &Path, version: &str, files: &[(&str, &str)]) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap();
    for (name, text) in files {
        std::fs::write(data.join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

/// A server running in this process on free loopback ports.
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub pki: Pki,
    pub client: Arc<ClientConfig>,
    pub dir: TempDir,
}

impl TestServer {
    /// Policies from `policies` (file name, text), certificates in `dir/tls`, reload every
    /// 50 ms, drain delay 0; `tweak` adjusts the rest.
    pub async fn start(
        name: &str,
        policies: &[(&str, &str)],
        tweak: impl FnOnce(&mut Config, &Path),
    ) -> TestServer {
        let dir = TempDir::new(name);
        let pki = Pki::new();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("tls.crt"), &pki.serving.cert_pem).unwrap();
        std::fs::write(tls.join("tls.key"), &pki.serving.key_pem).unwrap();
        let policy_dir = dir.path().join("policies");
        write_policies(&policy_dir, policies);
        let mut config = Config::new(policy_dir, tls.join("tls.crt"), tls.join("tls.key"));
        config.addr = "127.0.0.1:0".parse().unwrap();
        config.admin_addr = "127.0.0.1:0".parse().unwrap();
        config.reload_interval = Duration::from_millis(50);
        config.drain_delay = Duration::ZERO;
        config.shutdown_timeout = Duration::from_secs(5);
        tweak(&mut config, dir.path());
        let server = start(config).await.unwrap();
        let client = client_tls(pki.ca.cert_pem(), None, &[b"http/1.1"]);
        TestServer {
            addr: server.addr,
            admin_addr: server.admin_addr,
            server: Some(server),
            pki,
            client,
            dir,
        }
    }

    pub async fn connect(&self) -> H1 {
        H1::connect(self.addr, self.client.clone()).await.unwrap()
    }

    /// One review over a fresh connection; the parsed AdmissionReview `response`.
    pub async fn review(&self, review: &Value) -> Value {
        let answer = self
            .connect()
            .await
            .post(
                "/mutate?timeout=10s",
                Some("application/json"),
                json_bytes(review),
            )
            .await
            .unwrap();
        answer.review_response()
    }

    pub async fn admin(&self, path: &str) -> (StatusCode, String) {
        admin_get(self.admin_addr, path).await.unwrap()
    }

    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin("/metrics").await;
        metric_value(&text, series).unwrap_or(0.0)
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait().await.unwrap();
        }
    }
}

/// A rustls client trusting only `ca_pem`, optionally presenting a client certificate.
pub fn client_tls(ca_pem: &str, client: Option<&IssuedCert>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let chain = CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Like the API server's Go client (no session cache): every connection is a full
    // handshake, so it sees the certificate served at that moment.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// TCP + TLS to `addr`, verifying the server as `SERVICE_DNS`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, BoxError> {
    tls_connect_as(addr, config, SERVICE_DNS).await
}

/// TCP + TLS to `addr`, verifying the server as `name`.
pub async fn tls_connect_as(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> Result<TlsStream<TcpStream>, BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(name.to_string())?;
    Ok(TlsConnector::from(config).connect(name, tcp).await?)
}

/// An answer: status, headers and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `response` of an AdmissionReview answer (asserts HTTP 200 and the envelope).
    pub fn review_response(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        let v: Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        v["response"].clone()
    }
}

/// A kept-alive HTTP/1.1 connection over TLS.
pub struct H1 {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// DER of the certificate the server presented.
    pub server_cert: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<H1, BoxError> {
        let tls = tls_connect(addr, config).await?;
        let (_, session) = tls.get_ref();
        let server_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H1 {
            send,
            server_cert,
            alpn,
        })
    }

    pub async fn post(
        &mut self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, BoxError> {
        let mut req = Request::post(path).header("host", SERVICE_DNS);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.request(req.body(Full::new(Bytes::from(body)))?).await
    }

    pub async fn request(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection not ready: {e}"))?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Whether the connection can take another request (false once the server closed it).
    pub async fn ready(&mut self) -> bool {
        self.send.ready().await.is_ok()
    }

    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    /// Resolves when the server has closed the connection.
    pub async fn closed(&mut self) {
        while self.send.ready().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One POST over HTTP/2 (ALPN h2).
pub async fn post_h2(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    body: Vec<u8>,
) -> Result<(Option<Vec<u8>>, Answer), BoxError> {
    let tls = tls_connect(addr, config).await?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post(format!("https://{SERVICE_DNS}/mutate?timeout=10s"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((
        alpn,
        Answer {
            status,
            headers,
            body,
        },
    ))
}

/// GET on the plain-HTTP admin port.
pub async fn admin_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, String), BoxError> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))?;
    let resp = send.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The value of one series (`name{labels}` exactly as exposed) in a metrics text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Poll `check` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

#[allow(unused_imports)]
pub use super::{api_server_defaults, assert_valid_pod, fixture, fixtures};

/// An AdmissionReview for `operation` on a Pod, as the API server sends it.
pub fn admission_review(uid: &str, operation: &str, pod: Option<&Value>, dry_run: bool) -> Value {
    let namespace = pod
        .and_then(|p| p["metadata"]["namespace"].as_str())
        .unwrap_or("default");
    let (object, old_object) = match operation {
        "DELETE" => (Value::Null, pod.cloned().unwrap_or(Value::Null)),
        "UPDATE" => (
            pod.cloned().unwrap_or(Value::Null),
            pod.cloned().unwrap_or(Value::Null),
        ),
        _ => (pod.cloned().unwrap_or(Value::Null), Value::Null),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod.and_then(|p| p["metadata"]["name"].as_str()),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:spark:spark", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old_object,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Decode the response's base64 JSONPatch and apply it to `pod`.
pub fn apply_response_patch(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let b64 = response["patch"]
        .as_str()
        .expect("patch must be a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).unwrap();
    out
}

/// The built binary running `serve` on free loopback ports, JSON logs collected.
pub struct Binary {
    pub child: std::process::Child,
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
}

impl Binary {
    /// `spark-admission serve --policies DIR/policies --addr 127.0.0.1:0 --admin-addr
    /// 127.0.0.1:0 --log-format json ARGS…` run in `dir`; returns once it logged `serving`.
    /// The binary is the one cargo built for the tests, or `$SPARK_ADMISSION_TEST_BIN` (CI
    /// runs the fault-injection run on the static release binary).
    pub fn serve(dir: &Path, args: &[std::ffi::OsString]) -> Binary {
        use std::io::BufRead as _;
        let program = std::env::var_os("SPARK_ADMISSION_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_spark-admission").into());
        let mut child = std::process::Command::new(program)
            .current_dir(dir)
            .arg("serve")
            .arg("--policies")
            .arg(dir.join("policies"))
            .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            // Every admission logged (they are `debug`).
            .env("RUST_LOG", "info,spark_admission::server::webhook=debug")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if line.contains("\"serving\"") {
                        let _ = tx.send(line.clone());
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let serving: Value = serde_json::from_str(
            &rx.recv_timeout(Duration::from_secs(20))
                .expect("the server did not log `serving`"),
        )
        .unwrap();
        let addr = serving["fields"]["addr"].as_str().unwrap().parse().unwrap();
        let admin_addr = serving["fields"]["admin_addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        Binary {
            child,
            logs,
            addr,
            admin_addr,
        }
    }

    /// [`Binary::serve`] with `pki`'s serving certificate in `dir/tls` and `policies` (file
    /// name, text) in `dir/policies`, plus `args`.
    pub fn serve_with(dir: &Path, pki: &Pki, policies: &[(&str, &str)], args: &[&str]) -> Binary {
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("tls.crt"), &pki.serving.cert_pem).unwrap();
        std::fs::write(tls.join("tls.key"), &pki.serving.key_pem).unwrap();
        write_policies(&dir.join("policies"), policies);
        let mut all: Vec<std::ffi::OsString> = vec!["--cert".into(), tls.join("tls.crt").into()];
        all.extend(["--key".into(), tls.join("tls.key").into()]);
        all.extend(args.iter().map(Into::into));
        Binary::serve(dir, &all)
    }

    pub fn sigterm(&self) {
        // The shell's builtin `kill`: no procps needed, no unsafe signal call.
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A request body fed from a channel; the test decides when data comes.
pub struct ChannelBody(
    pub tokio::sync::mpsc::UnboundedReceiver<Result<Frame<Bytes>, std::io::Error>>,
);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx)
    }
}
