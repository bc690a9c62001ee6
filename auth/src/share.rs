//! Signed, expiring share links for the patient portal: a token names one study and an expiry
//! and carries an HMAC-SHA256 of both under the server's secret, so the holder can see that
//! study, and only that study, until the token expires. No state is kept per token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("the share link is malformed")]
    Malformed,
    #[error("the share link's signature does not match")]
    BadSignature,
    #[error("the share link expired")]
    Expired,
    #[error("the link is not one for this use")]
    WrongKind,
}

/// What a research link grants: one study, downloaded de-identified with this profile and
/// pseudonym project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResearchGrant {
    pub study: String,
    pub profile: String,
    pub project: String,
}

/// Research payloads start with this; a study UID never holds a newline, so a portal link
/// and a research link can never be read as each other.
const RESEARCH: &str = "research\n";

fn mac(secret: &[u8], payload: &str) -> Result<Vec<u8>, ShareError> {
    let mut m = HmacSha256::new_from_slice(secret).map_err(|_| ShareError::Malformed)?;
    m.update(payload.as_bytes());
    Ok(m.finalize().into_bytes().to_vec())
}

/// A token for `study` valid until `expires` (Unix seconds).
pub fn sign(secret: &[u8], study: &str, expires: u64) -> String {
    let payload = format!("{study}.{expires}");
    let sig = mac(secret, &payload).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The study a token grants, if its signature holds and it has not expired at `now`.
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<String, ShareError> {
    let subject = verify_payload(secret, token, now)?;
    if subject.contains('\n') {
        return Err(ShareError::WrongKind);
    }
    Ok(subject)
}

/// A research link's token: the grant, valid until `expires` (Unix seconds).
pub fn sign_research(secret: &[u8], grant: &ResearchGrant, expires: u64) -> String {
    sign(
        secret,
        &format!(
            "{RESEARCH}{}\n{}\n{}",
            grant.study, grant.profile, grant.project
        ),
        expires,
    )
}

/// The grant of a research link, if its signature holds and it has not expired.
pub fn verify_research(secret: &[u8], token: &str, now: u64) -> Result<ResearchGrant, ShareError> {
    let subject = verify_payload(secret, token, now)?;
    let rest = subject
        .strip_prefix(RESEARCH)
        .ok_or(ShareError::WrongKind)?;
    let mut parts = rest.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(study), Some(profile), Some(project)) => Ok(ResearchGrant {
            study: study.to_string(),
            profile: profile.to_string(),
            project: project.to_string(),
        }),
        _ => Err(ShareError::Malformed),
    }
}

fn verify_payload(secret: &[u8], token: &str, now: u64) -> Result<String, ShareError> {
    let (p, s) = token.split_once('.').ok_or(ShareError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(ShareError::Malformed)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| ShareError::Malformed)?;
    let mut m = HmacSha256::new_from_slice(secret).map_err(|_| ShareError::Malformed)?;
    m.update(payload.as_bytes());
    m.verify_slice(&sig).map_err(|_| ShareError::BadSignature)?;
    let (study, expires) = payload.rsplit_once('.').ok_or(ShareError::Malformed)?;
    let expires: u64 = expires.parse().map_err(|_| ShareError::Malformed)?;
    if now >= expires {
        return Err(ShareError::Expired);
    }
    Ok(study.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_one_study_until_they_expire() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let t = sign(secret, "1.2.3", 1000);
        assert_eq!(verify(secret, &t, 999).as_deref(), Ok("1.2.3"));
        assert_eq!(verify(secret, &t, 1000), Err(ShareError::Expired));
        assert_eq!(
            verify(b"another secret", &t, 10),
            Err(ShareError::BadSignature)
        );
        // Another study under the same signature: refused.
        let (_, sig) = t.split_once('.').expect("dot");
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode("1.2.4.1000"));
        assert_eq!(verify(secret, &forged, 10), Err(ShareError::BadSignature));
        assert_eq!(verify(secret, "garbage", 10), Err(ShareError::Malformed));
    }

    #[test]
    fn research_and_portal_links_are_not_each_other() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let grant = ResearchGrant {
            study: "1.2.3".into(),
            profile: "research".into(),
            project: "trial.7".into(),
        };
        let r = sign_research(secret, &grant, 1000);
        assert_eq!(verify_research(secret, &r, 10), Ok(grant));
        assert_eq!(verify(secret, &r, 10), Err(ShareError::WrongKind));
        let portal = sign(secret, "1.2.3", 1000);
        assert_eq!(
            verify_research(secret, &portal, 10),
            Err(ShareError::WrongKind)
        );
        assert_eq!(verify_research(secret, &r, 1000), Err(ShareError::Expired));
    }
}
