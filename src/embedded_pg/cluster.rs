//! Init, start, attach and stop of the cluster in one state directory, under its lock.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::binaries::{PgUser, Runner, output_text};
use super::connect::connect_options;
use super::error::EmbeddedPgError;
use super::password;
use super::state_dir::{self, Layout};

/// How long a start may take, and how long we wait for a running server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A log larger than this is moved to `postgres.log.old` before the next start.
const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// Starts the cluster (initialising it first if needed) or attaches to the running one, and makes
/// sure TCP logins need the password. Returns its port and whether we started it.
pub(super) async fn start_or_attach(
    layout: &Layout,
    runner: &Runner,
) -> Result<(u16, bool), EmbeddedPgError> {
    let _lock = lock(layout).await?;

    prepare_dirs(layout, runner).await?;
    if !layout.data.join("PG_VERSION").exists() {
        initdb(layout, runner).await?;
    }

    let (port, started_here) = match running_port(layout, runner).await? {
        Some(port) => {
            tracing::info!(data = %layout.data.display(), port, "attaching to the running PostgreSQL");
            if stored_port(layout) != Some(port) {
                store_port(layout, port)?;
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
    prepare_log(layout, runner)?;
    if !layout.socket_usable() {
        tracing::warn!(
            socket = %layout.socket.display(),
            "the state directory's path is too long for a Unix socket; PostgreSQL listens on TCP only"
        );
    }
    let mut port = match stored_port(layout) {
        Some(port) if port_is_free(port) => port,
        stored => {
            let port = pick_free_port()?;
            if let Some(old) = stored {
                tracing::warn!(old, new = port, "the PostgreSQL port is taken; using another");
            }
            store_port(layout, port)?;
            port
        }
    };
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
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
                    && log_since(&layout.log, log_offset).contains("could not bind") =>
            {
                // Someone took the port between our check and the server's bind.
                let new = pick_free_port()?;
                tracing::warn!(old = port, new, error = %err, "PostgreSQL could not bind its port; retrying with another");
                port = new;
                store_port(layout, port)?;
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

/// Checks the state directory and its entries, creates `data` and `socket`, and makes `socket` 0700
/// at every start; as root hands both to `postgres` and checks that user can reach them.
async fn prepare_dirs(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let (checked, user) = (layout.clone(), runner.as_user.clone());
    tokio::task::spawn_blocking(move || make_dirs(&checked, user.as_ref())).await.map_err(
        |e| EmbeddedPgError::io("preparing the state directory", std::io::Error::other(e)),
    )??;
    if runner.as_user.is_none() {
        return Ok(());
    }
    let mut cmd = runner.command("/usr/bin/env");
    cmd.arg("test").arg("-w").arg(&layout.data).arg("-a").arg("-w").arg(&layout.socket);
    let status = cmd
        .status()
        .await
        .map_err(|e| EmbeddedPgError::io("running `test` as the postgres user", e))?;
    if !status.success() {
        return Err(EmbeddedPgError::NotReachable { path: layout.dir.clone() });
    }
    Ok(())
}

/// The file-system half of [`prepare_dirs`].
fn make_dirs(layout: &Layout, user: Option<&PgUser>) -> Result<(), EmbeddedPgError> {
    layout.check(user.map(|u| u.uid))?;
    let data_created = state_dir::make_dir(&layout.data, 0o700)?;
    state_dir::make_dir(&layout.socket, 0o700)?;
    // The socket trusts whoever reaches it: only the server's user (and root) may, whatever mode the
    // directory had.
    let socket = state_dir::open_dir(&layout.socket)?;
    socket
        .set_permissions(std::fs::Permissions::from_mode(0o700))
        .map_err(|e| EmbeddedPgError::io(format!("chmod 0700 {}", layout.socket.display()), e))?;
    let Some(user) = user else {
        return Ok(());
    };
    state_dir::hand_over(&socket, &layout.socket, user.uid, user.gid)?;
    // An initialised data directory is never re-owned: PostgreSQL itself refuses a wrong owner.
    if data_created || !layout.data.join("PG_VERSION").exists() {
        let data = state_dir::open_dir(&layout.data)?;
        state_dir::hand_over(&data, &layout.data, user.uid, user.gid)?;
    }
    Ok(())
}

/// Moves a large log aside, and as root creates the log owned by `postgres` (pg_ctl opens it as that user).
fn prepare_log(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
    if std::fs::symlink_metadata(&layout.log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        // rename replaces a symbolic link at the old name itself, never its target.
        std::fs::rename(&layout.log, &layout.old_log).map_err(|e| {
            EmbeddedPgError::io(format!("moving {} aside", layout.log.display()), e)
        })?;
    }
    if let Some(user) = &runner.as_user {
        let mut options = OpenOptions::new();
        options.append(true).create(true).mode(0o600);
        let log = state_dir::open(&layout.log, &mut options)?;
        state_dir::hand_over(&log, &layout.log, user.uid, user.gid)?;
    }
    Ok(())
}

/// `initdb` in UTF-8 with the C.UTF-8 locale, or the C locale where C.UTF-8 does not exist.
async fn initdb(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let began = Instant::now();
    let what = format!("initdb -D {}", layout.data.display());
    password::write_for_initdb(layout, runner)?;
    let pwfile = &layout.pwfile;
    let mut result = Ok(());
    for locale in ["C.UTF-8", "C"] {
        let mut cmd = runner.command("initdb");
        cmd.arg("-D")
            .arg(&layout.data)
            .args(["-U", "postgres", "-E", "UTF8"])
            // Unix socket: its directory is private. TCP: the superuser's password.
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg(format!("--locale={locale}"));
        result = runner.run(&what, cmd).await.map(drop);
        match &result {
            Ok(()) => {
                tracing::info!(
                    data = %layout.data.display(),
                    locale,
                    elapsed_ms = began.elapsed().as_millis() as u64,
                    "initialised the PostgreSQL cluster"
                );
                break;
            }
            Err(err) => {
                tracing::warn!(locale, error = %err, "initdb failed");
                // initdb empties the directory it failed in; make sure, for the next attempt.
                if layout.data.join("PG_VERSION").exists() {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_file(pwfile);
    result
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
        tail: log_tail(&layout.log, log_offset),
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
                tail: log_tail(&layout.log, offset),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the log holds after `offset` (at most its last 64 KiB).
fn log_since(log: &Path, offset: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(log)?;
        let len = file.metadata()?.len();
        let start = offset.max(len.saturating_sub(64 << 10)).min(len);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_default()
}

/// The last 30 lines the log holds after `offset`.
fn log_tail(log: &Path, offset: u64) -> String {
    let text = log_since(log, offset);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    if tail.is_empty() { "(empty)".to_owned() } else { tail }
}

fn stored_port(layout: &Layout) -> Option<u16> {
    state_dir::read_to_string(&layout.port_file).ok()?.trim().parse().ok().filter(|port| *port != 0)
}

fn store_port(layout: &Layout, port: u16) -> Result<(), EmbeddedPgError> {
    crate::config::write_private(&layout.port_file, format!("{port}\n").as_bytes())
        .map_err(|e| EmbeddedPgError::io(format!("writing {}", layout.port_file.display()), e))
}

/// A port free on 127.0.0.1 now, as the kernel chooses it.
fn pick_free_port() -> Result<u16, EmbeddedPgError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| EmbeddedPgError::io("finding a free port on 127.0.0.1", e))
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}
