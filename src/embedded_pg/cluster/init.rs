//! The cluster's directories checked and prepared at every start, and `initdb` on the first.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use crate::embedded_pg::binaries::{PgUser, Runner};
use crate::embedded_pg::error::EmbeddedPgError;
use crate::embedded_pg::password;
use crate::embedded_pg::state_dir::{self, Layout};

/// Checks the state directory and its entries, creates `data` and `socket`, and makes `socket` 0700
/// at every start; as root hands both to `postgres` and checks that user can reach them.
pub(super) async fn prepare_dirs(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
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

/// `initdb` in UTF-8 with the C.UTF-8 locale, or the C locale where C.UTF-8 does not exist.
pub(super) async fn initdb(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let began = Instant::now();
    let what = format!("initdb -D {}", layout.data.display());
    // Two files of a few bytes, once per cluster, before an initdb of seconds: inline.
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
