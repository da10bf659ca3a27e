//! The server's log: moved aside when large, handed to `postgres` before a start, and read back
//! (its tail) when a start fails.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::embedded_pg::binaries::PgUser;
use crate::embedded_pg::error::EmbeddedPgError;
use crate::embedded_pg::state_dir::{self, Layout};

/// A log larger than this is moved to `postgres.log.old` before the next start.
const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// Moves a large log aside, and as root creates the log owned by `postgres` (pg_ctl opens it as that user).
pub(super) fn prepare(layout: &Layout, user: Option<&PgUser>) -> Result<(), EmbeddedPgError> {
    if std::fs::symlink_metadata(&layout.log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        // rename replaces a symbolic link at the old name itself, never its target.
        std::fs::rename(&layout.log, &layout.old_log).map_err(|e| {
            EmbeddedPgError::io(format!("moving {} aside", layout.log.display()), e)
        })?;
    }
    if let Some(user) = user {
        let mut options = OpenOptions::new();
        options.append(true).create(true).mode(0o600);
        let log = state_dir::open(&layout.log, &mut options)?;
        state_dir::hand_over(&log, &layout.log, user.uid, user.gid)?;
    }
    Ok(())
}

/// What the log holds after `offset` (at most its last 64 KiB).
pub(super) fn since(log: &Path, offset: u64) -> String {
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
pub(super) fn tail(log: &Path, offset: u64) -> String {
    let text = since(log, offset);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    if tail.is_empty() { "(empty)".to_owned() } else { tail }
}
