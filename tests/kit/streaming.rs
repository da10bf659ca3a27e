//! A PostgreSQL primary and a hot standby streaming from it, private to one test: [`Streaming`].
//!
//! Both run from the installed server binaries (`/usr/lib/postgresql/*/bin`, as the `postgres`
//! user when the test runs as root) in a temporary directory, on free loopback ports, each with a
//! private socket directory. TCP logins need the superuser's password; the socket trusts (only
//! the server's user can reach it), and the standby streams over the primary's socket. Both
//! servers are stopped when the [`Streaming`] is dropped, a panic included.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::unistd::{Uid, User, chown};
use sqlx::Connection as _;

use super::binary::wait_for;

/// The superuser's password on TCP.
const PASSWORD: &str = "streaming-pw";

/// A primary and its hot standby; both stop when this is dropped.
pub struct Streaming {
    // Dropped in this order: the standby, the primary, then their files.
    standby: Server,
    primary: Server,
    _dir: tempfile::TempDir,
}

/// One running server; stopped (`pg_ctl stop -m fast`) when dropped.
struct Server {
    data: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl Streaming {
    /// Initialises and starts a primary, then a standby from `pg_basebackup -R` of it.
    /// Blocking: a few seconds of `initdb`, `pg_ctl` and `pg_basebackup`.
    pub fn start() -> Streaming {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("kbwatch-replica-").tempdir().expect("a tmp dir");
        let root = dir.path();
        hand_to_postgres(root);
        for sub in ["primary-sock", "standby-sock"] {
            std::fs::create_dir(root.join(sub)).expect("a socket directory");
            std::fs::set_permissions(root.join(sub), std::fs::Permissions::from_mode(0o700))
                .expect("the socket directory is private");
            hand_to_postgres(&root.join(sub));
        }
        let pwfile = root.join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("the password file is written");
        hand_to_postgres(&pwfile);

        let primary_data = root.join("primary");
        run(&bin, "initdb", |c| {
            c.arg("-D").arg(&primary_data).args(["-U", "postgres", "-E", "UTF8", "--locale=C"]);
            c.args(["--auth-local=trust", "--auth-host=scram-sha-256"]);
            c.arg(format!("--pwfile={}", pwfile.display()));
        });
        let primary = Server::start(&bin, primary_data, &root.join("primary-sock"));

        let standby_data = root.join("standby");
        run(&bin, "pg_basebackup", |c| {
            c.arg("-D").arg(&standby_data).args(["-R", "-X", "stream", "--checkpoint=fast"]);
            c.arg("-h").arg(root.join("primary-sock")).arg("-p").arg(primary.port.to_string());
            c.args(["-U", "postgres"]);
        });
        let standby = Server::start(&bin, standby_data, &root.join("standby-sock"));
        Streaming { standby, primary, _dir: dir }
    }

    /// A URL of `database` on the primary, as its superuser.
    pub fn primary_url(&self, database: &str) -> String {
        self.primary.url(database)
    }

    /// A URL of `database` on the standby, as the primary's superuser.
    pub fn standby_url(&self, database: &str) -> String {
        self.standby.url(database)
    }

    /// Creates `database` on the primary (the standby gets it by replay).
    pub async fn create_database(&self, database: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.primary_url("postgres"))
            .await
            .expect("the primary accepts connections");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut conn)
            .await
            .expect("the database is created");
    }

    /// Waits until the standby has replayed everything the primary had written when called.
    pub async fn wait_for_replay(&self) {
        let mut primary = sqlx::PgConnection::connect(&self.primary_url("postgres"))
            .await
            .expect("the primary accepts connections");
        let written: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut primary)
            .await
            .expect("the primary's WAL position");
        let standby = sqlx::PgPool::connect(&self.standby_url("postgres"))
            .await
            .expect("the standby accepts connections");
        let what = format!("replay up to {written} on the standby");
        wait_for(&what, Duration::from_secs(20), || {
            let (standby, written) = (standby.clone(), written.clone());
            async move {
                sqlx::query_scalar("SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)")
                    .bind(written)
                    .fetch_one(&standby)
                    .await
                    .expect("the standby's replay position")
            }
        })
        .await;
        standby.close().await;
    }
}

impl Server {
    /// Starts the initialised `data` on a free port; a failed start is stopped as it unwinds.
    fn start(bin: &Path, data: PathBuf, socket: &Path) -> Server {
        let server = Server { data, port: free_port(), bin: bin.to_owned() };
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' \
             -c hot_standby=on -c fsync=off -c max_connections=50 -c shared_buffers=32MB",
            server.port,
            socket.display()
        );
        let log = server.data.with_extension("log");
        let mut start = command(bin, "pg_ctl");
        start.arg("start").args(["-w", "-t", "30", "-D"]).arg(&server.data).arg("-l").arg(&log);
        let out = start.arg("-o").arg(&options).output().expect("pg_ctl runs");
        if !out.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("pg_ctl start -D {} failed:\n{log}", server.data.display());
        }
        server
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.data.join("postmaster.pid").exists() {
            return; // it did not start
        }
        let stop = command(&self.bin, "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "30"])
            .output();
        match stop {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "kit: pg_ctl stop -D {} failed: {}",
                self.data.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("kit: pg_ctl stop did not run: {e}"),
        }
    }
}

/// The highest-numbered `/usr/lib/postgresql/*/bin` holding the server.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/ensure-postgres.sh)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_basebackup").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL with pg_basebackup under /usr/lib/postgresql").1
}

/// `program` of `bin`, run as `postgres` when we are root (the server refuses root).
fn command(bin: &Path, program: &str) -> Command {
    let mut cmd = Command::new(bin.join(program));
    cmd.current_dir("/").env("LC_MESSAGES", "C");
    if let Some(user) = postgres_user() {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw()).env("HOME", &user.dir);
    }
    cmd
}

/// Runs `program` set up by `args` to its end; panics with its output if it fails.
fn run(bin: &Path, program: &str, args: impl FnOnce(&mut Command)) {
    let mut cmd = command(bin, program);
    args(&mut cmd);
    let out = cmd.output().unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The `postgres` user when we are root; `None` otherwise (the servers run as ourselves).
fn postgres_user() -> Option<User> {
    Uid::effective().is_root().then(|| {
        User::from_name("postgres").expect("the user database reads").expect("a postgres user")
    })
}

/// Gives `path` to the server's user, so that it may write there.
fn hand_to_postgres(path: &Path) {
    if let Some(user) = postgres_user() {
        chown(path, Some(user.uid), Some(user.gid)).expect("chown to postgres");
    }
}

/// A loopback port nobody listens on now (a race with other binds is possible, and rare).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().expect("its address").port()
}
