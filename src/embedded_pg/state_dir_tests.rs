//! Attacks on the state directory (issue 12, point 1), each refused with an error that names the
//! path, and nothing outside the state directory touched. Run as root (as here) they play the other
//! local user with `nobody`.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use super::tests::{KillOnDrop, can_connect, fresh_dir};
use super::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn give_to_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
}

/// Everything an attack could change about a file or directory outside the state directory.
#[derive(Debug, PartialEq)]
struct Snapshot {
    uid: u32,
    gid: u32,
    mode: u32,
    content: Vec<u8>,
    entries: Vec<std::ffi::OsString>,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = std::fs::symlink_metadata(path).expect("target exists");
    let (content, mut entries) = if meta.is_dir() {
        let names =
            std::fs::read_dir(path).expect("read_dir").map(|e| e.expect("entry").file_name());
        (Vec::new(), names.collect())
    } else {
        (std::fs::read(path).expect("read"), Vec::new())
    };
    entries.sort();
    Snapshot { uid: meta.uid(), gid: meta.gid(), mode: meta.mode(), content, entries }
}

/// A file and a directory outside any state directory, owned by `nobody` when we are root.
fn outside_targets() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let outside = tempfile::tempdir().expect("temp dir");
    let file = outside.path().join("precious.txt");
    std::fs::write(&file, "not kbwatch's\n").expect("write");
    chmod(&file, 0o644);
    let dir = outside.path().join("precious-dir");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o755);
    if is_root() {
        give_to_nobody(&file);
        give_to_nobody(&dir);
    }
    (outside, file, dir)
}

/// Starts a cluster in `dir`, which must be refused because of `path`.
async fn assert_refused(dir: &Path, path: &Path, fix: &str) {
    let _guard = KillOnDrop::new(dir);
    let err = EmbeddedPg::start(dir).await.expect_err("an unsafe state directory is refused");
    let message = err.to_string();
    eprintln!("{message}");
    match &err {
        EmbeddedPgError::Unsafe { path: refused, .. } => assert_eq!(refused, path, "{message}"),
        other => panic!("not an Unsafe error: {other}"),
    }
    assert!(message.contains(&path.display().to_string()), "names the path: {message}");
    assert!(message.contains(fix), "says how to fix it ({fix}): {message}");
}

#[tokio::test]
async fn a_state_dir_another_user_prepared_is_refused() {
    if !is_root() {
        return;
    }
    let root = fresh_dir();
    let (_outside, file, dir) = outside_targets();
    let (file_before, dir_before) = (snapshot(&file), snapshot(&dir));
    // Point 1: the other user makes the directory first, with an open socket directory and symbolic
    // links where kbwatch writes and chowns.
    let state = root.path().join("kbwatch-demo");
    std::fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o755);
    std::fs::create_dir(state.join("socket")).expect("mkdir socket");
    chmod(&state.join("socket"), 0o777);
    std::os::unix::fs::symlink(&file, state.join("postgres.lock")).expect("symlink");
    std::os::unix::fs::symlink(&dir, state.join("data")).expect("symlink");
    for path in [&state, &state.join("socket")] {
        give_to_nobody(path);
    }
    assert_refused(&state, &state, "chown").await;

    assert_eq!(snapshot(&file), file_before, "the symlinked file is untouched");
    assert_eq!(snapshot(&dir), dir_before, "the symlinked directory is untouched");
    assert_eq!(snapshot(&state).uid, NOBODY, "the directory is not taken over");
    assert_eq!(snapshot(&state.join("socket")).mode & 0o7777, 0o777, "nor its socket directory");
    assert_eq!(snapshot(&state).entries.len(), 3, "nothing is created in it");
}

#[tokio::test]
async fn a_state_dir_others_can_write_to_is_refused() {
    for mode in [0o777, 0o775, 0o757, 0o1777] {
        let root = fresh_dir();
        let state = root.path().join("state");
        std::fs::create_dir(&state).expect("mkdir");
        chmod(&state, mode);
        assert_refused(&state, &state, "chmod go-w").await;
        assert!(snapshot(&state).entries.is_empty(), "nothing is created in a {mode:o} directory");
    }
}

#[tokio::test]
async fn a_parent_another_user_controls_is_refused() {
    let root = fresh_dir();
    // Writable by all without the sticky bit: whoever can write there could swap the state directory.
    let open = root.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    assert_refused(&open.join("kbwatch/postgres"), &open, "choose a state directory").await;
    assert!(snapshot(&open).entries.is_empty(), "nothing is created in it");

    if is_root() {
        let theirs = root.path().join("theirs");
        std::fs::create_dir(&theirs).expect("mkdir");
        chmod(&theirs, 0o755);
        give_to_nobody(&theirs);
        assert_refused(&theirs.join("postgres"), &theirs, "choose a state directory").await;
        assert!(snapshot(&theirs).entries.is_empty(), "nothing is created in it");
    }

    // A sticky world-writable parent owned by root (like /tmp or /var/tmp) is fine: no one else can
    // rename what we create there, and one they made first is refused by its owner.
    let sticky = root.path().join("sticky");
    std::fs::create_dir(&sticky).expect("mkdir");
    chmod(&sticky, 0o1777);
    let made = prepare_state_dir(&sticky.join("a/b")).expect("created under a sticky directory");
    let expected = if is_root() { 0o755 } else { 0o700 };
    for path in [made.parent().expect("a"), made.as_path()] {
        let snap = snapshot(path);
        assert_eq!(snap.mode & 0o7777, expected, "{} has mode {:o}", path.display(), snap.mode);
        assert_eq!(snap.uid, nix::unistd::Uid::effective().as_raw());
    }
}

#[tokio::test]
async fn no_symbolic_link_in_the_state_dir_is_followed() {
    let entries = [
        ("postgres.lock", false),
        ("socket", true),
        ("data", true),
        ("postgres.log", false),
        ("postgres.log.old", false),
        ("postgres.port", false),
        ("postgres.password", false),
        ("initdb.pwfile", false),
    ];
    for (name, is_dir) in entries {
        let state = fresh_dir();
        let (_outside, file, dir) = outside_targets();
        let target = if is_dir { &dir } else { &file };
        let before = snapshot(target);
        let link = state.path().join(name);
        std::os::unix::fs::symlink(target, &link).expect("symlink");
        assert_refused(state.path(), &link, "remove it").await;
        assert_eq!(snapshot(target), before, "{name}: the target is untouched");
        let names = snapshot(state.path()).entries;
        assert!(names.iter().all(|n| n == name || n == "postgres.lock"), "{name}: {names:?}");
    }

    // The demo's files in its state directory are written the same way.
    let state = fresh_dir();
    let (_outside, file, _) = outside_targets();
    let before = snapshot(&file);
    let ca = state.path().join("demo-sim-ca.pem");
    std::os::unix::fs::symlink(&file, &ca).expect("symlink");
    crate::config::write_private(&ca, b"-----BEGIN CERTIFICATE-----\n")
        .expect_err("write_private follows no symbolic link");
    assert_eq!(snapshot(&file), before, "the demo CA's symlinked target is untouched");
}

/// `psql -c 'SELECT 1'` to the server as `uid`, over the socket or TCP, never prompting for a password.
fn psql_as(uid: u32, host: &Path, port: u16) -> std::process::Output {
    use std::os::unix::process::CommandExt as _;
    let bin = binaries::Runner::discover().expect("binaries").bin.join("psql");
    let psql = if bin.exists() { bin } else { PathBuf::from("/usr/bin/psql") };
    std::process::Command::new(psql)
        .uid(uid)
        .gid(uid)
        .current_dir("/")
        .env_remove("PGPASSWORD")
        .env("HOME", "/nonexistent")
        .args(["-X", "-w", "-At", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1", "-h"])
        .arg(host)
        .arg("-p")
        .arg(port.to_string())
        .output()
        .expect("psql runs")
}

#[tokio::test]
async fn the_socket_dir_is_private_at_every_start() {
    let state = fresh_dir();
    let _guard = KillOnDrop::new(state.path());
    let socket = state.path().join("socket");
    std::fs::create_dir(&socket).expect("mkdir");
    chmod(&socket, 0o777);

    let pg = EmbeddedPg::start(state.path()).await.expect("start");
    assert_eq!(snapshot(&socket).mode & 0o7777, 0o700, "reset at the first start");
    let runner = binaries::Runner::discover().expect("binaries");
    if let Some(user) = &runner.as_user {
        assert_eq!(snapshot(&socket).uid, user.uid.as_raw(), "the server's user owns it");
    }
    assert!(!can_connect(&pg.display_url("postgres")).await, "TCP needs the password");

    // Left open while the server runs: an attaching start closes it again.
    chmod(&socket, 0o777);
    let attached = EmbeddedPg::start(state.path()).await.expect("attach");
    assert!(!attached.started_here());
    assert_eq!(snapshot(&socket).mode & 0o7777, 0o700, "reset when attaching");

    if is_root() {
        let port = pg.port();
        let ours = psql_as(0, &socket, port);
        assert!(ours.status.success(), "the control login works: {ours:?}");
        assert_eq!(String::from_utf8_lossy(&ours.stdout).trim(), "1");
        let socket_login = psql_as(NOBODY, &socket, port);
        assert!(!socket_login.status.success(), "another user cannot use the socket");
        let stderr = String::from_utf8_lossy(&socket_login.stderr);
        assert!(stderr.contains("Permission denied"), "{stderr}");
        let tcp_login = psql_as(NOBODY, Path::new("127.0.0.1"), port);
        assert!(!tcp_login.status.success(), "nor TCP without the password");
        let stderr = String::from_utf8_lossy(&tcp_login.stderr);
        assert!(stderr.contains("password"), "{stderr}");
    }

    // Left open while the server is stopped: the next start closes it.
    pg.stop_server().await.expect("stop");
    chmod(&socket, 0o777);
    pg.restart_server().await.expect("restart");
    assert_eq!(snapshot(&socket).mode & 0o7777, 0o700, "reset at a restart");
    pg.stop().await.expect("stop");
}

/// As root in a checkout `postgres` cannot reach (a `mktemp -d` clone), the scratch cluster moves to
/// a directory under the system temp dir, which passes the same checks.
#[tokio::test]
async fn the_scratch_fallback_is_a_safe_state_dir() {
    if !is_root() {
        return;
    }
    let private = fresh_dir();
    chmod(private.path(), 0o700);
    let preferred = private.path().join("kbwatch-test-pg");
    let fallback = scratch_fallback(&preferred).expect("fallback path");
    let _guard = KillOnDrop::new(&fallback);
    let pg = EmbeddedPg::start_scratch(&preferred).await.expect("the scratch cluster starts");
    let snap = snapshot(&fallback);
    assert_eq!((snap.uid, snap.mode & 0o7777), (0, 0o755), "made by us, traversable, not writable");
    assert_eq!(pg.socket_dir(), Some(fallback.join("socket").as_path()));
    pg.stop().await.expect("stop");
    std::fs::remove_dir_all(&fallback).expect("remove the fallback");
}
