//! Files that hold secrets: created readable and writable by their owner only, as
//! [`load`](super::load) requires of a config file with a secret in it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Creates or truncates `path` with mode 0600 and writes `contents` to it. An existing file keeps
/// the mode it has. A symbolic link at `path` is not followed: the write fails (`ELOOP`), so that
/// whoever could place one cannot make kbwatch write elsewhere.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .write_all(contents)
}
