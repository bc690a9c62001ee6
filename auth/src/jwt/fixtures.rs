//! What the JWT tests share: the test keys of `auth/testdata/`, settings that trust them,
//! token signing, and a JWKS endpoint on loopback.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{JwtValidator, OidcConfig};

pub(super) const ISSUER: &str = "https://idp.example.org/realms/hospital";
pub(super) const AUDIENCE: &str = "pacs";
pub(super) const RSA_PEM: &[u8] = include_bytes!("../../testdata/rsa.pem");
pub(super) const RSA_PUB_PEM: &[u8] = include_bytes!("../../testdata/rsa.pub.pem");
pub(super) const RSA_OTHER_PEM: &[u8] = include_bytes!("../../testdata/rsa-other.pem");
pub(super) const EC_PEM: &[u8] = include_bytes!("../../testdata/ec.pem");
pub(super) const JWKS: &str = include_str!("../../testdata/jwks.json");

pub(super) fn jwks_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/jwks.json")
}

pub(super) fn config() -> OidcConfig {
    toml::from_str(&format!(
        "issuer = {ISSUER:?}\naudience = {AUDIENCE:?}\njwks_file = {:?}\n",
        jwks_path().display().to_string()
    ))
    .expect("config")
}

pub(super) fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

pub(super) fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "preferred_username": "dr.house",
        "pacs_role": "radiologist",
        "iat": now(),
        "nbf": now() - 5,
        "exp": now() + 300,
    })
}

pub(super) fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, pem: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let key = match alg {
        Algorithm::RS256 | Algorithm::RS384 => EncodingKey::from_rsa_pem(pem).expect("RSA key"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).expect("EC key"),
        _ => EncodingKey::from_secret(pem),
    };
    encode(&header, claims, &key).expect("sign")
}

pub(super) fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, Some("test-rsa"), claims, RSA_PEM)
}

pub(super) async fn validator(config: OidcConfig) -> JwtValidator {
    JwtValidator::new(config).await.expect("validator")
}

pub(super) fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWKS endpoint on loopback that counts its requests. Plain HTTP/1.1 over a socket: this
/// crate has no HTTP server, and one GET answered with `Connection: close` is all reqwest needs.
pub(super) async fn serve_jwks(body: Arc<Mutex<String>>, hits: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            let hits = hits.clone();
            tokio::spawn(async move {
                // The request head; a GET has no body.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let text = body.lock().expect("lock").clone();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}/certs")
}
