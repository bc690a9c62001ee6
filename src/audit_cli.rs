//! `pacs audit verify` and `pacs audit export`: check the audit trail's hash chain and write it
//! out as JSON lines or RFC 5424 syslog (IHE ATNA), reading beside a running server.

use clap::{Subcommand, ValueEnum};
use pacs_storage::audit::{to_json_line, to_syslog, AuditFilter, AuditLog};

use crate::config::StoreArgs;
use crate::error::AppError;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; reports altered, inserted or deleted records (exit status 1).
    Verify,
    /// Write records to stdout.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only records at or after this time (RFC 3339, e.g. 2026-11-25T00:00:00Z)
        #[arg(long)]
        since: Option<String>,
        /// Only records before this time (RFC 3339)
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line
    Jsonl,
    /// RFC 5424 lines with DICOM PS3.15 audit messages (IHE ATNA)
    Syslog,
}

/// Records read per page when exporting.
const PAGE: usize = 5000;

fn audit_error(e: pacs_storage::audit::AuditError) -> AppError {
    AppError::Internal(e.to_string())
}

pub fn run(store: &StoreArgs, command: AuditCommand) -> Result<(), AppError> {
    let (settings, _) = store.resolve()?;
    let log = AuditLog::open_read_only(settings.data.join("audit")).map_err(audit_error)?;
    match command {
        AuditCommand::Verify => {
            let report = log.verify().map_err(audit_error)?;
            for p in &report.problems {
                println!("{p}");
            }
            println!(
                "audit trail: {} records, {}",
                report.records,
                if report.problems.is_empty() {
                    "chain intact".to_string()
                } else {
                    format!("{} problems", report.problems.len())
                }
            );
            if !report.problems.is_empty() {
                return Err(AppError::AuditChain(report.problems.len()));
            }
        }
        AuditCommand::Export {
            format,
            since,
            until,
        } => {
            let filter = AuditFilter {
                since,
                until,
                ..AuditFilter::default()
            };
            let host = pacs_storage::audit::hostname();
            let mut after = 0;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                let page = log
                    .query(&filter, after, PAGE, false)
                    .map_err(audit_error)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for r in &page {
                    let line = match format {
                        ExportFormat::Jsonl => to_json_line(r),
                        ExportFormat::Syslog => to_syslog(r, &host, "pacs"),
                    };
                    std::io::Write::write_all(&mut out, line.as_bytes()).map_err(AppError::Io)?;
                    std::io::Write::write_all(&mut out, b"\n").map_err(AppError::Io)?;
                }
            }
            std::io::Write::flush(&mut out).map_err(AppError::Io)?;
        }
    }
    Ok(())
}
