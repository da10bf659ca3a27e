//! Packed intervals (migration 0021): once a run has ended, the missing-KB intervals it closed
//! move into packs of up to 1,000, and every `reporting` view gives the rows it gave with every
//! interval a `missing_kb` row. Open intervals stay rows; a running run's are not packed; an
//! interval closed by a batch written after its run was packed joins that run's packs. About the
//! packs themselves, so it reads `kbwatch.interval_pack` and `kbwatch.missing_kb`.

use kbwatch::model::{DeviceOutcome, DeviceResult, RunStatus};
use kbwatch::sim::{Evolution, SimConfig};
use sqlx::PgPool;

use crate::kit::internal::packed_and_unpacked;
use crate::kit::reporting::triples;
use crate::kit::{Auth, Tenant, spawn_app};

/// (packs, packed intervals) of run `run`, and its closed intervals still rows.
async fn stored(pool: &PgPool, run: i64) -> (i64, i64, i64) {
    let (packs, intervals): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(cardinality(device_ids)), 0)::int8
         FROM kbwatch.interval_pack WHERE closed_scan_run_id = $1",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM kbwatch.missing_kb WHERE closed_scan_run_id = $1")
            .bind(run)
            .fetch_one(pool)
            .await
            .unwrap();
    (packs, intervals, rows)
}

/// The packs of run `run` that do not lie within one of its scan packs' device ranges.
async fn astray(pool: &PgPool, run: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM kbwatch.interval_pack q
         WHERE q.closed_scan_run_id = $1 AND NOT EXISTS (
             SELECT 1 FROM kbwatch.scan_pack p
             WHERE p.scan_run_id = q.closed_scan_run_id
               AND p.device_lo <= q.device_lo AND q.device_hi <= p.device_hi)",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_intervals_read_as_the_rows_they_were() {
    let sim = SimConfig { devices: 1_500, ..SimConfig::default() };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(8)).await;
    let pool = app.pool();
    let mut scans = Vec::new();
    for _ in 0..3 {
        let truth = app.sim.truth();
        let scan = app.scan().await;
        assert_eq!(scan.status, RunStatus::Completed, "{scan:?}");
        scans.push((scan.scan_run_id, truth));
        app.sim.evolve(Evolution {
            install_updates: 0.6,
            new_monthly_kb: true,
            ..Evolution::default()
        });
    }
    // The runs' closed intervals are packed, none left as rows: over a thousand in the second
    // and third runs, a pack for each of the run's two scan packs (1,000 and 500 devices).
    for (run, _) in &scans[1..] {
        let (packs, intervals, rows) = stored(pool, *run).await;
        assert!(intervals > 1_000, "run {run}: {intervals} intervals closed");
        assert_eq!((packs, rows), (2, 0), "run {run}: no closed interval left as a row");
        assert_eq!(astray(pool, *run).await, 0, "run {run}: packs follow the scan packs");
    }
    let open: (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE closed_scan_run_id IS NULL), count(*)
         FROM kbwatch.missing_kb",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(open.0 > 0 && open.0 == open.1, "only open intervals are rows: {open:?}");

    // Every past scan's snapshot is the truth of its time; every view reads as unpacked.
    for (run, truth) in &scans {
        assert_eq!(app.snapshot(*run).await, triples(truth), "run {run} rebuilt from packs");
    }
    let (packed, unpacked) = packed_and_unpacked(pool).await;
    assert!(packed.len() > 3 * 1_500, "{} rows", packed.len());
    assert!(packed == unpacked, "the views read the same packed and unpacked");

    // A running run's closed intervals stay rows; once it has ended, they are packed.
    let tenant: i32 =
        sqlx::query_scalar("SELECT tenant_id FROM kbwatch.tenant").fetch_one(pool).await.unwrap();
    let running = app.store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let missing: Vec<i64> = sqlx::query_scalar(
        "SELECT device_id FROM kbwatch.missing_kb GROUP BY device_id ORDER BY device_id LIMIT 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let fixed_all = |device_id| DeviceResult {
        device_id,
        scanned_at: chrono::Utc::now(),
        last_seen: None,
        first_scan: false,
        outcome: DeviceOutcome::Ok(Vec::new()),
    };
    app.store.write_results(running, &[fixed_all(missing[0])], &[], 1, 0).await.unwrap();
    assert_eq!(app.store.pack_intervals(tenant).await.unwrap(), 0, "a running run is not packed");
    let closed_first = stored(pool, running).await.2;
    assert!(closed_first > 0, "the device's intervals closed");
    sqlx::query("UPDATE kbwatch.scan_run SET status = 'interrupted' WHERE scan_run_id = $1")
        .bind(running)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(app.store.pack_scans(tenant).await.unwrap(), 1);
    assert_eq!(app.store.pack_intervals(tenant).await.unwrap(), closed_first);
    assert_eq!(stored(pool, running).await, (1, closed_first, 0));

    // A batch written after the run was packed closes more: packed again with the run's others.
    app.store.write_results(running, &[fixed_all(missing[1])], &[], 1, 0).await.unwrap();
    let closed_late = stored(pool, running).await.2;
    assert!(closed_late > 0, "the second device's intervals closed");
    let all = closed_first + closed_late;
    assert_eq!(app.store.pack_scans(tenant).await.unwrap(), 1, "a scan pack of its own");
    assert_eq!(app.store.pack_intervals(tenant).await.unwrap(), all);
    assert_eq!(stored(pool, running).await, (2, all, 0), "a pack per scan pack");
    assert_eq!(astray(pool, running).await, 0);
    let (packed, unpacked) = packed_and_unpacked(pool).await;
    assert!(packed == unpacked, "the views read the same packed and unpacked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_or_kb_a_pack_refers_to_is_not_deleted() {
    let sim = SimConfig { devices: 30, ..SimConfig::default() };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default()).await;
    let pool = app.pool();
    app.scan().await;
    app.sim.evolve(Evolution { install_updates: 1.0, ..Evolution::default() });
    app.scan().await;
    let (device, kb): (i64, String) =
        sqlx::query_as("SELECT device_id, kb_id FROM kbwatch.packed_interval LIMIT 1")
            .fetch_one(pool)
            .await
            .expect("an interval was packed");
    for (statement, key) in [
        ("DELETE FROM kbwatch.device WHERE device_id = $1::int8", device.to_string()),
        ("DELETE FROM kbwatch.kb WHERE kb_id = $1", kb),
    ] {
        // Everything else that refers to it goes first, in a transaction rolled back after.
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql(
            "DELETE FROM kbwatch.scan_pack; DELETE FROM kbwatch.device_scan;
             DELETE FROM kbwatch.missing_kb; DELETE FROM kbwatch.kb_fix_new;",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let err = sqlx::query(statement).bind(&key).execute(&mut *tx).await.expect_err(statement);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("23503"), "{err}");
        assert!(err.to_string().contains("interval_pack rows refer to it"), "{err}");
        tx.rollback().await.unwrap();
    }
}
