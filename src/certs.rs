//! Certificates for the webhook: a CA and the certificates it signs (rcgen), the `certs`
//! subcommand that writes them for a cluster, and the development default `serve` uses when
//! given no `--cert/--key`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// Validity of a generated CA.
pub const CA_DAYS: i64 = 3650;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable {what}: {source}")]
    Parse {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
}

/// A PEM certificate (possibly a chain) and its PEM private key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that can issue server and client certificates.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

fn gen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Generate { what, source }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that lag behind the one that signed.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

impl CertAuthority {
    /// A new self-signed CA (ECDSA P-256) named `common_name`.
    pub fn generate(common_name: &str) -> Result<CertAuthority, CertError> {
        let key = KeyPair::generate().map_err(gen_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(gen_err("CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok(CertAuthority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// An existing CA from its PEM certificate and key files (as `certs` wrote them).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<CertAuthority, CertError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| CertError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        let key = KeyPair::from_pem(&key_pem).map_err(|source| CertError::Parse {
            path: key_path.to_path_buf(),
            what: "private key",
            source,
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| CertError::Parse {
                path: cert_path.to_path_buf(),
                what: "CA certificate (or it does not match the key)",
                source,
            })?;
        Ok(CertAuthority {
            issuer,
            cert_pem,
            key_pem,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A serving certificate for `names` (DNS names or IP addresses). `cert_pem` holds the
    /// chain: the serving certificate, then the CA.
    pub fn issue_server(&self, names: &[String], days: i64) -> Result<IssuedCert, CertError> {
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(gen_err(format!("serving certificate for {names:?}")))?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, days);
        self.sign(params, "serving certificate", true)
    }

    /// A client certificate (for `--client-ca` mode) with the given common name.
    pub fn issue_client(&self, common_name: &str, days: i64) -> Result<IssuedCert, CertError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, days);
        self.sign(params, "client certificate", false)
    }

    fn sign(
        &self,
        params: CertificateParams,
        what: &str,
        chain: bool,
    ) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate().map_err(gen_err(format!("{what} key")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen_err(what.to_string()))?;
        let mut cert_pem = cert.pem();
        if chain {
            cert_pem.push_str(&self.cert_pem);
        }
        Ok(IssuedCert {
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}

/// The DNS names the API server may use for a Service: it calls `<svc>.<ns>.svc`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// `notAfter` of the first certificate in a PEM file, as Unix seconds.
pub fn first_cert_not_after(pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Write `contents` to `path` atomically (temp file + rename); `secret` files get mode 0600.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&tmp).map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// Arguments of `spark-admission certs`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the Service in front of the webhook.
    #[arg(
        long,
        default_value = "spark-admission",
        env = "SPARK_ADMISSION_SERVICE"
    )]
    pub service: String,
    /// Namespace of that Service.
    #[arg(
        long,
        default_value = "spark-admission",
        env = "SPARK_ADMISSION_NAMESPACE"
    )]
    pub namespace: String,
    /// Directory to write ca.crt, ca.key, tls.crt, tls.key and cabundle-patch.yaml into.
    #[arg(long, default_value = "certs", env = "SPARK_ADMISSION_OUT")]
    pub out: PathBuf,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "san")]
    pub extra_names: Vec<String>,
    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Keep the CA already in the output directory (ca.crt, ca.key) and issue only a new
    /// serving certificate: routine rotation, the caBundle stays valid. Without it, or when
    /// there is no CA yet, a new CA is made.
    #[arg(long)]
    pub reuse_ca: bool,
}

/// Paths written by [`write_webhook_certs`].
#[derive(Debug, Clone)]
pub struct WrittenCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cabundle_patch: Option<PathBuf>,
}

/// `spark-admission certs`: a CA and a serving certificate for `<service>.<namespace>.svc`,
/// plus the kustomize patch that puts the CA into the webhook configuration's caBundle.
pub fn run_certs(args: &CertsArgs) -> Result<WrittenCerts, CertError> {
    let mut names = service_dns_names(&args.service, &args.namespace);
    names.extend(args.extra_names.iter().cloned());
    let (ca_cert, ca_key) = (args.out.join("ca.crt"), args.out.join("ca.key"));
    let ca = if args.reuse_ca && ca_cert.exists() && ca_key.exists() {
        CertAuthority::load(&ca_cert, &ca_key)?
    } else {
        CertAuthority::generate(&format!(
            "spark-admission CA ({}.{})",
            args.service, args.namespace
        ))?
    };
    let serving = ca.issue_server(&names, args.days)?;
    let mut written = write_bundle(&args.out, &ca, &serving)?;
    let patch_path = args.out.join("cabundle-patch.yaml");
    write_file(&patch_path, cabundle_patch(ca.cert_pem()).as_bytes(), false)?;
    written.cabundle_patch = Some(patch_path);
    Ok(written)
}

/// `spark-admission certs` from `main`: writes the files, lists them, returns the exit code.
pub fn main(args: &CertsArgs) -> i32 {
    match run_certs(args) {
        Ok(w) => {
            for path in [&w.ca_cert, &w.ca_key, &w.cert, &w.key]
                .into_iter()
                .chain(w.cabundle_patch.as_ref())
            {
                println!("wrote {}", path.display());
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn write_bundle(
    dir: &Path,
    ca: &CertAuthority,
    serving: &IssuedCert,
) -> Result<WrittenCerts, CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let written = WrittenCerts {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        cabundle_patch: None,
    };
    write_file(&written.ca_cert, ca.cert_pem().as_bytes(), false)?;
    write_file(&written.ca_key, ca.key_pem().as_bytes(), true)?;
    write_file(&written.key, serving.key_pem.as_bytes(), true)?;
    write_file(&written.cert, serving.cert_pem.as_bytes(), false)?;
    Ok(written)
}

/// A kustomize JSON6902 patch setting the caBundle of MutatingWebhookConfiguration
/// `spark-admission` (target it with group admissionregistration.k8s.io, version v1).
pub fn cabundle_patch(ca_pem: &str) -> String {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "# Generated by `spark-admission certs`: sets the webhook's caBundle to base64(ca.crt).\n\
         # kustomization.yaml:\n\
         #   patches:\n\
         #     - path: cabundle-patch.yaml\n\
         #       target:\n\
         #         group: admissionregistration.k8s.io\n\
         #         version: v1\n\
         #         kind: MutatingWebhookConfiguration\n\
         #         name: spark-admission\n\
         - op: add\n  path: /webhooks/0/clientConfig/caBundle\n  value: {bundle}\n"
    )
}

/// Names the development certificate is valid for.
pub fn dev_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// The development default of `serve`: reuse the CA and serving certificate in `dir` if they
/// are there and valid for another day, otherwise write new ones. Returns what is in `dir`.
pub fn ensure_dev_certs(dir: &Path) -> Result<(WrittenCerts, bool), CertError> {
    let existing = WrittenCerts {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        cabundle_patch: None,
    };
    let tomorrow = (OffsetDateTime::now_utc() + Duration::days(1)).unix_timestamp();
    let still_good = existing.ca_cert.is_file()
        && existing.key.is_file()
        && fs::read(&existing.cert)
            .ok()
            .and_then(|pem| first_cert_not_after(&pem))
            .is_some_and(|not_after| not_after > tomorrow);
    if still_good {
        return Ok((existing, false));
    }
    let ca = CertAuthority::generate("spark-admission development CA")?;
    let serving = ca.issue_server(&dev_names(), 365)?;
    Ok((write_bundle(dir, &ca, &serving)?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_cert_is_a_chain_with_the_ca_last() {
        let ca = CertAuthority::generate("test CA").unwrap();
        let names = service_dns_names("spark-admission", "spark-admission");
        assert!(names.contains(&"spark-admission.spark-admission.svc".to_string()));
        let issued = ca.issue_server(&names, 10).unwrap();
        let chain: Vec<_> = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain.len(), 2);
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        assert_eq!(chain[1], ca_der);
        let not_after = first_cert_not_after(issued.cert_pem.as_bytes()).unwrap();
        let in_ten_days = (OffsetDateTime::now_utc() + Duration::days(10)).unix_timestamp();
        assert!((not_after - in_ten_days).abs() < 120);
    }

    #[test]
    fn cabundle_patch_holds_base64_of_the_ca() {
        let patch = cabundle_patch("PEM");
        assert!(patch.contains("path: /webhooks/0/clientConfig/caBundle"));
        assert!(patch.contains("value: UEVN\n"));
    }

    #[test]
    fn certs_writes_every_file_and_dev_certs_are_reused() {
        let dir = std::env::temp_dir().join(format!("sa-certs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let written = run_certs(&CertsArgs {
            service: "svc".into(),
            namespace: "ns".into(),
            out: dir.clone(),
            extra_names: vec![],
            days: 30,
            reuse_ca: false,
        })
        .unwrap();
        for p in [
            &written.ca_cert,
            &written.ca_key,
            &written.cert,
            &written.key,
        ] {
            assert!(fs::metadata(p).unwrap().len() > 100, "{}", p.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&written.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Routine rotation: same CA, new serving certificate signed by it.
        let ca_before = fs::read(&written.ca_cert).unwrap();
        let cert_before = fs::read(&written.cert).unwrap();
        let args = |reuse_ca| CertsArgs {
            service: "svc".into(),
            namespace: "ns".into(),
            out: dir.clone(),
            extra_names: vec![],
            days: 30,
            reuse_ca,
        };
        run_certs(&args(true)).unwrap();
        assert_eq!(fs::read(&written.ca_cert).unwrap(), ca_before);
        let rotated = fs::read(&written.cert).unwrap();
        assert_ne!(rotated, cert_before);
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&rotated)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            chain[1],
            CertificateDer::from_pem_slice(&ca_before).unwrap()
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(chain[1].clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier as _;
        verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &rustls::pki_types::ServerName::try_from("svc.ns.svc").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the rotated certificate chains to the kept CA");
        // Without --reuse-ca a new CA is made.
        run_certs(&args(false)).unwrap();
        assert_ne!(fs::read(&written.ca_cert).unwrap(), ca_before);
        // A damaged CA key is a clear error, not a new CA.
        fs::write(&written.ca_key, "not a key").unwrap();
        let e = run_certs(&args(true)).unwrap_err().to_string();
        assert!(e.contains("ca.key is not a usable private key"), "{e}");

        let dev = dir.join("dev");
        let (_, created) = ensure_dev_certs(&dev).unwrap();
        assert!(created);
        let first = fs::read(dev.join("tls.crt")).unwrap();
        let (_, created) = ensure_dev_certs(&dev).unwrap();
        assert!(!created);
        assert_eq!(fs::read(dev.join("tls.crt")).unwrap(), first);
        fs::remove_dir_all(&dir).unwrap();
    }
}
