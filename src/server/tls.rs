//! rustls configuration and certificate hot reload.
//!
//! The serving certificate lives in a [`CertStore`] that rustls asks on every handshake
//! (`ResolvesServerCert`), so a reload affects new connections at once and never disturbs open
//! ones. The files are polled and compared by content: that sees every kind of update,
//! including the kubelet's atomic swap of a Secret volume's `..data` symlink, which a watch on
//! the files themselves misses.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use crate::certs::first_cert_not_after;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: bad PEM certificate: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("{path} holds no usable PEM private key: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("key {key} does not belong to certificate {cert}: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parse a PEM chain (leaf first) and a PEM key into a key rustls can serve, checking that they
/// belong together. Returns it with the leaf's notAfter (Unix seconds).
pub fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<(CertifiedKey, Option<i64>), TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok((ck, first_cert_not_after(cert_pem)))
}

/// What a poll of the certificate files found.
#[derive(Debug)]
pub enum CertPoll {
    /// Same content as last time (loaded or failed): nothing to do.
    Unchanged,
    /// New content, loaded and now served.
    Loaded { not_after: Option<i64> },
    /// New content that cannot be served; the previous certificate stays.
    Failed(TlsError),
}

/// The active serving certificate, reloaded from files; rustls asks it on every handshake.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Option<Arc<CertifiedKey>>>,
    last_seen: Mutex<Option<u64>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl CertStore {
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> CertStore {
        CertStore {
            cert_path,
            key_path,
            current: RwLock::new(None),
            last_seen: Mutex::new(None),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.current.read().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Read both files; if their content changed since the last poll, try to load them.
    /// Blocking (small file reads): call from a blocking context.
    pub fn poll(&self) -> CertPoll {
        let files = read(&self.cert_path).and_then(|c| Ok((c, read(&self.key_path)?)));
        let mut hasher = DefaultHasher::new();
        match &files {
            Ok((cert, key)) => (cert, key).hash(&mut hasher),
            Err(e) => e.to_string().hash(&mut hasher),
        }
        let fingerprint = hasher.finish();
        {
            let Ok(mut last) = self.last_seen.lock() else {
                return CertPoll::Unchanged;
            };
            if *last == Some(fingerprint) {
                return CertPoll::Unchanged;
            }
            *last = Some(fingerprint);
        }
        let loaded = files
            .and_then(|(cert, key)| certified_key(&self.cert_path, &cert, &self.key_path, &key));
        match loaded {
            Ok((ck, not_after)) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Some(Arc::new(ck));
                }
                CertPoll::Loaded { not_after }
            }
            Err(e) => CertPoll::Failed(e),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

/// TLS 1.2 and 1.3, ALPN h2 and http/1.1, the certificate from `store`, and client
/// certificates required and verified against `client_ca` when given.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read(path)?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::ClientCa {
                    path: path.to_path_buf(),
                    message: "no PEM certificate in the file".to_string(),
                });
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::CertAuthority;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sa-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn poll_loads_keeps_the_old_cert_on_failure_and_reports_each_change_once() {
        let dir = temp_dir("poll");
        let ca = CertAuthority::generate("ca").unwrap();
        let a = ca.issue_server(&["a.example".into()], 5).unwrap();
        let b = ca.issue_server(&["b.example".into()], 5).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let store = CertStore::new(cert.clone(), key.clone());

        assert!(matches!(
            store.poll(),
            CertPoll::Failed(TlsError::Read { .. })
        ));
        assert!(!store.is_loaded());
        assert!(matches!(store.poll(), CertPoll::Unchanged));

        std::fs::write(&cert, &a.cert_pem).unwrap();
        std::fs::write(&key, &a.key_pem).unwrap();
        assert!(matches!(
            store.poll(),
            CertPoll::Loaded { not_after: Some(_) }
        ));
        assert!(store.is_loaded());
        assert!(matches!(store.poll(), CertPoll::Unchanged));

        // Cert of b with the key of a: rejected, a stays.
        std::fs::write(&cert, &b.cert_pem).unwrap();
        assert!(matches!(
            store.poll(),
            CertPoll::Failed(TlsError::Mismatch { .. })
        ));
        assert!(store.is_loaded());
        std::fs::write(&cert, "garbage").unwrap();
        assert!(matches!(
            store.poll(),
            CertPoll::Failed(TlsError::NoCertificate { .. })
        ));

        std::fs::write(&cert, &b.cert_pem).unwrap();
        std::fs::write(&key, &b.key_pem).unwrap();
        assert!(matches!(store.poll(), CertPoll::Loaded { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn client_ca_must_hold_a_certificate() {
        let dir = temp_dir("clientca");
        let path = dir.join("ca.crt");
        std::fs::write(&path, "nothing").unwrap();
        let store = Arc::new(CertStore::new(dir.join("x"), dir.join("y")));
        let err = server_config(store, Some(&path)).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
