//! The references of the fact tables and of device, checked per statement by triggers (migration 0004): rows that
//! refer to nothing, changed references and deletes of referenced rows are refused.
//!
//! About the internal tables themselves: every statement here names them.

use crate::kit::{Auth, Tenant, TestApp, fleet, internal, spawn_app};

/// The SQLSTATE `statement` fails with; it must fail.
async fn refused(app: &TestApp, statement: &'static str) -> String {
    let err = sqlx::query(statement).execute(app.store.pool()).await.expect_err(statement);
    err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fact_rows_refer_only_to_rows_that_exist() {
    let app = spawn_app(fleet(20), Auth::TokenFile, Tenant::default()).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.ok, 20, "{summary:?}");
    // A device only a pack refers to (migration 0014) is not deleted either.
    let device: i64 =
        sqlx::query_scalar("SELECT device_id FROM kbwatch.device ORDER BY device_id DESC LIMIT 1")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    let mut tx = app.store.pool().begin().await.unwrap();
    sqlx::query("DELETE FROM kbwatch.missing_kb WHERE device_id = $1")
        .bind(device)
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("DELETE FROM kbwatch.device WHERE device_id = $1")
        .bind(device)
        .execute(&mut *tx)
        .await
        .expect_err("a packed device is not deleted");
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23503"), "{err}");
    tx.rollback().await.unwrap();
    // The rest is about device_scan rows, as scans before packing are kept.
    internal::unpack_scans(&mut app.store.pool().acquire().await.unwrap()).await;
    let intervals = "SELECT count(*) FROM kbwatch.missing_kb";
    let before: i64 = sqlx::query_scalar(intervals).fetch_one(app.store.pool()).await.unwrap();
    assert!(before > 0, "the scan stored intervals");

    for statement in [
        // A statement with one orphan among good rows fails whole.
        "INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id, closed_scan_run_id)
         SELECT device_id, kb_id, 98, 99 FROM kbwatch.missing_kb
         UNION ALL SELECT device_id, 'KB-no-such', 1, NULL FROM kbwatch.device",
        "INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id)
         SELECT -1, kb_id, 1 FROM kbwatch.kb",
        "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome)
         SELECT device_id, 999999, now(), 'ok' FROM kbwatch.device",
        "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome)
         SELECT -1, scan_run_id, now(), 'ok' FROM kbwatch.scan_run",
        "INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, raw, first_listed_at,
                                     last_listed_at, last_listed_run_id)
         VALUES (-1, 'orphan', false, '{}', now(), now(), 1)",
        "UPDATE kbwatch.device SET tenant_id = -1",
        "UPDATE kbwatch.missing_kb SET kb_id = 'KB-other'",
        "UPDATE kbwatch.device_scan SET scan_run_id = scan_run_id + 1",
        "UPDATE kbwatch.kb SET kb_id = kb_id || '-renamed'",
        "DELETE FROM kbwatch.device",
        "DELETE FROM kbwatch.kb",
        "DELETE FROM kbwatch.scan_run",
    ] {
        assert_eq!(refused(&app, statement).await, "23503", "{statement}");
    }
    let err = sqlx::query(
        "INSERT INTO kbwatch.missing_kb (device_id, kb_id, opened_scan_run_id)
         SELECT device_id, 'KB-no-such', 1 FROM kbwatch.device LIMIT 1",
    )
    .execute(app.store.pool())
    .await
    .unwrap_err();
    assert!(err.to_string().contains("refers to kb kb_id = KB-no-such"), "names the orphan: {err}");
    let after: i64 = sqlx::query_scalar(intervals).fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(after, before, "nothing refused was written");

    // What refers to nothing may go: a KB no device misses, once its rows are gone.
    sqlx::query("INSERT INTO kbwatch.kb (kb_id, first_seen_at, last_seen_at) VALUES ('KB-unused', now(), now())")
        .execute(app.store.pool())
        .await
        .unwrap();
    let deleted = sqlx::query("DELETE FROM kbwatch.kb WHERE kb_id = 'KB-unused'")
        .execute(app.store.pool())
        .await
        .expect("an unreferenced KB is deleted");
    assert_eq!(deleted.rows_affected(), 1);
}

/// `device_state`'s reference to its device (migration 0019): an orphan state or a changed
/// device is refused, and a deleted device takes its state with it, as the foreign key did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_state_refers_to_its_device_and_goes_with_it() {
    let app = spawn_app(fleet(5), Auth::TokenFile, Tenant::default()).await;
    let summary = app.scan().await;
    assert_eq!(summary.devices.ok, 5, "{summary:?}");
    for statement in [
        "INSERT INTO kbwatch.device_state (device_id, scan_run_id, scanned_at, outcome)
         SELECT device_id + 1000000, scan_run_id, scanned_at, outcome FROM kbwatch.device_state",
        "UPDATE kbwatch.device_state SET device_id = device_id + 1000000",
    ] {
        assert_eq!(refused(&app, statement).await, "23503", "{statement}");
    }

    // A device listed but never scanned has a state only once written; one inserted here, with a
    // state, and deleted in one statement with another device that has none.
    let pool = app.store.pool();
    let (lone, bare): (i64, i64) = sqlx::query_as(
        "WITH t AS (SELECT tenant_id FROM kbwatch.tenant LIMIT 1),
              r AS (SELECT max(scan_run_id) AS run FROM kbwatch.scan_run),
              d AS (
                  INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, raw, first_listed_at,
                                              last_listed_at, last_listed_run_id)
                  SELECT t.tenant_id, m, true, '{}', now(), now(), r.run
                  FROM t, r, unnest(ARRAY['a1b2c3d4e5f60718293a4b5c6d7e8f9012345678',
                                          'b1b2c3d4e5f60718293a4b5c6d7e8f9012345678']) m
                  RETURNING device_id, machine_id)
         SELECT min(device_id), max(device_id) FROM d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO kbwatch.device_state (device_id, scan_run_id, scanned_at, outcome)
         SELECT $1, max(scan_run_id), now(), 'failed' FROM kbwatch.scan_run",
    )
    .bind(lone)
    .execute(pool)
    .await
    .expect("a state of a device that exists is written");
    let states = "SELECT count(*) FROM kbwatch.device_state";
    let before: i64 = sqlx::query_scalar(states).fetch_one(pool).await.unwrap();
    assert_eq!(before, 6);
    let deleted = sqlx::query("DELETE FROM kbwatch.device WHERE device_id IN ($1, $2)")
        .bind(lone)
        .bind(bare)
        .execute(pool)
        .await
        .expect("devices nothing else refers to are deleted");
    assert_eq!(deleted.rows_affected(), 2);
    let after: i64 = sqlx::query_scalar(states).fetch_one(pool).await.unwrap();
    assert_eq!(after, 5, "the deleted device's state went with it, and only its");
}
