//! A throwaway PostgreSQL for tests (this crate's and the integration tests, through the
//! `testing` feature): `initdb` and `pg_ctl` from Debian's postgresql package (installed by
//! `scripts/setup test`), a cluster in a temporary folder on a free loopback port, stopped
//! and removed on drop. PostgreSQL refuses to run as root, so as root the cluster belongs to
//! the `postgres` user.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// A loopback port nobody listens on, below the kernel's ephemeral range (32768-60999 on
/// Linux): a port the kernel hands to `bind(0)` or to an outgoing connection of a test
/// running beside this one cannot take it in the moment before our server binds it.
/// Ports are taken in turn from a process-wide counter started at a random point.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN + 1;
    let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {}", LOW + SPAN)
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL not listening on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    tls: bool,
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).stdout.starts_with(b"0\n")
}

/// The newest installed server's bin folder.
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server (scripts/setup test installs postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bin/initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("initdb under /usr/lib/postgresql/*/bin")
        .join("bin")
}

impl Postgres {
    fn as_owner(&self, tool: &str) -> Command {
        as_owner(&self.bin.join(tool))
    }

    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// A cluster that takes connections over TLS only, from clients with a certificate
    /// (pg_hba `hostssl ... cert`): the test PKI of `tests/support/make_certs.sh` is in
    /// [`Postgres::certs`] (`ca.pem`, `rogue-ca.pem`, `db-client.pem`/`.key` for the
    /// `postgres` user; the server's certificate names localhost and 127.0.0.1).
    pub fn start_tls() -> Postgres {
        Self::start_with(true)
    }

    /// The test PKI of a [`Postgres::start_tls`] cluster.
    pub fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn start_with(tls: bool) -> Postgres {
        let dir = tempfile::tempdir().expect("tmp");
        let bin = server_bin();
        if is_root() {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let pg = Postgres {
            port: free_port(),
            bin,
            dir,
            tls,
        };
        let out = run(pg
            .as_owner("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(pg.cluster()));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            pg.require_tls();
        }
        pg.ctl_start();
        let out = run(pg.psql("postgres").args(["-c", "CREATE DATABASE pacs"]));
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg
    }

    /// psql over the cluster's Unix socket (trusted, TLS or not).
    fn psql(&self, database: &str) -> Command {
        let mut cmd = Command::new("psql");
        cmd.arg("-h")
            .arg(self.dir.path())
            .args(["-U", "postgres", "-d", database, "-At"])
            .args(["-p", &self.port.to_string()]);
        cmd
    }

    fn require_tls(&self) {
        let certs = self.certs();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/support/make_certs.sh"
        );
        let out = run(Command::new("bash").arg(script).arg(&certs));
        assert!(
            out.status.success(),
            "make_certs.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(&certs));
        }
        // PostgreSQL refuses a key others can read; libpq-style clients too.
        for key in ["server.key", "db-client.key"] {
            run(Command::new("chmod").arg("600").arg(certs.join(key)));
        }
        let conf = format!(
            "ssl = on\nssl_cert_file = '{0}/server.pem'\nssl_key_file = '{0}/server.key'\n\
             ssl_ca_file = '{0}/ca.pem'\n",
            certs.display()
        );
        let cluster = self.cluster();
        let mut settings =
            std::fs::read_to_string(cluster.join("postgresql.conf")).expect("postgresql.conf");
        settings.push_str(&conf);
        std::fs::write(cluster.join("postgresql.conf"), settings).expect("postgresql.conf");
        std::fs::write(
            cluster.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
        )
        .expect("pg_hba.conf");
    }

    fn cluster(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn ctl_start(&self) {
        // fsync off: the tests kill archive nodes, never this server uncleanly.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.cluster())
            .args(["-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "start"]));
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for_port(self.port);
    }

    /// Stop (fast: connections are cut) and leave it stopped.
    pub fn stop(&self) {
        let out = run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.cluster())
            .args(["-m", "fast", "-w", "stop"]));
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn restart(&self) {
        self.ctl_start();
    }

    pub fn settings(&self) -> crate::IndexSettings {
        crate::IndexSettings {
            url: self.url(),
            max_connections: 8,
        }
    }

    /// The archive's URL: over TLS with the client certificate for a TLS cluster.
    pub fn url(&self) -> String {
        let url = format!("postgres://postgres@127.0.0.1:{}/pacs", self.port);
        if !self.tls {
            return url;
        }
        let certs = self.certs();
        format!(
            "{url}?sslmode=verify-full&sslrootcert={0}/ca.pem&sslcert={0}/db-client.pem\
             &sslkey={0}/db-client.key",
            certs.display()
        )
    }

    /// One value from a SQL query, through psql.
    pub fn query(&self, sql: &str) -> String {
        let out = run(self.psql("pacs").args(["-c", sql]));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn as_owner(tool: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.cluster())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
