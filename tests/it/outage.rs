//! PostgreSQL stopped for ten seconds in the middle of a scan: writes are retried and every
//! result the API returned is stored.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use kbwatch::embedded_pg::EmbeddedPg;
use kbwatch::model::RunStatus;
use kbwatch::sim::{Faults, SimConfig};

use crate::helpers::{Auth, spawn_app_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_scan_loses_nothing() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pg = EmbeddedPg::start(&dir.path().join("pg")).await.expect("cluster starts");
    pg.ensure_database("outage").await.unwrap();
    let faults = Faults { latency: Duration::from_millis(20), ..Faults::default() };
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 4\n";
    let app = spawn_app_on(
        pg.url("outage"),
        SimConfig { devices: 600, faults, ..SimConfig::default() },
        Auth::TokenFile,
        quota,
    )
    .await;

    let (summary, ()) = tokio::join!(app.scan(), async {
        loop {
            let stored: Result<i64, _> =
                sqlx::query_scalar("SELECT count(*) FROM kbwatch.device_scan")
                    .fetch_one(app.store.pool())
                    .await;
            if stored.is_ok_and(|n| n >= 100) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pg.stop_server().await.expect("server stops");
        tokio::time::sleep(Duration::from_secs(10)).await;
        pg.restart_server().await.expect("server restarts");
    });
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 600);
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM kbwatch.device_scan WHERE outcome = 'ok'")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(stored, 600, "every result the API returned is in the database");
    assert_eq!(app.current_missing().await, crate::helpers::triples(&app.sim.truth()));
    drop(app);
    pg.stop_server().await.unwrap();
}
