//! The development certificate: lets the gateway start on a fresh machine with no `[tls]`
//! section. Devices will not trust it; it is for trying easgate out and for tests.
//!
//! Generated once into `<data_dir>/tls/dev-gateway.{crt,key}` and reused, so a restart or reload
//! does not change the certificate a test client has pinned.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::atomic_file::write_atomic;
use crate::validate::{DevCertMode, read_certs, read_key};

/// A loaded (or just generated) development certificate.
pub struct DevCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_path: PathBuf,
}

/// Where the development certificate lives in a data directory.
pub fn paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("dev-gateway.crt"), dir.join("dev-gateway.key"))
}

/// Loads the development certificate from `data_dir`, generating it (ECDSA P-256, SAN =
/// `sentry_host`, `localhost`, `127.0.0.1`) when absent. With [`DevCertMode::InMemory`] a missing
/// certificate is generated but not written.
pub fn load_or_generate(
    data_dir: &Path,
    sentry_host: &str,
    mode: DevCertMode,
) -> Result<DevCert, String> {
    let (cert_path, key_path) = paths(data_dir);
    if cert_path.exists() || key_path.exists() {
        let chain = read_certs(&cert_path)?;
        let key = read_key(&key_path)?;
        tracing::warn!(cert = %cert_path.display(), "no [tls] cert/key configured: using the development certificate (devices will not trust it; set [tls] for production)");
        return Ok(DevCert {
            chain,
            key,
            cert_path,
        });
    }

    let (cert_pem, key_pem) = generate(sentry_host)?;
    if mode == DevCertMode::Persist {
        let dir = data_dir.join("tls");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_atomic(&key_path, key_pem.as_bytes(), 0o600)
            .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
        write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)
            .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
        tracing::warn!(cert = %cert_path.display(), "no [tls] cert/key configured: generated a development certificate (devices will not trust it; set [tls] for production)");
    }
    let chain =
        vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| e.to_string())?];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
    Ok(DevCert {
        chain,
        key,
        cert_path,
    })
}

/// A self-signed certificate and its key, both PEM.
fn generate(sentry_host: &str) -> Result<(String, String), String> {
    let fail = |e: rcgen::Error| format!("generating the development certificate: {e}");
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !sentry_host.is_empty() && !names.iter().any(|n| n == sentry_host) {
        names.insert(0, sentry_host.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "easgate development certificate");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}
