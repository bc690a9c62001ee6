//! Password hashing: argon2id PHC strings, and the length rules a new password must meet.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;

use super::{random_bytes, AccountsError, Result, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};

/// argon2's error. It implements `std::error::Error` only with argon2's `std` feature, which
/// nothing in the workspace turns on; wrapped, it can be the source of an [`AccountsError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HashError(argon2::password_hash::Error);

/// The PHC string of a new password, once it passes the length rules.
pub(super) fn hash_password(password: &str) -> Result<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AccountsError::PasswordTooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccountsError::PasswordTooLong);
    }
    hash_password_unchecked(password)
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
pub(super) fn hash_password_unchecked(password: &str) -> Result<String> {
    let hash_error = |e| AccountsError::Hash(HashError(e));
    let salt = SaltString::encode_b64(&random_bytes::<16>()?).map_err(hash_error)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(hash_error)
}

/// Whether `password` matches the PHC string; the parameters come from the string itself.
pub(super) fn verify_hash(phc: &str, password: &str, user: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(user, error = %e, "stored password hash is not a valid PHC string");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hashes_verify_and_refuse_lengths_out_of_bounds() {
        let phc = hash_password("correct horse battery").expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_hash(&phc, "correct horse battery", "alice"));
        assert!(!verify_hash(&phc, "correct horse batterY", "alice"));
        assert!(!verify_hash(
            "not a PHC string",
            "correct horse battery",
            "alice"
        ));
        assert!(matches!(
            hash_password("short"),
            Err(AccountsError::PasswordTooShort)
        ));
        assert!(matches!(
            hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(AccountsError::PasswordTooLong)
        ));
    }
}
