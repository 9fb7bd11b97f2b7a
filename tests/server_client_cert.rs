//! `--client-ca`: only clients with a certificate signed by that CA get an answer.

mod common;

use common::server::*;
use hyper::StatusCode;
use spark_admission::certs::CertAuthority;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_mode_rejects_clients_without_a_trusted_certificate() {
    let client_ca = CertAuthority::generate("API server client CA").unwrap();
    let client_ca_pem = client_ca.cert_pem().to_string();
    let s = TestServer::start("client-ca", &[("p.yaml", TEST_POLICIES)], |config, dir| {
        let path = dir.join("client-ca.crt");
        std::fs::write(&path, &client_ca_pem).unwrap();
        config.client_ca = Some(path);
    })
    .await;
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let body = json_bytes(&admission_review("cc", "CREATE", Some(&pod), false));
    let server_ca = s.pki.ca.cert_pem().to_string();

    let trusted = client_ca.issue_client("kube-apiserver", 5).unwrap();
    let stranger = CertAuthority::generate("someone else")
        .unwrap()
        .issue_client("kube-apiserver", 5)
        .unwrap();
    for (who, cert) in [
        ("no certificate", None),
        ("certificate from another CA", Some(&stranger)),
    ] {
        let config = client_tls(&server_ca, cert, &[b"http/1.1"]);
        // With TLS 1.3 the client learns of the rejection on its first read.
        let result = async {
            let mut conn = H1::connect(s.addr, config).await?;
            conn.post("/mutate", Some("application/json"), body.clone())
                .await
        }
        .await;
        assert!(result.is_err(), "{who}: got an answer: {result:?}");
    }

    let config = client_tls(&server_ca, Some(&trusted), &[b"http/1.1"]);
    let answer = H1::connect(s.addr, config)
        .await
        .unwrap()
        .post("/mutate", Some("application/json"), body)
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.review_response()["uid"], "cc");
    s.stop().await;
}
