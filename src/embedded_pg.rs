//! The private PostgreSQL (DESIGN §7): with no `database.url`, kbwatch runs its own cluster from the
//! PostgreSQL binaries installed on the machine, with its data under the state directory.
//!
//! Layout of the state directory `dir`:
//! - `dir/data`: the cluster (initdb on first use);
//! - `dir/socket`: the Unix socket directory;
//! - `dir/postgres.log`: the server log (`pg_ctl -l`);
//! - `dir/postgres.port`: the loopback port chosen on first use, reused by later starts;
//! - `dir/postgres.lock`: an exclusive `flock` held while a process initialises, starts or stops the cluster;
//! - `dir/postgres.password`: the superuser's password for TCP logins (0600).
//!
//! PostgreSQL refuses to run as root: as root the binaries run as the `postgres` system user, and the
//! directories they use are handed to that user.
//!
//! The state directory is trusted with a superuser (the socket logs in without a password): it must be
//! ours and writable by no one else, and no symbolic link in it is followed (see `state_dir`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

mod binaries;
mod cluster;
mod connect;
mod error;
mod password;
#[cfg(test)]
mod setup_tests;
mod state_dir;
#[cfg(test)]
mod state_dir_tests;
#[cfg(test)]
mod tests;

use binaries::Runner;
use connect::connect_options;
pub use error::EmbeddedPgError;
use secrecy::{ExposeSecret as _, SecretString};
use state_dir::Layout;
pub use state_dir::prepare_state_dir;

/// The state directory: `$STATE_DIRECTORY` (first path if colon-separated), else
/// `$XDG_STATE_HOME/kbwatch`, else `./.kbwatch`.
pub fn default_state_dir() -> PathBuf {
    state_dir_from(std::env::var_os("STATE_DIRECTORY"), std::env::var_os("XDG_STATE_HOME"))
}

/// [`default_state_dir`] as a pure function of the two environment values. Empty values count as unset; a
/// relative `XDG_STATE_HOME` is ignored, as the XDG specification asks.
fn state_dir_from(state_directory: Option<OsString>, xdg_state_home: Option<OsString>) -> PathBuf {
    if let Some(first) = state_directory
        .as_ref()
        .and_then(|s| s.as_bytes().split(|b| *b == b':').find(|part| !part.is_empty()))
    {
        return PathBuf::from(OsStr::from_bytes(first));
    }
    if let Some(xdg) = xdg_state_home.filter(|x| !x.is_empty() && Path::new(x).is_absolute()) {
        return PathBuf::from(xdg).join("kbwatch");
    }
    PathBuf::from(".kbwatch")
}

/// `<temp>/<name of dir>-<hash of dir>`, created with mode 0755 (as root; 0700 otherwise): one per
/// preferred directory, so that two checkouts never share a scratch cluster. Another user's directory
/// of that name is refused, as any unsafe state directory is.
fn scratch_fallback(dir: &Path) -> Result<PathBuf, EmbeddedPgError> {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    prepare_state_dir(&std::env::temp_dir().join(format!("{name}-{:016x}", hasher.finish())))
}

/// A handle on the private cluster of one state directory.
#[derive(Debug)]
pub struct EmbeddedPg {
    layout: Layout,
    runner: Runner,
    port: AtomicU16,
    started_here: AtomicBool,
    /// Redacted in Debug output.
    password: Option<SecretString>,
}

impl EmbeddedPg {
    /// Starts the cluster under `dir` (creating it with initdb on first use), or attaches to the one already
    /// running there. Safe when several processes (or tasks) call it at once: an exclusive lock on
    /// `dir/postgres.lock` is held during init and start. Listens on a Unix socket in `dir/socket` and on
    /// 127.0.0.1:<port>, the port being chosen free on first use and kept in `dir/postgres.port` (another
    /// one is chosen if something else has taken it). Returns once the server accepts connections, or
    /// fails after about 30 s with the tail of `dir/postgres.log`.
    ///
    /// `dir` is created (with its missing parents) by [`prepare_state_dir`], which refuses one that
    /// another user owns or can write to. A cluster whose TCP logins needed no password gets one.
    pub async fn start(dir: &Path) -> Result<EmbeddedPg, EmbeddedPgError> {
        let runner = Runner::discover()?;
        let dir = dir.to_owned();
        let dir =
            tokio::task::spawn_blocking(move || prepare_state_dir(&dir)).await.map_err(|e| {
                EmbeddedPgError::io("preparing the state directory", std::io::Error::other(e))
            })??;
        let layout = Layout::new(&dir)?;
        let (port, started_here) = cluster::start_or_attach(&layout, &runner).await?;
        let password = layout.read_password().map(SecretString::from);
        Ok(EmbeddedPg {
            layout,
            runner,
            port: AtomicU16::new(port),
            started_here: AtomicBool::new(started_here),
            password,
        })
    }

    /// Starts a throwaway cluster (tests, benchmarks) in `dir`; when kbwatch runs as root and the
    /// `postgres` user cannot reach `dir` (a checkout under `/root` or in a `mktemp -d` directory),
    /// in a directory named after `dir` under the system temp dir instead, made traversable.
    pub async fn start_scratch(dir: &Path) -> Result<EmbeddedPg, EmbeddedPgError> {
        match EmbeddedPg::start(dir).await {
            Err(EmbeddedPgError::NotReachable { .. }) => {
                let fallback = scratch_fallback(dir)?;
                tracing::info!(unreachable = %dir.display(), dir = %fallback.display(), "Starting the scratch PostgreSQL where its user can reach it");
                EmbeddedPg::start(&fallback).await
            }
            started => started,
        }
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Acquire)
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DB` (TCP loopback).
    pub fn url(&self, database: &str) -> String {
        let password =
            self.password.as_ref().map(|p| format!(":{}", p.expose_secret())).unwrap_or_default();
        let (port, db) = (self.port(), percent_encode(database));
        format!("postgres://postgres{password}@127.0.0.1:{port}/{db}")
    }

    /// [`url`](Self::url) without the password, for logs and messages; the password is in
    /// `postgres.password` in the state directory.
    pub fn display_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port(), percent_encode(database))
    }

    /// The Unix socket directory (`dir/socket`), for tools that prefer the socket; `None` when the state
    /// directory's path is too long for a Unix socket, in which case the server listens on TCP only.
    pub fn socket_dir(&self) -> Option<&Path> {
        self.layout.socket_usable().then_some(self.layout.socket.as_path())
    }

    /// `CREATE DATABASE` if it does not exist (race-safe: a concurrent creation is not an error).
    pub async fn ensure_database(&self, name: &str) -> Result<(), EmbeddedPgError> {
        if name.is_empty() || name.len() > 63 || name.contains('\0') {
            return Err(EmbeddedPgError::InvalidDatabaseName(name.to_owned()));
        }
        let mut conn = PgConnection::connect_with(&connect_options(
            self.port(),
            "postgres",
            self.password.as_ref().map(|p| p.expose_secret()),
        ))
        .await?;
        let result = create_database(&mut conn, name).await;
        let _ = conn.close().await;
        result
    }

    /// Stops the server (`pg_ctl stop -m fast`) only if this handle started it; a handle that attached to an
    /// already running cluster leaves it running.
    pub async fn stop(self) -> Result<(), EmbeddedPgError> {
        if self.started_here() {
            self.stop_server().await?;
        }
        Ok(())
    }

    /// Stops the server even if this handle attached to it (`pg_ctl stop -m fast`). Not an error if it is
    /// not running.
    pub async fn stop_server(&self) -> Result<(), EmbeddedPgError> {
        cluster::stop(&self.layout, &self.runner).await?;
        self.started_here.store(false, Ordering::Release);
        Ok(())
    }

    /// Starts the server again after [`stop_server`](Self::stop_server), with the same directory and, unless
    /// something else has taken it meanwhile, the same port. Attaches if it is already running.
    pub async fn restart_server(&self) -> Result<(), EmbeddedPgError> {
        let (port, started_here) = cluster::start_or_attach(&self.layout, &self.runner).await?;
        self.port.store(port, Ordering::Release);
        if started_here {
            self.started_here.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Whether this handle started the server (rather than attaching to a running one).
    pub fn started_here(&self) -> bool {
        self.started_here.load(Ordering::Acquire)
    }
}

async fn create_database(conn: &mut PgConnection, name: &str) -> Result<(), EmbeddedPgError> {
    const ATTEMPTS: u32 = 10;
    for attempt in 1..=ATTEMPTS {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut *conn)
                .await?;
        if exists {
            return Ok(());
        }
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        let err = match sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await {
            Ok(_) => {
                tracing::info!(database = name, "created database");
                return Ok(());
            }
            Err(err) => err,
        };
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        match code.as_deref() {
            // duplicate_database, or unique_violation on pg_database when two creations race.
            Some("42P04") | Some("23505") => return Ok(()),
            // object_in_use: "source database template1 is being accessed by other users".
            Some("55006") if attempt < ATTEMPTS => {
                tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(attempt)))
                    .await;
            }
            _ => return Err(err.into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// `"name"`, with embedded double quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a URL path segment.
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
