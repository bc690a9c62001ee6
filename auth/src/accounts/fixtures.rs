//! What the accounts tests share: a password that passes the rules, a file in a fresh
//! folder, and the TOTP code an authenticator would show now.

use std::path::PathBuf;

use super::unix_now;
use crate::totp;

pub(super) const PW: &str = "correct horse battery";

pub(super) fn temp_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("users.toml");
    (dir, path)
}

pub(super) fn current_code(secret_b32: &str) -> String {
    let secret = totp::decode_base32(secret_b32).expect("base32");
    totp::generate(&secret, unix_now()).expect("code")
}
