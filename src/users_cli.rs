//! `pacs user ...`: local accounts for sites without an identity provider. Edits the accounts
//! file, which a running server re-reads when it changes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Subcommand;
use pacs_auth::accounts::AccountsFile;
use pacs_auth::role::Role;

use crate::config::{users_file, StoreArgs};
use crate::error::AppError;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add an account. The password is read from PACS_PASSWORD or the first line of stdin.
    Add {
        name: String,
        /// admin, radiologist, technologist, referring-physician, billing, patient,
        /// ai-service or ehr
        #[arg(long)]
        role: Role,
        /// For role patient: a Patient ID whose studies they may see, as ID or ID^^^ISSUER
        /// (then only studies under that Issuer of Patient ID) (repeatable)
        #[arg(long = "patient-id")]
        patient_ids: Vec<String>,
        /// Require a TOTP code at login; prints the secret and an otpauth:// URI once
        #[arg(long)]
        totp: bool,
        /// No password: a service account that authenticates with API keys only
        #[arg(long)]
        no_password: bool,
        /// Let a verified HTTPS client certificate whose subject CN is NAME log in as this
        /// account (service accounts; not with --totp)
        #[arg(long)]
        client_certificate: bool,
    },
    /// Allow (or with --off stop) client-certificate login for an account.
    Certificate {
        name: String,
        #[arg(long)]
        off: bool,
    },
    /// List accounts (no secrets).
    List,
    /// Refuse further logins, sessions and API keys of an account.
    Disable { name: String },
    /// Allow an account again.
    Enable { name: String },
    /// Create an API key for an account; printed once, only its hash is kept.
    ApiKey { name: String },
}

fn accounts_path(store: &StoreArgs) -> Result<PathBuf, AppError> {
    let (settings, file) = store.resolve()?;
    Ok(users_file(
        file.auth.as_ref(),
        &settings.data,
        store.config.as_deref(),
    ))
}

fn read_password() -> Result<String, AppError> {
    if let Ok(p) = std::env::var("PACS_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(AppError::Io)?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        return Err(AppError::Internal(
            "no password given (PACS_PASSWORD or stdin); use --no-password for service accounts"
                .into(),
        ));
    }
    Ok(p)
}

pub fn run(store: &StoreArgs, command: UserCommand) -> Result<(), AppError> {
    let path = accounts_path(store)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(AppError::Io)?;
    }
    let mut file = AccountsFile::load(&path)?;
    match command {
        UserCommand::Add {
            name,
            role,
            patient_ids,
            totp,
            no_password,
            client_certificate,
        } => {
            let password = if no_password {
                None
            } else {
                Some(read_password()?)
            };
            let new = file.add_user(&name, role, patient_ids, password.as_deref(), totp)?;
            if client_certificate {
                file.set_client_certificate(&name, true)?;
            }
            file.save()?;
            println!("added {} ({role}) to {}", new.name, path.display());
            if let Some(t) = new.totp {
                println!("TOTP secret: {}", t.secret);
                println!("TOTP URI: {}", t.uri);
            }
        }
        UserCommand::List => {
            for u in file.list() {
                println!(
                    "{}\t{}\t{}\t{}{}{}{}",
                    u.name,
                    u.role,
                    if u.disabled { "disabled" } else { "enabled" },
                    if u.password_hash.is_some() {
                        "password"
                    } else {
                        "no-password"
                    },
                    if u.totp_secret.is_some() { "+totp" } else { "" },
                    if u.client_certificate {
                        "+certificate"
                    } else {
                        ""
                    },
                    if u.api_key_hashes.is_empty() {
                        String::new()
                    } else {
                        format!("\t{} api keys", u.api_key_hashes.len())
                    }
                );
            }
        }
        UserCommand::Certificate { name, off } => {
            file.set_client_certificate(&name, !off)?;
            file.save()?;
            println!(
                "client certificate login {} for {name}",
                if off { "off" } else { "on" }
            );
        }
        UserCommand::Disable { name } => {
            file.set_disabled(&name, true)?;
            file.save()?;
            println!("disabled {name}");
        }
        UserCommand::Enable { name } => {
            file.set_disabled(&name, false)?;
            file.save()?;
            println!("enabled {name}");
        }
        UserCommand::ApiKey { name } => {
            let key = file.create_api_key(&name)?;
            file.save()?;
            println!("{key}");
        }
    }
    Ok(())
}
