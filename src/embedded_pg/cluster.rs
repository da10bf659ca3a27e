//! Init, start, attach and stop of the cluster in one state directory, under its lock.
//!
//! Layout: this file runs `pg_ctl` and waits for the server; `init` prepares the directories and
//! runs `initdb`; `port` keeps the TCP port; `server_log` rotates the log and reads its tail.
//!
//! Blocking calls: taking the lock, preparing the directories and the log (chown, rename) run in
//! `spawn_blocking`; what stays inline are single `stat`s, reads and writes of files of a few bytes
//! in the state directory (port, pid, password) and loopback `bind`s, which return at once.

mod init;
mod port;
mod server_log;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::binaries::{Runner, output_text};
use super::connect::connect_options;
use super::error::EmbeddedPgError;
use super::password;
use super::state_dir::{self, Layout};

/// How long a start may take, and how long we wait for a running server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts the cluster (initialising it first if needed) or attaches to the running one, and makes
/// sure TCP logins need the password. Returns its port and whether we started it.
pub(super) async fn start_or_attach(
    layout: &Layout,
    runner: &Runner,
) -> Result<(u16, bool), EmbeddedPgError> {
    let _lock = lock(layout).await?;

    init::prepare_dirs(layout, runner).await?;
    // One stat (and below, the few bytes of `postgres.port`): not worth a worker thread.
    if !layout.data.join("PG_VERSION").exists() {
        init::initdb(layout, runner).await?;
    }

    let (port, started_here) = match running_port(layout, runner).await? {
        Some(port) => {
            tracing::info!(data = %layout.data.display(), port, "attaching to the running PostgreSQL");
            if port::stored(layout) != Some(port) {
                port::store(layout, port)?;
            }
            wait_ready(layout, port, None).await?;
            (port, false)
        }
        None => (start_server(layout, runner).await?, true),
    };
    password::require_on_tcp(layout, port).await?;
    Ok((port, started_here))
}

/// Starts the stopped server on the stored port, or on a free one if that is taken.
async fn start_server(layout: &Layout, runner: &Runner) -> Result<u16, EmbeddedPgError> {
    let (log_layout, user) = (layout.clone(), runner.as_user.clone());
    tokio::task::spawn_blocking(move || server_log::prepare(&log_layout, user.as_ref()))
        .await
        .map_err(|e| EmbeddedPgError::io("preparing the server log", std::io::Error::other(e)))??;
    if !layout.socket_usable() {
        tracing::warn!(
            socket = %layout.socket.display(),
            "the state directory's path is too long for a Unix socket; PostgreSQL listens on TCP only"
        );
    }
    // Loopback binds and a file of a few bytes: they return at once.
    let mut port = match port::stored(layout) {
        Some(port) if port::is_free(port) => port,
        stored => {
            let port = port::pick_free()?;
            if let Some(old) = stored {
                tracing::warn!(old, new = port, "the PostgreSQL port is taken; using another");
            }
            port::store(layout, port)?;
            port
        }
    };
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        // One stat; the log is read (at most 64 KiB) only after a failed start.
        let log_offset = std::fs::symlink_metadata(&layout.log).map_or(0, |m| m.len());
        let began = Instant::now();
        match pg_ctl_start(layout, runner, port, log_offset).await {
            Ok(()) => {
                wait_ready(layout, port, Some(log_offset)).await?;
                tracing::info!(
                    data = %layout.data.display(),
                    port,
                    elapsed_ms = began.elapsed().as_millis() as u64,
                    "started PostgreSQL"
                );
                return Ok(port);
            }
            Err(err)
                if attempt < ATTEMPTS
                    && server_log::since(&layout.log, log_offset).contains("could not bind") =>
            {
                // Someone took the port between our check and the server's bind.
                let new = port::pick_free()?;
                tracing::warn!(old = port, new, error = %err, "PostgreSQL could not bind its port; retrying with another");
                port = new;
                port::store(layout, port)?;
            }
            Err(err) => return Err(err),
        }
    }
    unreachable!("the last attempt returns")
}

/// Stops the server if it runs (`pg_ctl stop -m fast`).
pub(super) async fn stop(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let _lock = lock(layout).await?;
    if running_port(layout, runner).await?.is_none() {
        return Ok(());
    }
    let mut cmd = runner.command("pg_ctl");
    cmd.arg("stop").arg("-D").arg(&layout.data).args(["-m", "fast", "-w", "-t", "60"]);
    runner.run(&format!("pg_ctl stop -D {}", layout.data.display()), cmd).await?;
    tracing::info!(data = %layout.data.display(), "stopped PostgreSQL");
    Ok(())
}

/// Takes the exclusive lock of the cluster (blocking in a worker thread). `flock` locks belong to the open
/// file, so tasks of one process exclude each other as processes do.
async fn lock(layout: &Layout) -> Result<Flock<File>, EmbeddedPgError> {
    let path = layout.lock_file.clone();
    let what = format!("locking {}", path.display());
    tokio::task::spawn_blocking(move || {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false).mode(0o600);
        let file = state_dir::open(&path, &mut options)?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| EmbeddedPgError::io(what, std::io::Error::from(errno)))
    })
    .await
    .map_err(|e| EmbeddedPgError::io("locking the state directory", std::io::Error::other(e)))?
}

/// `Some(port)` when a server runs on the data directory (`pg_ctl status` exits 0), the port read from
/// line 4 of `postmaster.pid`.
async fn running_port(layout: &Layout, runner: &Runner) -> Result<Option<u16>, EmbeddedPgError> {
    let mut cmd = runner.command("pg_ctl");
    cmd.arg("status").arg("-D").arg(&layout.data);
    let output = cmd.output().await.map_err(|e| EmbeddedPgError::io("running pg_ctl status", e))?;
    match output.status.code() {
        Some(0) => {}
        // 3: not running.
        Some(3) => return Ok(None),
        _ => {
            return Err(EmbeddedPgError::Command {
                what: format!("pg_ctl status -D {}", layout.data.display()),
                status: output.status,
                stderr: output_text(&output),
            });
        }
    }
    let pid_file = layout.data.join("postmaster.pid");
    // A few hundred bytes, just written by the server: not worth a worker thread.
    let text = state_dir::read_to_string(&pid_file)
        .map_err(|e| EmbeddedPgError::io(format!("reading {}", pid_file.display()), e))?;
    text.lines().nth(3).and_then(|line| line.trim().parse().ok()).map(Some).ok_or_else(|| {
        EmbeddedPgError::io(
            format!("reading the port from {}", pid_file.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, "no port on line 4"),
        )
    })
}

/// `pg_ctl start -w`, with the server settings on its command line.
async fn pg_ctl_start(
    layout: &Layout,
    runner: &Runner,
    port: u16,
    log_offset: u64,
) -> Result<(), EmbeddedPgError> {
    let mut cmd = runner.command("pg_ctl");
    cmd.arg("start")
        .args(["-w", "-t"])
        .arg(START_TIMEOUT.as_secs().to_string())
        .arg("-D")
        .arg(&layout.data)
        .arg("-l")
        .arg(&layout.log)
        .arg("-o")
        .arg(server_options(layout, port));
    let output = cmd.output().await.map_err(|e| EmbeddedPgError::io("running pg_ctl start", e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(EmbeddedPgError::Start {
        data: layout.data.clone(),
        reason: format!("pg_ctl start failed ({}): {}", output.status, output_text(&output)),
        log: layout.log.clone(),
        tail: server_log::tail(&layout.log, log_offset),
    })
}

/// The `-o` string of `pg_ctl start`. pg_ctl hands it to `/bin/sh`, so the socket path is shell-quoted,
/// inside PostgreSQL's own list quoting.
pub(super) fn server_options(layout: &Layout, port: u16) -> OsString {
    let mut opts = format!(
        "-c listen_addresses=127.0.0.1 -c port={port} -c max_connections=200 -c shared_buffers=128MB -c fsync=on -c "
    )
    .into_bytes();
    let mut socket_setting = b"unix_socket_directories=".to_vec();
    if layout.socket_usable() {
        socket_setting.push(b'"');
        for &b in layout.socket.as_os_str().as_bytes() {
            if b == b'"' {
                socket_setting.push(b'"');
            }
            socket_setting.push(b);
        }
        socket_setting.push(b'"');
    }
    opts.push(b'\'');
    for b in socket_setting {
        if b == b'\'' {
            opts.extend_from_slice(b"'\\''");
        } else {
            opts.push(b);
        }
    }
    opts.push(b'\'');
    OsString::from_vec(opts)
}

/// Waits until the server accepts a connection on its TCP port.
async fn wait_ready(
    layout: &Layout,
    port: u16,
    log_offset: Option<u64>,
) -> Result<(), EmbeddedPgError> {
    let deadline = Instant::now() + START_TIMEOUT;
    // The password file holds a few bytes; read once, before the loop.
    let options = connect_options(port, "postgres", layout.read_password().as_deref());
    loop {
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
                .await;
        let error = match attempt {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connection attempt timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            let offset = log_offset.unwrap_or_else(|| {
                std::fs::symlink_metadata(&layout.log).map_or(0, |m| m.len().saturating_sub(8192))
            });
            return Err(EmbeddedPgError::Start {
                data: layout.data.clone(),
                reason: format!(
                    "no connection on 127.0.0.1:{port} within {} s: {error}",
                    START_TIMEOUT.as_secs()
                ),
                log: layout.log.clone(),
                tail: server_log::tail(&layout.log, offset),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
