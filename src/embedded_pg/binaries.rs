//! Finding the PostgreSQL server binaries and running them, as the `postgres` user when we are root.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};

use super::error::EmbeddedPgError;

/// The programs a usable binary directory must hold.
const REQUIRED: [&str; 3] = ["pg_ctl", "initdb", "postgres"];

/// Where the server binaries are, and which user runs them.
#[derive(Debug, Clone)]
pub(super) struct Runner {
    /// The directory holding `pg_ctl`, `initdb` and `postgres`.
    pub(super) bin: PathBuf,
    /// `Some` when we are root: the `postgres` user that runs the server.
    pub(super) as_user: Option<PgUser>,
}

/// The system user the server runs as when we are root.
#[derive(Debug, Clone)]
pub(super) struct PgUser {
    pub(super) uid: Uid,
    pub(super) gid: Gid,
    home: PathBuf,
}

impl Runner {
    /// Finds the binaries and, when root, the `postgres` user.
    pub(super) fn discover() -> Result<Runner, EmbeddedPgError> {
        let bin =
            find_bin_dir(std::env::var_os("PATH").as_deref(), Path::new("/usr/lib/postgresql"))
                .ok_or(EmbeddedPgError::NotInstalled)?;
        let as_user = if Uid::effective().is_root() {
            let user = User::from_name("postgres")
                .map_err(|e| {
                    EmbeddedPgError::io("looking up the `postgres` user", std::io::Error::from(e))
                })?
                .ok_or(EmbeddedPgError::NoPostgresUser)?;
            Some(PgUser { uid: user.uid, gid: user.gid, home: user.dir })
        } else {
            None
        };
        tracing::debug!(bin = %bin.display(), as_postgres_user = as_user.is_some(), "PostgreSQL binaries");
        Ok(Runner { bin, as_user })
    }

    /// A command running `program` (a name in the binary directory, or an absolute path) as the user that
    /// owns the cluster, in `/` (a directory that user can surely enter).
    ///
    /// As root this switches user in the child (setgid, setgroups(0), setuid: what std does when a uid is
    /// given), rather than through `runuser`, so that it needs no PAM session nor util-linux.
    pub(super) fn std_command(&self, program: &str) -> std::process::Command {
        let path =
            if program.starts_with('/') { PathBuf::from(program) } else { self.bin.join(program) };
        let mut cmd = std::process::Command::new(path);
        cmd.current_dir("/")
            .stdin(std::process::Stdio::null())
            // Messages we parse (and show) are the English ones.
            .env("LC_MESSAGES", "C");
        if let Some(user) = &self.as_user {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &user.home)
                .env("USER", "postgres")
                .env("LOGNAME", "postgres");
        }
        cmd
    }

    /// [`std_command`](Self::std_command) for tokio.
    pub(super) fn command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(self.std_command(program));
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs a command to completion; a non-zero exit is an [`EmbeddedPgError::Command`].
    pub(super) async fn run(
        &self,
        what: &str,
        mut cmd: tokio::process::Command,
    ) -> Result<std::process::Output, EmbeddedPgError> {
        let output =
            cmd.output().await.map_err(|e| EmbeddedPgError::io(format!("running {what}"), e))?;
        if !output.status.success() {
            return Err(EmbeddedPgError::Command {
                what: what.to_owned(),
                status: output.status,
                stderr: output_text(&output),
            });
        }
        Ok(output)
    }
}

/// Standard error then standard output of a finished command, trimmed.
pub(super) fn output_text(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    match (stderr.trim(), stdout.trim()) {
        ("", out) => out.to_owned(),
        (err, "") => err.to_owned(),
        (err, out) => format!("{err}\n{out}"),
    }
}

/// A directory on `path_env` holding `pg_ctl`, `initdb` and `postgres`; else the highest-numbered
/// `<lib_root>/*/bin` holding them (Debian's layout: /usr/lib/postgresql/15/bin).
pub(super) fn find_bin_dir(path_env: Option<&OsStr>, lib_root: &Path) -> Option<PathBuf> {
    if let Some(found) = path_env
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .find(|dir| has_server_binaries(dir))
    {
        return Some(found);
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(lib_root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = parse_version(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `15` → `[15]`, `9.6` → `[9, 6]`; `None` for names that are not versions.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn has_server_binaries(dir: &Path) -> bool {
    REQUIRED.iter().all(|name| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}
