//! The accounts file: its TOML format (`[[user]]` tables), the edits `pacs user` makes, the
//! rules a new account meets, and atomic saves that never leave the file half written or
//! readable by others.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::password::hash_password;
use super::sessions::{new_api_key, sha256_hex};
use super::{
    random_bytes, AccountsError, NewUser, Result, TotpEnrollment, UserRecord, API_KEY_PREFIX,
    TOTP_ISSUER,
};
use crate::role::Role;
use crate::totp;

const MAX_NAME_LEN: usize = 64;
/// DICOM LO (Patient ID) holds at most 64 characters.
const MAX_PATIENT_ID_LEN: usize = 64;

/// The accounts file, for editing: load, change in memory, then [`AccountsFile::save`].
#[derive(Debug, Clone)]
pub struct AccountsFile {
    path: PathBuf,
    users: Vec<UserRecord>,
}

#[derive(Default, Serialize, Deserialize)]
struct FileBody {
    #[serde(default, rename = "user")]
    users: Vec<UserRecord>,
}

const FILE_HEADER: &str =
    "# PACS local accounts, written by `pacs user`. Keep this file mode 0600:\n\
# it holds password hashes and TOTP secrets. The server re-reads it when it changes.\n\n";

impl AccountsFile {
    /// Reads the file; a missing file is an empty set of accounts (the first `pacs user add`
    /// creates it).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(AccountsFile {
                    path,
                    users: Vec::new(),
                })
            }
            Err(source) => return Err(AccountsError::Read { path, source }),
        };
        warn_if_readable_by_others(&path);
        let body: FileBody = toml::from_str(&text).map_err(|e| AccountsError::Parse {
            path: path.clone(),
            source: Box::new(e),
        })?;
        let mut seen = std::collections::HashSet::new();
        for u in &body.users {
            if !seen.insert(u.name.as_str()) {
                return Err(AccountsError::DuplicateInFile {
                    path: path.clone(),
                    name: u.name.clone(),
                });
            }
        }
        Ok(AccountsFile {
            path,
            users: body.users,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the file atomically: a temporary file (mode 0600) in the same folder, fsync, then
    /// rename over the old one, so the server never reads half a file and a crash loses nothing.
    pub fn save(&self) -> Result<()> {
        let werr = |source| AccountsError::Write {
            path: self.path.clone(),
            source,
        };
        let body = FileBody {
            users: self.users.clone(),
        };
        let text = format!("{FILE_HEADER}{}", toml::to_string(&body)?);
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = self
            .path
            .file_name()
            .ok_or_else(|| werr(io::Error::other("the path names no file")))?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        // A leftover from a crashed run of this pid would make create_new fail.
        let _ = fs::remove_file(&tmp);
        if let Err(e) =
            write_synced(&tmp, text.as_bytes()).and_then(|()| fs::rename(&tmp, &self.path))
        {
            let _ = fs::remove_file(&tmp);
            return Err(werr(e));
        }
        // The rename is durable only once the folder is synced; the data is safe already.
        #[cfg(unix)]
        if let Err(e) = fs::File::open(&dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the accounts folder");
        }
        tracing::debug!(path = %self.path.display(), users = self.users.len(), "accounts saved");
        Ok(())
    }

    /// Adds a user (in memory; [`AccountsFile::save`] writes it). `password: None` makes an
    /// account that logs in with API keys only.
    pub fn add_user(
        &mut self,
        name: &str,
        role: Role,
        patient_ids: Vec<String>,
        password: Option<&str>,
        with_totp: bool,
    ) -> Result<NewUser> {
        validate_name(name)?;
        // Case-insensitive: "Alice" and "alice" side by side would confuse audit logs.
        if self.users.iter().any(|u| u.name.eq_ignore_ascii_case(name)) {
            return Err(AccountsError::Duplicate(name.to_string()));
        }
        validate_patient_ids(role, &patient_ids)?;
        let password_hash = password.map(hash_password).transpose()?;
        let (totp_secret, totp) = if with_totp {
            let e = new_totp(name)?;
            (Some(e.secret.clone()), Some(e))
        } else {
            (None, None)
        };
        self.users.push(UserRecord {
            name: name.to_string(),
            role,
            patient_ids,
            password_hash,
            totp_secret,
            api_key_hashes: Vec::new(),
            disabled: false,
            client_certificate: false,
            created: rfc3339_utc(SystemTime::now()),
        });
        tracing::info!(user = name, %role, totp = with_totp, "account added");
        Ok(NewUser {
            name: name.to_string(),
            totp,
        })
    }

    pub fn list(&self) -> &[UserRecord] {
        &self.users
    }

    pub fn get(&self, name: &str) -> Option<&UserRecord> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The records, for the server's view.
    pub(super) fn into_users(self) -> Vec<UserRecord> {
        self.users
    }

    fn get_mut(&mut self, name: &str) -> Result<&mut UserRecord> {
        self.users
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| AccountsError::NoSuchUser(name.to_string()))
    }

    pub fn remove_user(&mut self, name: &str) -> Result<UserRecord> {
        let i = self
            .users
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| AccountsError::NoSuchUser(name.to_string()))?;
        tracing::info!(user = name, "account removed");
        Ok(self.users.remove(i))
    }

    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<()> {
        self.get_mut(name)?.disabled = disabled;
        tracing::info!(user = name, disabled, "account disabled flag set");
        Ok(())
    }

    /// Lets (or stops letting) a client certificate naming the account log in as it. Refused
    /// for an account with TOTP: the certificate would skip its second factor.
    pub fn set_client_certificate(&mut self, name: &str, allowed: bool) -> Result<()> {
        let user = self.get_mut(name)?;
        if allowed && user.totp_secret.is_some() {
            return Err(AccountsError::CertificateWithTotp(name.to_string()));
        }
        user.client_certificate = allowed;
        tracing::info!(user = name, allowed, "client certificate login set");
        Ok(())
    }

    /// Sets (or with `None` removes) the password.
    pub fn set_password(&mut self, name: &str, password: Option<&str>) -> Result<()> {
        let hash = password.map(hash_password).transpose()?;
        self.get_mut(name)?.password_hash = hash;
        tracing::info!(user = name, "password changed");
        Ok(())
    }

    /// Enables TOTP with a new secret (returned once), or disables it.
    pub fn set_totp(&mut self, name: &str, enabled: bool) -> Result<Option<TotpEnrollment>> {
        let user = self.get_mut(name)?;
        let enrollment = if enabled { Some(new_totp(name)?) } else { None };
        user.totp_secret = enrollment.as_ref().map(|e| e.secret.clone());
        tracing::info!(user = name, enabled, "TOTP secret set");
        Ok(enrollment)
    }

    /// A new API key for the user: returned once, only its hash is stored.
    pub fn create_api_key(&mut self, name: &str) -> Result<String> {
        let user = self.get_mut(name)?;
        let key = new_api_key()?;
        user.api_key_hashes.push(sha256_hex(&key));
        tracing::info!(user = name, "API key created");
        Ok(key)
    }

    /// Removes an API key given as the key itself or as a prefix (8 or more hex digits) of its
    /// stored hash, as `pacs user list` shows it.
    pub fn remove_api_key(&mut self, name: &str, key_or_hash: &str) -> Result<()> {
        let user = self.get_mut(name)?;
        let (needle, whole) = if key_or_hash.starts_with(API_KEY_PREFIX) {
            (sha256_hex(key_or_hash), true)
        } else {
            (key_or_hash.to_ascii_lowercase(), false)
        };
        let no_such = || AccountsError::NoSuchApiKey {
            user: name.to_string(),
            key: key_or_hash.to_string(),
        };
        if !whole && (needle.len() < 8 || !needle.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(no_such());
        }
        let matching: Vec<usize> = user
            .api_key_hashes
            .iter()
            .enumerate()
            .filter(|(_, h)| {
                if whole {
                    **h == needle
                } else {
                    h.starts_with(&needle)
                }
            })
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [] => Err(no_such()),
            [i] => {
                user.api_key_hashes.remove(*i);
                tracing::info!(user = name, "API key removed");
                Ok(())
            }
            many => Err(AccountsError::AmbiguousApiKey {
                user: name.to_string(),
                key: key_or_hash.to_string(),
                count: many.len(),
            }),
        }
    }
}

/// Creates `path` (mode 0600 on unix: never readable by others, not even briefly), writes
/// `bytes` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "accounts file is readable by group or others; it should be mode 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(AccountsError::BadName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return bad("1 to 64 characters");
    }
    // Names go into logs, audit records and otpauth URIs: keep them to a plain alphabet.
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
        return bad("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
    {
        return bad("only letters, digits and . - _ @");
    }
    Ok(())
}

fn validate_patient_ids(role: Role, ids: &[String]) -> Result<()> {
    match (role, ids.is_empty()) {
        (Role::Patient, true) => return Err(AccountsError::PatientWithoutIds),
        (Role::Patient, false) | (_, true) => {}
        (other, false) => return Err(AccountsError::PatientIdsForRole(other)),
    }
    // `ID` or `ID^^^ISSUER` (Issuer of Patient ID, HL7 CX notation): each a DICOM LO.
    let bad_lo = |v: &str| {
        v.trim().is_empty()
            || v.chars().count() > MAX_PATIENT_ID_LEN
            || v.chars().any(|c| c == '\\' || c.is_control())
    };
    for id in ids {
        let (pid, issuer) = id.split_once("^^^").unwrap_or((id, "x"));
        if bad_lo(pid) || bad_lo(issuer) {
            return Err(AccountsError::BadPatientId(id.clone()));
        }
    }
    Ok(())
}

fn new_totp(name: &str) -> Result<TotpEnrollment> {
    let secret = totp::encode_base32(&random_bytes::<{ totp::SECRET_LEN }>()?);
    let uri = format!(
        "otpauth://totp/{issuer}:{label}?secret={secret}&issuer={issuer}",
        issuer = TOTP_ISSUER,
        label = percent_encode(name),
    );
    Ok(TotpEnrollment { secret, uri })
}

/// Percent-encodes all but RFC 3986 unreserved characters (user names may hold `@`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` (no date crate in the workspace; Hinnant's days-to-civil).
fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fixtures::{temp_path, PW};
    use super::*;

    #[test]
    fn accounts_add_save_load_round_trip() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("missing file is empty");
        assert!(file.list().is_empty());
        let new = file
            .add_user("alice", Role::Radiologist, vec![], Some(PW), false)
            .expect("add");
        assert_eq!(new.name, "alice");
        assert!(new.totp.is_none());
        file.add_user(
            "pat.1",
            Role::Patient,
            vec!["PID-1".into(), "PID-2".into()],
            Some(PW),
            true,
        )
        .expect("add patient");
        file.add_user("ai", Role::AiService, vec![], None, false)
            .expect("add service");
        file.save().expect("save");

        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# PACS local accounts"));
        assert!(text.contains("[[user]]"));
        assert!(text.contains("role = \"ai-service\""));
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains(PW));

        let again = AccountsFile::load(&path).expect("load");
        assert_eq!(again.list(), file.list());
        let pat = again.get("pat.1").expect("patient");
        assert_eq!(pat.patient_ids, ["PID-1", "PID-2"]);
        assert!(pat.totp_secret.is_some());
        assert!(again.get("ai").expect("ai").password_hash.is_none());
        // created is RFC 3339 UTC.
        assert_eq!(pat.created.len(), 20);
        assert!(pat.created.ends_with('Z'));
    }

    #[cfg(unix)]
    #[test]
    fn accounts_file_is_saved_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Admin, vec![], Some(PW), false)
            .expect("add");
        file.save().expect("save");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("users.toml")]);
    }

    #[test]
    fn accounts_add_user_refuses_duplicates_bad_names_and_bad_input() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        file.add_user("alice", Role::Admin, vec![], Some(PW), false)
            .expect("add");
        assert!(matches!(
            file.add_user("alice", Role::Billing, vec![], Some(PW), false),
            Err(AccountsError::Duplicate(_))
        ));
        assert!(matches!(
            file.add_user("ALICE", Role::Billing, vec![], Some(PW), false),
            Err(AccountsError::Duplicate(_))
        ));
        let long = "a".repeat(65);
        for bad in [
            "",
            "-x",
            ".x",
            "a b",
            "a:b",
            "a/b",
            "é",
            "a\nb",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    file.add_user(bad, Role::Admin, vec![], Some(PW), false),
                    Err(AccountsError::BadName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            file.add_user("bob", Role::Admin, vec![], Some("short"), false),
            Err(AccountsError::PasswordTooShort)
        ));
        assert!(matches!(
            file.add_user("bob", Role::Patient, vec![], Some(PW), false),
            Err(AccountsError::PatientWithoutIds)
        ));
        assert!(matches!(
            file.add_user("bob", Role::Radiologist, vec!["P1".into()], Some(PW), false),
            Err(AccountsError::PatientIdsForRole(Role::Radiologist))
        ));
        assert!(matches!(
            file.add_user("bob", Role::Patient, vec!["A\\B".into()], Some(PW), false),
            Err(AccountsError::BadPatientId(_))
        ));
        assert_eq!(file.list().len(), 1);
        file.add_user("bob@example.org", Role::Ehr, vec![], None, false)
            .expect("email-like name");
    }

    #[test]
    fn accounts_totp_enrollment_uri() {
        let (_dir, path) = temp_path();
        let mut file = AccountsFile::load(&path).expect("load");
        let new = file
            .add_user(
                "bob@example.org",
                Role::Technologist,
                vec![],
                Some(PW),
                true,
            )
            .expect("add");
        let totp = new.totp.expect("totp requested");
        assert_eq!(totp.secret.len(), 32);
        assert_eq!(
            totp::decode_base32(&totp.secret).expect("base32").len(),
            totp::SECRET_LEN
        );
        assert_eq!(
            totp.uri,
            format!(
                "otpauth://totp/PACS:bob%40example.org?secret={}&issuer=PACS",
                totp.secret
            )
        );
        assert_eq!(
            file.get("bob@example.org")
                .expect("user")
                .totp_secret
                .as_deref(),
            Some(totp.secret.as_str())
        );
        // Debug output never shows the secret.
        assert!(!format!("{:?}", file.list()).contains(&totp.secret));
        assert!(!format!("{totp:?}").contains(&totp.secret));
    }

    #[test]
    fn accounts_load_refuses_a_file_with_duplicate_names() {
        let (_dir, path) = temp_path();
        fs::write(
            &path,
            "[[user]]\nname = \"a\"\nrole = \"admin\"\n[[user]]\nname = \"a\"\nrole = \"ehr\"\n",
        )
        .expect("write");
        assert!(matches!(
            AccountsFile::load(&path),
            Err(AccountsError::DuplicateInFile { .. })
        ));
        fs::write(&path, "[[user]]\nname = \"a\"\nrole = \"root\"\n").expect("write");
        let err = AccountsFile::load(&path).expect_err("unknown role");
        assert!(err.to_string().contains("users.toml"), "{err}");
    }

    #[test]
    fn accounts_rfc3339_formatting() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_234_567_890);
        assert_eq!(rfc3339_utc(t), "2009-02-13T23:31:30Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00Z");
    }
}
