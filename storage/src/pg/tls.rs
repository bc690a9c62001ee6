//! TLS to PostgreSQL, asked for the way libpq is: `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` in the URL's query. tokio-postgres knows only `disable`, `prefer` and `require`
//! and no certificate files, so those four are taken out of the URL here and turned into a
//! rustls client (the same TLS stack as the listeners) with libpq's meaning:
//! - `disable`, `allow`, `prefer` or none: no TLS (an unverified "maybe" is not offered);
//! - `require`: encrypted; with `sslrootcert` the chain is verified as for `verify-ca`,
//!   without it the server is not authenticated (a warning is logged);
//! - `verify-ca`: the server's chain must lead to `sslrootcert`;
//! - `verify-full`: that, and the certificate must name the host connected to.
//!
//! `sslrootcert=system` trusts the operating system's roots. `sslcert` + `sslkey` present a
//! client certificate (pg_hba `cert` authentication).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StorageError;

/// Where to connect and, when the URL asks for it, how to encrypt.
pub(crate) struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Option<MakeRustlsConnect>,
}

/// What a TLS session checks of the server (no TLS at all is `None` where a mode is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Default)]
struct SslParams {
    mode: Option<String>,
    root: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

fn invalid(what: impl std::fmt::Display) -> StorageError {
    StorageError::IndexConfig(format!("[index] url: {what}"))
}

/// Takes the libpq TLS parameters out of a `postgres://` URL's query, leaving every other
/// parameter exactly as written (tokio-postgres decodes them itself).
fn split_url(url: &str) -> Result<(String, SslParams), StorageError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), SslParams::default()));
    };
    let mut params = SslParams::default();
    let mut kept = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = piece.split_once('=').unwrap_or((piece, ""));
        let value = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| invalid(format!("{key} is not UTF-8")))
        };
        match key {
            "sslmode" => params.mode = Some(value()?),
            "sslrootcert" => params.root = Some(value()?),
            "sslcert" => params.cert = Some(value()?),
            "sslkey" => params.key = Some(value()?),
            _ => kept.push(piece),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, params))
}

fn mode(value: Option<&str>) -> Result<Option<Mode>, StorageError> {
    Ok(match value {
        None | Some("disable" | "allow" | "prefer") => None,
        Some("require") => Some(Mode::Require),
        Some("verify-ca") => Some(Mode::VerifyCa),
        Some("verify-full") => Some(Mode::VerifyFull),
        Some(other) => {
            return Err(invalid(format!(
                "sslmode={other}: one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    })
}

/// The URL's connection settings and TLS client.
pub(crate) fn target(url: &str) -> Result<Target, StorageError> {
    let (url, ssl) = split_url(url)?;
    let mode = mode(ssl.mode.as_deref())?;
    let mut config: tokio_postgres::Config = url.parse().map_err(invalid)?;
    let Some(mode) = mode else {
        if ssl.root.is_some() || ssl.cert.is_some() {
            return Err(invalid(
                "sslrootcert/sslcert given but sslmode asks for no TLS (use verify-full)",
            ));
        }
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        return Ok(Target { config, tls: None });
    };
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let client = client_config(mode, &ssl)?;
    Ok(Target {
        config,
        tls: Some(MakeRustlsConnect::new(client)),
    })
}

fn client_config(mode: Mode, ssl: &SslParams) -> Result<rustls::ClientConfig, StorageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match (mode, ssl.root.as_deref()) {
        (Mode::Require, None) => {
            tracing::warn!(
                "[index] url: sslmode=require without sslrootcert encrypts but does not \
                 authenticate the database server (use verify-full)"
            );
            None
        }
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(invalid(
                "sslmode=verify-ca/verify-full needs sslrootcert=FILE (or sslrootcert=system)",
            ))
        }
        (_, Some(root)) => {
            let roots = Arc::new(roots(root)?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| invalid(format!("sslrootcert={root}: {e}")))?;
            Some(verifier)
        }
    };
    let verifier = Arc::new(Verifier {
        chain,
        names: mode == Mode::VerifyFull,
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (ssl.cert.as_deref(), ssl.key.as_deref()) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let certs = certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid(format!("sslkey={key}: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| invalid(format!("sslcert/sslkey: {e}")))
        }
        _ => Err(invalid("sslcert and sslkey go together")),
    }
}

fn certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, StorageError> {
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("{path} holds no certificate")));
    }
    Ok(certs)
}

fn roots(root: &str) -> Result<RootCertStore, StorageError> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(invalid(
                "sslrootcert=system: no system root certificates found",
            ));
        }
        return Ok(store);
    }
    for cert in certificates(root)? {
        store
            .add(cert)
            .map_err(|e| invalid(format!("sslrootcert={root}: {e}")))?;
    }
    Ok(store)
}

/// libpq's three levels on rustls: no chain check (`require` without a root), chain only
/// (`verify-ca`), chain and name (`verify-full`). The handshake signatures are always
/// checked, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    names: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_rest_of_the_url_as_written() {
        let (url, ssl) = split_url(
            "postgres://u:p%40ss@db:5432/pacs?application_name=a%20b&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .expect("split");
        assert_eq!(
            url,
            "postgres://u:p%40ss@db:5432/pacs?application_name=a%20b&connect_timeout=5"
        );
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root.as_deref(), Some("/etc/ca.pem"));
        let (url, ssl) = split_url("postgres://db/pacs?sslmode=disable").expect("split");
        assert_eq!(url, "postgres://db/pacs");
        assert_eq!(mode(ssl.mode.as_deref()).expect("mode"), None);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_a_reason() {
        for (url, says) in [
            (
                "postgres://db/pacs?sslmode=verify-full",
                "needs sslrootcert",
            ),
            ("postgres://db/pacs?sslmode=secure", "sslmode=secure"),
            (
                "postgres://db/pacs?sslrootcert=/x.pem",
                "sslmode asks for no TLS",
            ),
            (
                "postgres://db/pacs?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "/nonexistent/ca.pem",
            ),
            (
                "postgres://db/pacs?sslmode=require&sslcert=/c.pem",
                "go together",
            ),
        ] {
            let err = target(url).err().expect(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    /// Against a real PostgreSQL that takes TLS with a client certificate only.
    #[test]
    fn the_index_reaches_postgresql_over_verified_tls_only() {
        use crate::lease::Leases;
        use crate::pg::conn::pg_error;
        use crate::pg::testing::Postgres;
        use crate::pg::PgIndex;

        let pg = Postgres::start_tls();
        let certs = pg.certs().display().to_string();
        let settings = |url: String| crate::IndexSettings {
            url,
            max_connections: 2,
        };
        // verify-full with the client certificate: the schema is brought up to date over
        // it, the session is encrypted, and a lease's own connection is too.
        let index = PgIndex::open(&pg.settings()).expect("open over TLS");
        let ssl: bool = index
            .pool
            .with_client("test", |c| async move {
                let row = c
                    .query_one(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[],
                    )
                    .await
                    .map_err(pg_error("test"))?;
                Ok(row.get(0))
            })
            .expect("query over TLS");
        assert!(ssl, "the pooled session is not encrypted");
        let lease = index.try_acquire("tls").expect("lease").expect("free");
        assert!(lease.held());
        // Every session of the archive's (pool and lease) is encrypted; psql's is local.
        let sessions = pg.query(
            "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = 'pacs' AND a.pid <> pg_backend_pid()",
        );
        let (encrypted, all) = sessions.split_once('/').expect("two counts");
        assert!(
            encrypted == all && all.parse::<u32>().expect("count") >= 2,
            "encrypted/all sessions: {sessions}"
        );
        drop(lease);
        drop(index);

        let port = pg.port;
        let client = format!("sslcert={certs}/db-client.pem&sslkey={certs}/db-client.key");
        let other_name = format!("postgres://postgres@db.invalid:{port}/pacs?hostaddr=127.0.0.1");
        for (url, says) in [
            // The server refuses what is not TLS.
            (format!("postgres://postgres@127.0.0.1:{port}/pacs"), "no pg_hba.conf entry"),
            // A server whose certificate chains to another CA is refused.
            (
                format!("postgres://postgres@127.0.0.1:{port}/pacs?sslmode=verify-full&sslrootcert={certs}/rogue-ca.pem&{client}"),
                "UnknownIssuer",
            ),
            // verify-full: the certificate must name the host.
            (
                format!("{other_name}&sslmode=verify-full&sslrootcert={certs}/ca.pem&{client}"),
                "not valid for name",
            ),
            // pg_hba `cert`: no client certificate, no session.
            (
                format!("postgres://postgres@127.0.0.1:{port}/pacs?sslmode=verify-full&sslrootcert={certs}/ca.pem"),
                "certificate",
            ),
        ] {
            let err = PgIndex::open(&settings(url.clone()))
                .err()
                .unwrap_or_else(|| panic!("{url} opened"))
                .to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
        // verify-ca checks the chain, not the name; require without a root only encrypts.
        PgIndex::open(&settings(format!(
            "{other_name}&sslmode=verify-ca&sslrootcert={certs}/ca.pem&{client}"
        )))
        .expect("verify-ca under another name");
        PgIndex::open(&settings(format!("{other_name}&sslmode=require&{client}")))
            .expect("require");
    }
}
