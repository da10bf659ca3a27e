//! Tests of a real cluster: start, attach, restart, stop, concurrent starts, the password a
//! cluster gets, and the helpers the other test modules share to make and clean up state
//! directories. What needs no server is tested in `setup_tests`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::binaries::Runner;
use super::*;

/// A fresh state directory under the temp dir, traversable by the `postgres` user when we are root.
pub(super) fn fresh_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kbwatch-pg-")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Stops the cluster with `pg_ctl stop -m immediate` when a test ends early, so that a failed test does
/// not leave a server running on a deleted directory.
pub(super) struct KillOnDrop {
    data: PathBuf,
    runner: Runner,
}

impl KillOnDrop {
    pub(super) fn new(dir: &Path) -> KillOnDrop {
        KillOnDrop {
            data: dir.join("data"),
            runner: Runner::discover().expect("PostgreSQL binaries"),
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self
            .runner
            .std_command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w"])
            .output();
    }
}

pub(super) async fn select_one(url: &str) -> Result<i32, sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    pool.close().await;
    Ok(one)
}

/// Whether a single connection attempt succeeds (a pool would retry until its acquire timeout).
pub(super) async fn can_connect(url: &str) -> bool {
    match PgConnection::connect(url).await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn start_attach_restart_stop() {
    let dir = fresh_dir();
    let _guard = KillOnDrop::new(dir.path());

    let began = Instant::now();
    let pg = EmbeddedPg::start(dir.path()).await.expect("first start");
    eprintln!("init + start: {:?}", began.elapsed());
    assert!(pg.started_here());
    let port = pg.port();
    assert_eq!(pg.display_url("t1"), format!("postgres://postgres@127.0.0.1:{port}/t1"));
    assert!(pg.socket_dir().is_some());
    let password = std::fs::read_to_string(dir.path().join("postgres.password")).expect("password");
    assert_eq!(pg.url("t1"), format!("postgres://postgres:{password}@127.0.0.1:{port}/t1"));
    let mode =
        std::fs::metadata(dir.path().join("postgres.password")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the password file is private");
    assert!(!dir.path().join("initdb.pwfile").exists(), "initdb's copy is removed");
    let debug = format!("{pg:?}");
    assert!(!debug.contains(password.trim()), "Debug hides the password: {debug}");

    pg.ensure_database("t1").await.expect("create t1");
    assert!(
        !can_connect(&pg.display_url("t1")).await,
        "TCP without the password is refused (other local users cannot log in)"
    );
    pg.ensure_database("t1").await.expect("t1 again");
    assert_eq!(select_one(&pg.url("t1")).await.expect("SELECT 1"), 1);

    // A second start on the same directory attaches.
    let began = Instant::now();
    let attached = EmbeddedPg::start(dir.path()).await.expect("second start");
    eprintln!("attach: {:?}", began.elapsed());
    assert!(!attached.started_here());
    assert_eq!(attached.port(), port);
    attached.stop().await.expect("stop of an attached handle");
    assert_eq!(select_one(&pg.url("t1")).await.expect("still running"), 1);

    // Stop and restart: same port, data kept.
    pg.stop_server().await.expect("stop_server");
    assert!(!can_connect(&pg.url("t1")).await, "stopped");
    pg.stop_server().await.expect("stop_server when stopped");
    let began = Instant::now();
    pg.restart_server().await.expect("restart_server");
    eprintln!("restart: {:?}", began.elapsed());
    assert_eq!(pg.port(), port);
    assert!(pg.started_here());
    assert_eq!(select_one(&pg.url("t1")).await.expect("after restart"), 1);

    // A restart whose port was taken meanwhile moves to another one.
    pg.stop_server().await.expect("stop_server");
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take the port");
    pg.restart_server().await.expect("restart on a taken port");
    assert_ne!(pg.port(), port);
    assert_eq!(select_one(&pg.url("t1")).await.expect("on the new port"), 1);
    drop(squatter);

    let url = pg.url("t1");
    pg.stop().await.expect("stop");
    assert!(!can_connect(&url).await, "stopped at the end");
}

#[tokio::test]
async fn concurrent_starts_share_one_server() {
    let dir = fresh_dir();
    let _guard = KillOnDrop::new(dir.path());

    let (a, b) = tokio::join!(EmbeddedPg::start(dir.path()), EmbeddedPg::start(dir.path()));
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    assert_ne!(a.started_here(), b.started_here(), "exactly one starts it");
    assert_eq!(a.port(), b.port());

    let (x, y) = tokio::join!(a.ensure_database("same"), b.ensure_database("same"));
    x.expect("ensure a");
    y.expect("ensure b");
    assert_eq!(select_one(&a.url("same")).await.expect("SELECT 1"), 1);

    let (starter, other) = if a.started_here() { (a, b) } else { (b, a) };
    other.stop().await.expect("stop the attached handle");
    starter.stop().await.expect("stop the starter");
}

#[tokio::test]
async fn root_needs_a_directory_postgres_can_reach() {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let dir = fresh_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let err = EmbeddedPg::start(&dir.path().join("state"))
        .await
        .expect_err("postgres cannot traverse a 0700 root directory");
    assert!(matches!(err, EmbeddedPgError::NotReachable { .. }), "unexpected error: {err}");
    eprintln!("{err}");
}

/// A cluster made before kbwatch set a password (initdb --auth-host=trust, no postgres.password)
/// gets one at its next start, and TCP logins then need it.
#[tokio::test]
async fn a_cluster_that_trusted_tcp_gets_a_password() {
    let dir = fresh_dir();
    let _guard = KillOnDrop::new(dir.path());
    let runner = Runner::discover().expect("PostgreSQL binaries");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir data");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    if let Some(user) = &runner.as_user {
        std::os::unix::fs::chown(&data, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .expect("chown");
    }
    let old_way = runner
        .std_command("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-E", "UTF8", "--locale=C"])
        .args(["--auth-local=trust", "--auth-host=trust"])
        .output()
        .expect("initdb runs");
    assert!(old_way.status.success(), "initdb: {old_way:?}");

    let pg = EmbeddedPg::start(dir.path()).await.expect("start upgrades the cluster");
    assert!(dir.path().join("postgres.password").exists(), "a password is kept");
    assert!(!can_connect(&pg.display_url("postgres")).await, "TCP without a password is refused");
    assert_eq!(select_one(&pg.url("postgres")).await.expect("with the password"), 1);
    let hba = std::fs::read_to_string(data.join("pg_hba.conf")).expect("pg_hba.conf");
    assert_eq!(password::without_host_trust(&hba), None, "no host line trusts: {hba}");

    // After a restart the password still holds, and still works.
    pg.stop().await.expect("stop");
    let pg = EmbeddedPg::start(dir.path()).await.expect("second start");
    assert!(!can_connect(&pg.display_url("postgres")).await, "still refused");
    assert_eq!(select_one(&pg.url("postgres")).await.expect("with the password"), 1);
    pg.stop().await.expect("stop");
}

/// The daemon spawns these on a multi-threaded runtime.
#[test]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<EmbeddedPg>();
    let dir = Path::new("unused");
    send(&EmbeddedPg::start(dir));
    let pg: Option<&EmbeddedPg> = None;
    if let Some(pg) = pg {
        send(&pg.ensure_database("x"));
        send(&pg.stop_server());
        send(&pg.restart_server());
    }
}
