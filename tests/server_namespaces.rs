//! match.namespaceSelector in the server: the Namespace cache is filled from the API (a
//! fake one here, named by KUBECONFIG and served over TLS as a real one is: the kube client
//! must trust the kubeconfig's CA and send its bearer token), the server is not ready until
//! the first list has arrived, and a namespace it has not seen is answered 503
//! (failurePolicy).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use common::server::*;
use hyper::{HeaderMap, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use spark_admission::certs::CertAuthority;

const POLICY: &str = "\
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata: {name: prod-spot}
spec:
  match:
    roles: [executor]
    namespaceSelector: {matchLabels: {env: prod}}
  tolerations: [{key: spot, operator: Exists}]
";

const TOKEN: &str = "service-account-token";

/// GET /api/v1/namespaces: the list once `open`, and a watch that stays open with no event;
/// 401 without the kubeconfig's bearer token.
async fn namespaces(
    State(open): State<Arc<AtomicBool>>,
    headers: HeaderMap,
    Query(q): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let bearer = format!("Bearer {TOKEN}");
    if headers
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        != Some(bearer.as_bytes())
    {
        return (StatusCode::UNAUTHORIZED, "no bearer token").into_response();
    }
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let stream = futures::stream::pending::<Result<Vec<u8>, std::io::Error>>();
        return axum::body::Body::from_stream(stream).into_response();
    }
    if !open.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not yet").into_response();
    }
    let ns = |name: &str, env: &str| json!({"metadata": {"name": name, "resourceVersion": "5", "labels": {"env": env}}});
    let list = json!({
        "apiVersion": "v1", "kind": "NamespaceList",
        "metadata": {"resourceVersion": "5"},
        "items": [ns("analytics", "prod"), ns("sandbox", "dev")]
    });
    (
        [(hyper::header::CONTENT_TYPE, "application/json")],
        list.to_string(),
    )
        .into_response()
}

fn executor(namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "e", "namespace": namespace, "labels": {"spark-role": "executor"}},
           "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "b"}]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_labels_come_from_the_api_and_readiness_waits_for_them() {
    let open = Arc::new(AtomicBool::new(false));
    let api = axum::Router::new()
        .route("/api/v1/namespaces", axum::routing::get(namespaces))
        .with_state(open.clone());
    let ca = CertAuthority::generate("fake API CA").unwrap();
    let api_addr = serve_tls(api, &ca).await;
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());

    let kubeconfig = std::env::temp_dir().join(format!("sa-kubeconfig-{}", std::process::id()));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: t\n  cluster: {{server: \"https://{api_addr}\", certificate-authority-data: {ca_data}}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: t}}\nusers:\n- name: t\n  user: {{token: {TOKEN}}}\n"
        ),
    )
    .unwrap();
    // The only test in this binary: nothing else reads the environment concurrently.
    std::env::set_var("KUBECONFIG", &kubeconfig);

    let server = TestServer::start("namespaces", &[("p.yaml", POLICY)], |_, _| {}).await;
    let (status, body) = server.admin("/readyz").await;
    assert_ne!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server.admin("/readyz").await;
    assert_ne!(
        status,
        StatusCode::OK,
        "ready before the namespaces were listed"
    );
    assert!(body.contains("namespace cache not synced"), "{body}");

    open.store(true, Ordering::SeqCst);
    let mut ready = false;
    for _ in 0..200 {
        if server.admin("/readyz").await.0 == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "{:?}", server.admin("/readyz").await);

    let prod = server
        .review(&admission_review(
            "u1",
            "CREATE",
            Some(&executor("analytics")),
            false,
        ))
        .await;
    assert_eq!(prod["allowed"], true);
    assert!(prod["patch"].is_string(), "{prod}");
    let dev = server
        .review(&admission_review(
            "u2",
            "CREATE",
            Some(&executor("sandbox")),
            false,
        ))
        .await;
    assert!(dev.get("patch").is_none(), "{dev}");

    let unknown = server
        .connect()
        .await
        .post(
            "/mutate?timeout=10s",
            Some("application/json"),
            json_bytes(&admission_review(
                "u3",
                "CREATE",
                Some(&executor("new-team")),
                false,
            )),
        )
        .await
        .unwrap();
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        unknown.text()
    );
    assert!(unknown
        .text()
        .contains("the labels of namespace \"new-team\" are not known"));
    server.stop().await;
    let _ = std::fs::remove_file(&kubeconfig);
}

/// Serve `app` over TLS on 127.0.0.1 with a certificate for that address from `ca`, as the
/// API server's own certificate carries its Service IP.
async fn serve_tls(app: axum::Router, ca: &CertAuthority) -> std::net::SocketAddr {
    let cert = ca.issue_server(&["127.0.0.1".to_string()], 1).unwrap();
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}
