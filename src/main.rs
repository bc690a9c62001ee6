//! `pacs`: a PACS server (DICOM C-ECHO/C-STORE, HTTP API) and its admin commands; the
//! command line over the `pacs` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pacs::config::{ServeArgs, StoreArgs};
use pacs::{audit_cli, error, import, server, users_cli, verify};

/// mimalloc: large pixel buffers are reused instead of being unmapped and faulted back in on
/// every request (benches/rendered.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "pacs",
    version,
    about = "PACS server: DICOM store, index and DICOMweb"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (DICOM listener and HTTP API) until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Load DICOM files from folders into the archive through the same ingest path as C-STORE.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Files or folders to import (folders are walked recursively)
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Do not show a progress bar
        #[arg(long)]
        quiet: bool,
    },
    /// Check every stored file against the SHA-256 and size recorded at ingest; reports files
    /// that changed or vanished (exit status 1). Safe beside a running server.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Also remove blobs no index record refers to (e.g. uploaded by a node that died
        /// before its index commit) that are older than SECS seconds.
        #[arg(long, value_name = "SECS")]
        sweep_orphans_older_than: Option<u64>,
    },
    /// Local accounts: add, list, disable, enable, API keys.
    User {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: users_cli::UserCommand,
    },
    /// The audit trail: verify its hash chain, export it (JSON lines, syslog/ATNA).
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: audit_cli::AuditCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PACS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.resolve().map_err(Into::into).and_then(|settings| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(error::AppError::Io)
                .and_then(|rt| rt.block_on(server::run(settings)))
        }),
        Command::Import {
            store,
            paths,
            quiet,
        } => store
            .resolve()
            .map_err(Into::into)
            .and_then(|(settings, _)| import::run(&settings, &paths, quiet)),
        Command::Verify {
            store,
            sweep_orphans_older_than,
        } => store
            .resolve()
            .map_err(Into::into)
            .and_then(|(settings, _)| verify::run(&settings, sweep_orphans_older_than)),
        Command::User { store, command } => users_cli::run(&store, command),
        Command::Audit { store, command } => audit_cli::run(&store, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pacs: {e}");
            ExitCode::FAILURE
        }
    }
}
