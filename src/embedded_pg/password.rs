//! The superuser's password: chosen at initdb, and set on clusters made before kbwatch set one,
//! whose `pg_hba.conf` still trusts every TCP login on loopback.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::binaries::Runner;
use super::connect::connect_options;
use super::error::EmbeddedPgError;
use super::state_dir::{self, Layout};

/// The host-based connection types of `pg_hba.conf` (every one but `local`).
const HOST_TYPES: [&str; 5] = ["host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"];

/// A new random superuser password, kept in `layout.password` for kbwatch, and a copy that the
/// server's user can read for `initdb --pwfile` (`layout.pwfile`, removed after initdb).
pub(super) fn write_for_initdb(layout: &Layout, runner: &Runner) -> Result<(), EmbeddedPgError> {
    let password = new_password();
    for path in [&layout.password, &layout.pwfile] {
        // Unlinking removes a symbolic link itself, never its target; create_new makes a new file.
        let _ = std::fs::remove_file(path);
        let file = create_new(path, &password)?;
        if let (Some(user), true) = (&runner.as_user, path == &layout.pwfile) {
            state_dir::hand_over(&file, path, user.uid, user.gid)?;
        }
    }
    Ok(())
}

/// On a cluster whose `pg_hba.conf` trusts TCP logins (made before kbwatch set a password), sets the
/// superuser's password (the one in `layout.password`, or a new one kept there) and makes every TCP
/// login require it. Returns once a password-less TCP login is refused.
pub(super) async fn require_on_tcp(layout: &Layout, port: u16) -> Result<(), EmbeddedPgError> {
    let hba = layout.data.join("pg_hba.conf");
    let text = state_dir::read_to_string(&hba)
        .map_err(|e| EmbeddedPgError::io(format!("reading {}", hba.display()), e))?;
    let Some(secured) = without_host_trust(&text) else {
        return Ok(());
    };
    let password = match layout.read_password() {
        Some(password) => password,
        None => {
            let password = new_password();
            create_new(&layout.password, &password)?;
            password
        }
    };
    // The server still trusts TCP: this login needs no password.
    let mut conn = PgConnection::connect_with(&connect_options(port, "postgres", None)).await?;
    let alter: String =
        sqlx::query_scalar("SELECT format('ALTER ROLE postgres PASSWORD %L', $1::text)")
            .bind(&password)
            .fetch_one(&mut conn)
            .await?;
    sqlx::query(sqlx::AssertSqlSafe(alter)).execute(&mut conn).await?;
    rewrite(&hba, &secured)?;
    sqlx::query("SELECT pg_reload_conf()").execute(&mut conn).await?;
    let _ = conn.close().await;
    wait_until_refused(port).await?;
    tracing::warn!(
        data = %layout.data.display(),
        "The private PostgreSQL trusted TCP logins; its superuser now has the password in {}",
        layout.password.display()
    );
    Ok(())
}

/// `pg_hba.conf` with `trust` replaced by `scram-sha-256` on every host line; `None` if no host
/// line trusts.
pub(super) fn without_host_trust(text: &str) -> Option<String> {
    let mut changed = false;
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let is_host = tokens.first().is_some_and(|t| HOST_TYPES.contains(t));
        // TYPE DATABASE USER ADDRESS [MASK] METHOD [OPTIONS]: the method follows the address (and
        // its mask, when the address is a bare IP).
        let method = tokens
            .iter()
            .enumerate()
            .skip(4)
            .find(|(_, t)| t.parse::<std::net::IpAddr>().is_err())
            .map(|(i, _)| i);
        match method {
            Some(i) if is_host && tokens[i] == "trust" => {
                let mut fixed = tokens.clone();
                fixed[i] = "scram-sha-256";
                out.push_str(&fixed.join(" "));
                out.push('\n');
                changed = true;
            }
            _ => out.push_str(line),
        }
    }
    changed.then_some(out)
}

/// Waits (at most 30 s) until the server has reloaded `pg_hba.conf` and refuses a TCP login
/// without a password.
async fn wait_until_refused(port: u16) -> Result<(), EmbeddedPgError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match PgConnection::connect_with(&connect_options(port, "postgres", None)).await {
            Err(_) => return Ok(()),
            Ok(conn) => {
                let _ = conn.close().await;
            }
        }
        if Instant::now() >= deadline {
            let e = std::io::Error::other("the server still accepts TCP logins without a password");
            return Err(EmbeddedPgError::io("reloading pg_hba.conf", e));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replaces `pg_hba.conf` (a new file, owned as the old one, renamed over it), following no
/// symbolic link.
fn rewrite(hba: &Path, text: &str) -> Result<(), EmbeddedPgError> {
    let what = || format!("writing {}", hba.display());
    let old = state_dir::open(hba, OpenOptions::new().read(true))?;
    let meta = old.metadata().map_err(|e| EmbeddedPgError::io(what(), e))?;
    let new_path = hba.with_extension("conf.kbwatch");
    let _ = std::fs::remove_file(&new_path);
    let file = create_new(&new_path, text)?;
    std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&new_path, hba))
        .map_err(|e| EmbeddedPgError::io(what(), e))
}

/// 48 hex digits from the OS's random source.
fn new_password() -> String {
    use rand::Rng as _;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `path` (0600; an existing file or symbolic link there is an error) holding `text`.
fn create_new(path: &Path, text: &str) -> Result<File, EmbeddedPgError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EmbeddedPgError::io(format!("creating {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| EmbeddedPgError::io(format!("writing {}", path.display()), e))?;
    Ok(file)
}
