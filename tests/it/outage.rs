//! PostgreSQL stopped for ten seconds in the middle of a scan: writes are retried and every
//! result the API returned is stored.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use kbwatch::embedded_pg::EmbeddedPg;
use kbwatch::model::RunStatus;

use crate::kit::reporting::{self, triples};
use crate::kit::{Auth, Tenant, slow_fleet, spawn_app_on, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_scan_loses_nothing() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pg = EmbeddedPg::start(&dir.path().join("pg")).await.expect("cluster starts");
    pg.ensure_database("outage").await.unwrap();
    let sim = slow_fleet(600, Duration::from_millis(20));
    let tenant = Tenant::default().unpaced().concurrency(4);
    let app = spawn_app_on(pg.url("outage"), sim, Auth::TokenFile, tenant).await;

    let (summary, ()) = tokio::join!(app.scan(), async {
        wait_for("100 devices stored", Duration::from_secs(60), || async {
            reporting::device_scans(app.pool()).await >= 100
        })
        .await;
        pg.stop_server().await.expect("server stops");
        tokio::time::sleep(Duration::from_secs(10)).await;
        pg.restart_server().await.expect("server restarts");
    });
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 600);
    let history = reporting::device_history(app.pool()).await;
    let ok = history.iter().filter(|s| s.outcome == "ok").count();
    assert_eq!(ok, 600, "every result the API returned is in the database");
    assert_eq!(app.current_missing().await, triples(&app.sim.truth()));
    drop(app);
    pg.stop_server().await.unwrap();
}
