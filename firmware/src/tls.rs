//! Outbound TLS client configuration, shared by the mail client
//! (STARTTLS to next hops) and DNS-over-TLS upstreams: trust roots from a
//! configured CA file or the system bundle, a verifying rustls client
//! configuration, and the "opportunistic" one that encrypts without
//! trusting the certificate (Postfix's `may`). It builds configurations
//! only; it opens no socket and keeps no global state.
//!
//! There is no compiled-in root set (webpki-roots would add about 250 KB
//! to a 4 MiB binary): without a CA file the roots come from
//! [`SYSTEM_CA_BUNDLE`].

pub mod selfsigned;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Trust roots used when no CA file is configured (the path of Debian's
/// `ca-certificates` bundle; a board image must carry a bundle there, or
/// the configuration must name a CA file).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// A CA file larger than this is refused (the Debian bundle is ~220 KB).
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("CA file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The CA file is larger than [`MAX_CA_FILE_BYTES`].
    #[error("CA file {0}: larger than {MAX_CA_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The CA file is not PEM.
    #[error("CA file {0}: not a PEM certificate file: {1}")]
    Pem(PathBuf, String),
    /// The CA file holds no certificate rustls can use as a root.
    #[error("CA file {0}: holds no usable CA certificate")]
    Empty(PathBuf),
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// A name that cannot be a TLS server name (SNI / certificate name).
    #[error("{0:?} is not a valid TLS server name")]
    BadName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads trust roots from `path`, or from [`SYSTEM_CA_BUNDLE`] when
/// `None`. Certificates rustls cannot parse are skipped; a file with none
/// usable is an error.
pub fn load_roots(path: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let path = path.unwrap_or(Path::new(SYSTEM_CA_BUNDLE)).to_path_buf();
    let f = std::fs::File::open(&path).map_err(|e| TlsError::Read(path.clone(), e))?;
    let mut bytes = Vec::new();
    f.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TlsError::Read(path.clone(), e))?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(TlsError::TooLarge(path));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(path.clone(), e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Empty(path));
    }
    Ok(roots)
}

/// A client configuration that verifies the server's certificate chain
/// against `roots` and its name against the server name given at connect.
pub fn verifying_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(c))
}

/// [`verifying_config`] with roots from [`load_roots`].
pub fn verifying_config_from(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    verifying_config(load_roots(ca_file)?)
}

/// A client configuration for opportunistic TLS: any certificate is
/// accepted (self-signed, expired, other name), but the handshake
/// signatures are still checked, so the session is really encrypted to
/// the holder of that certificate. Protects against passive listeners
/// only; never used where the configuration asks for verification.
pub fn opportunistic_config() -> Arc<ClientConfig> {
    let p = provider();
    let c = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(p)))
        .with_no_client_auth();
    Arc::new(c)
}

/// `host` as a TLS server name (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.trim_end_matches('.');
    ServerName::try_from(h.to_string()).map_err(|_| TlsError::BadName(host.to_string()))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks every CA and credentials file the configuration names, so that
/// `pocobelle check-config` reports a missing or broken file before a
/// delivery or lookup trips over it. The system bundle is checked only
/// when something needs verification and no CA file is configured.
pub fn check_files(config: &crate::config::Config) -> Result<(), String> {
    let m = &config.mail;
    if m.needs_verification() {
        load_roots(m.tls_ca_file.as_deref()).map_err(|e| format!("mail.tls_ca_file: {e}"))?;
    }
    for (key, route) in m.all_routes() {
        if let Some(f) = &route.auth_file {
            crate::mail::client::Credentials::load(f).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    for (i, u) in config.dns.tls_upstreams.iter().enumerate() {
        load_roots(u.ca_file.as_deref()).map_err(|e| format!("dns.tls_upstreams[{i}]: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("pocobelle-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(matches!(
            load_roots(Some(&missing)),
            Err(TlsError::Read(..))
        ));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        assert!(matches!(load_roots(Some(&empty)), Err(TlsError::Empty(_))));
        let ck = selfsigned::generate(
            &["ca.test"],
            selfsigned::LONG_AGO,
            selfsigned::NO_EXPIRY,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let good = dir.join("good.pem");
        std::fs::write(&good, ck.cert_pem()).unwrap();
        assert_eq!(load_roots(Some(&good)).unwrap().len(), 1);
        verifying_config_from(Some(&good)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn server_names() {
        assert!(server_name("mail.example.org").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
