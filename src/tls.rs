//! Transmission security: rustls server configurations for HTTPS and DICOM TLS (PS3.15
//! B.1, BCP 195), from PEM files named in `[tls]`, and the accept side of both listeners.
//! The TLS handshake runs in the connection's own task, so a slow or silent client cannot
//! hold up the accept loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("invalid TLS settings: {0}")]
    Config(String),
}

/// Who must present a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates asked for.
    None,
    /// Asked for and verified when sent; clients without one may still connect.
    Optional,
    /// Mutual TLS: clients without a certificate chaining to the CA are refused.
    Required,
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            what: "certificates",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what: "certificate",
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A client configuration for our outgoing DICOM TLS: servers must chain to `ca`; with
/// `client` (certificate chain, key) we authenticate when asked.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("CA certificate in {}: {e}", ca.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| TlsError::Config(format!("client certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A server configuration from a PEM certificate chain and key, with client certificates
/// verified against `client_ca` as `client_auth` says.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (client_ca, client_auth) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Config(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, ClientAuth::Required) => {
            return Err(TlsError::Config(
                "client certificates are required but no client CA is configured".into(),
            ))
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(read_certs(cert)?, read_key(key)?)
        .map_err(|e| TlsError::Config(format!("{}: {e}", key.display())))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The subject common name of the client's verified certificate, if it sent one.
pub fn peer_common_name<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<String> {
    let (_, conn) = stream.get_ref();
    let cert = conn.peer_certificates()?.first()?;
    subject_common_name(cert.as_ref())
}

/// The CommonName of a DER certificate's subject, and only the subject's: a CN in the issuer
/// or inside an extension (a subjectAltName directoryName, which many CAs copy from the
/// request) names nobody. A subject with several CNs names nobody either.
fn subject_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?.to_string();
    if names.next().is_some() {
        tracing::warn!("client certificate subject has several common names; none is used");
        return None;
    }
    Some(name)
}

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
    #[error("no TLS handshake within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Complete the server side of a handshake within [`HANDSHAKE_TIMEOUT`].
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &TlsAcceptor,
    stream: S,
) -> Result<tokio_rustls::server::TlsStream<S>, HandshakeError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(HandshakeError::Failed(e)),
        Err(_) => Err(HandshakeError::TimedOut(HANDSHAKE_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_name_the_path() {
        let e = server_config(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
            None,
            ClientAuth::None,
            &[],
        )
        .expect_err("no files");
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }

    #[test]
    fn required_client_auth_needs_a_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = server_config(
            &dir.path().join("c"),
            &dir.path().join("k"),
            None,
            ClientAuth::Required,
            &[],
        )
        .expect_err("no CA");
        assert!(e.to_string().contains("client CA"), "{e}");
    }

    /// openssl-made: subject CN=svc-tech, issuer CN=ca, and a subjectAltName directoryName
    /// CN=svc-admin (tests/support/make_certs.sh makes the same kind for the HTTPS test).
    const SAN_DIRNAME_CERT: &str = include_str!("../tests/support/fixtures/san-dirname.pem");

    #[test]
    fn common_name_is_the_subjects_only() {
        let der = CertificateDer::from_pem_slice(SAN_DIRNAME_CERT.as_bytes()).expect("PEM");
        assert_eq!(
            subject_common_name(der.as_ref()).as_deref(),
            Some("svc-tech")
        );
        assert_eq!(subject_common_name(b"\x30\x03\x06\x01\x00"), None);
        assert_eq!(subject_common_name(&[]), None);
    }
}
