//! The state directory is trusted with a superuser (DESIGN §7). kbwatch refuses one, or a directory
//! it would create it in, that another local user owns or could write to; follows no symbolic link
//! inside it; and creates nothing there at a path another user could have prepared.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use super::error::EmbeddedPgError;

/// `sizeof(sockaddr_un.sun_path)` on Linux, counting the final NUL.
const SUN_PATH_MAX: usize = 108;
/// The longest socket file name PostgreSQL puts in the socket directory, with its slash.
const SOCKET_FILE_MAX: &str = "/.s.PGSQL.65535";

/// The paths of one cluster, all directly in its state directory.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) dir: PathBuf,
    pub(super) data: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) log: PathBuf,
    pub(super) old_log: PathBuf,
    /// The superuser's password for TCP logins (0600, the kbwatch user's).
    pub(super) password: PathBuf,
    /// initdb's copy of the password, readable by the server's user; removed after initdb.
    pub(super) pwfile: PathBuf,
    pub(super) port_file: PathBuf,
    pub(super) lock_file: PathBuf,
}

impl Layout {
    pub(super) fn new(dir: &Path) -> Result<Layout, EmbeddedPgError> {
        let dir = std::path::absolute(dir)
            .map_err(|e| EmbeddedPgError::io(format!("resolving {}", dir.display()), e))?;
        Ok(Layout {
            data: dir.join("data"),
            socket: dir.join("socket"),
            log: dir.join("postgres.log"),
            old_log: dir.join("postgres.log.old"),
            password: dir.join("postgres.password"),
            pwfile: dir.join("initdb.pwfile"),
            port_file: dir.join("postgres.port"),
            lock_file: dir.join("postgres.lock"),
            dir,
        })
    }

    /// The superuser's password, when the cluster has one.
    pub(super) fn read_password(&self) -> Option<String> {
        let text = read_to_string(&self.password).ok()?;
        Some(text.trim().to_owned()).filter(|p| !p.is_empty())
    }

    /// Whether a socket in `socket` fits in `sun_path`; if not, the server listens on TCP only.
    pub(super) fn socket_usable(&self) -> bool {
        self.socket.as_os_str().len() + SOCKET_FILE_MAX.len() < SUN_PATH_MAX
    }

    /// Refuses a state directory that is not (or no longer) safe, and any entry of it that is a
    /// symbolic link, of the wrong type, or owned by someone other than us or `server_user`.
    pub(super) fn check(&self, server_user: Option<Uid>) -> Result<(), EmbeddedPgError> {
        check_own_dir(&self.dir)?;
        let dirs = [&self.data, &self.socket];
        let files = [
            &self.log,
            &self.old_log,
            &self.password,
            &self.pwfile,
            &self.port_file,
            &self.lock_file,
        ];
        let entries = dirs.iter().map(|p| (*p, true)).chain(files.iter().map(|p| (*p, false)));
        for (path, is_dir) in entries {
            let meta = match std::fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(EmbeddedPgError::io(format!("reading {}", path.display()), e));
                }
            };
            let kind = meta.file_type();
            if kind.is_symlink() {
                return Err(symlink_error(path));
            }
            if (is_dir && !kind.is_dir()) || (!is_dir && !kind.is_file()) {
                let want = if is_dir { "a directory" } else { "a regular file" };
                return Err(unsafe_path(path, format!("it is not {want}"), "remove it"));
            }
            if meta.uid() != euid() && Some(meta.uid()) != server_user.map(Uid::as_raw) {
                return Err(unsafe_path(
                    path,
                    format!("it is owned by another user (uid {})", meta.uid()),
                    "remove it, and check who else could write to the state directory",
                ));
            }
        }
        Ok(())
    }
}

/// Creates the state directory `dir` (and its missing parents) unless it exists, with mode 0700, or
/// 0755 as root (the `postgres` user must traverse it); returns its canonical path. Refuses (an
/// [`EmbeddedPgError::Unsafe`] naming the path and the fix) a state directory that is not ours or is
/// writable by group or others, and a parent owned by another user than us or root, or writable by
/// all without the sticky bit.
pub fn prepare_state_dir(dir: &Path) -> Result<PathBuf, EmbeddedPgError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| EmbeddedPgError::io(format!("resolving {}", dir.display()), e))?;
    let (existing, missing) = split_existing(&dir)?;
    let mut path = existing
        .canonicalize()
        .map_err(|e| EmbeddedPgError::io(format!("resolving {}", existing.display()), e))?;
    let skip_self = usize::from(missing.is_empty());
    for parent in path.ancestors().skip(skip_self) {
        check_parent(parent)?;
    }
    let mode = if Uid::effective().is_root() { 0o755 } else { 0o700 };
    for name in missing.iter().rev() {
        path.push(name);
        make_dir(&path, mode)?;
        check_own_dir(&path)?;
    }
    check_own_dir(&path)?;
    Ok(path)
}

/// The longest prefix of `dir` that exists, and the names below it that do not, deepest first.
fn split_existing(dir: &Path) -> Result<(&Path, Vec<&std::ffi::OsStr>), EmbeddedPgError> {
    let mut existing = dir;
    let mut missing = Vec::new();
    loop {
        match std::fs::symlink_metadata(existing) {
            Ok(_) => return Ok((existing, missing)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(EmbeddedPgError::io(format!("reading {}", existing.display()), e));
            }
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => {
                let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no existing parent");
                return Err(EmbeddedPgError::io(format!("resolving {}", dir.display()), e));
            }
        }
    }
}

/// A directory above the state directory: another user must not be able to replace what is in it.
fn check_parent(path: &Path) -> Result<(), EmbeddedPgError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| EmbeddedPgError::io(format!("reading {}", path.display()), e))?;
    const FIX: &str = "choose a state directory whose parents only you or root can write to, e.g. $XDG_STATE_HOME/kbwatch";
    if meta.uid() != 0 && meta.uid() != euid() {
        let problem = format!(
            "the state directory would be under it, and it is owned by another user (uid {})",
            meta.uid()
        );
        return Err(unsafe_path(path, problem, FIX));
    }
    if meta.mode() & 0o002 != 0 && meta.mode() & 0o1000 == 0 {
        let problem = "the state directory would be under it, and everyone can write to it (without the sticky bit)";
        return Err(unsafe_path(path, problem.to_owned(), FIX));
    }
    Ok(())
}

/// The state directory itself (or a directory we created on the way to it): a real directory, ours,
/// that no one else can write to.
fn check_own_dir(path: &Path) -> Result<(), EmbeddedPgError> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| EmbeddedPgError::io(format!("reading {}", path.display()), e))?;
    if meta.file_type().is_symlink() {
        return Err(symlink_error(path));
    }
    if !meta.is_dir() {
        return Err(unsafe_path(path, "it is not a directory".to_owned(), "choose another path"));
    }
    if meta.uid() != euid() {
        let problem = format!(
            "it is owned by uid {}, not by uid {} that kbwatch runs as",
            meta.uid(),
            euid()
        );
        let fix = format!(
            "use a directory of your own; if you made it and trust what is in it, `chown -R {} {}`",
            euid(),
            path.display()
        );
        return Err(unsafe_path(path, problem, &fix));
    }
    if meta.mode() & 0o022 != 0 {
        let problem =
            format!("group or others can write to it (mode {:04o})", meta.mode() & 0o7777);
        return Err(unsafe_path(path, problem, &format!("`chmod go-w {}`", path.display())));
    }
    Ok(())
}

/// Creates a directory with exactly `mode` (whatever the umask) if missing; returns whether it did.
/// An existing entry is left to the caller's checks: `mkdir` follows no symbolic link.
pub(super) fn make_dir(path: &Path, mode: u32) -> Result<bool, EmbeddedPgError> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            open_dir(path)?
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| EmbeddedPgError::io(format!("chmod {}", path.display()), e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(EmbeddedPgError::io(format!("creating {}", path.display()), e)),
    }
}

/// Opens a directory without following a symbolic link, for `fchmod` and `fchown`.
pub(super) fn open_dir(path: &Path) -> Result<File, EmbeddedPgError> {
    open_flags(path, OpenOptions::new().read(true), libc::O_DIRECTORY)
}

/// Opens `path` with `options` and `O_NOFOLLOW`; a symbolic link is an [`EmbeddedPgError::Unsafe`].
pub(super) fn open(path: &Path, options: &mut OpenOptions) -> Result<File, EmbeddedPgError> {
    open_flags(path, options, 0)
}

fn open_flags(path: &Path, options: &mut OpenOptions, flags: i32) -> Result<File, EmbeddedPgError> {
    options.custom_flags(libc::O_NOFOLLOW | flags).open(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            symlink_error(path)
        } else {
            EmbeddedPgError::io(format!("opening {}", path.display()), e)
        }
    })
}

/// Reads a file without following a symbolic link (nor blocking on a FIFO).
pub(super) fn read_to_string(path: &Path) -> std::io::Result<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Hands an open file or directory to `uid:gid` unless it is theirs already.
pub(super) fn hand_over(
    file: &File,
    path: &Path,
    uid: Uid,
    gid: Gid,
) -> Result<(), EmbeddedPgError> {
    let what = || format!("handing {} to the postgres user", path.display());
    let meta = file.metadata().map_err(|e| EmbeddedPgError::io(what(), e))?;
    if meta.uid() == uid.as_raw() && meta.gid() == gid.as_raw() {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(uid.as_raw()), Some(gid.as_raw()))
        .map_err(|e| EmbeddedPgError::io(what(), e))
}

fn euid() -> u32 {
    Uid::effective().as_raw()
}

fn symlink_error(path: &Path) -> EmbeddedPgError {
    unsafe_path(
        path,
        "it is a symbolic link, and kbwatch follows none in its state directory".to_owned(),
        "remove it",
    )
}

fn unsafe_path(path: &Path, problem: String, fix: &str) -> EmbeddedPgError {
    EmbeddedPgError::Unsafe { path: path.to_owned(), problem, fix: fix.to_owned() }
}
