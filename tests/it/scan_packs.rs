//! Packed scans (migration 0014): once a run has ended its good scans move into packs of up to
//! 1,000 devices, and every `reporting` view gives the rows it gave with every scan a
//! `device_scan` row, to the microsecond. Failed and not-found scans stay rows; a running run is
//! not packed; a scan written again after its run was packed is not counted twice. About the
//! packs themselves, so it reads `kbwatch.scan_pack` and `kbwatch.device_scan`. Since migration
//! 0022 a pack keeps its device ids as deltas; packs written before read the same after it.

use kbwatch::model::{DeviceOutcome, DeviceResult, RunStatus};
use kbwatch::sim::{DeviceFault, Evolution, Faults, SimConfig};
use kbwatch::store::MIGRATOR;
use sqlx::PgPool;

use crate::kit::internal::packed_and_unpacked;
use crate::kit::{Auth, Tenant, fresh_database, spawn_app};

/// (packs, packed scans, device_scan rows by outcome) of run `run`.
async fn stored(pool: &PgPool, run: i64) -> (i64, i64, Vec<(String, i64)>) {
    let (packs, scans): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(cardinality(device_id_deltas)), 0)::int8
         FROM kbwatch.scan_pack WHERE scan_run_id = $1",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap();
    let rows = sqlx::query_as(
        "SELECT outcome, count(*) FROM kbwatch.device_scan WHERE scan_run_id = $1
         GROUP BY outcome ORDER BY outcome",
    )
    .bind(run)
    .fetch_all(pool)
    .await
    .unwrap();
    (packs, scans, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_scans_read_as_the_rows_they_were() {
    let sim = SimConfig { devices: 2_300, faults: Faults::default(), ..SimConfig::default() };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(8)).await;
    let pool = app.pool();
    let ids = app.sim.device_ids();
    app.sim.set_device_fault(&ids[7], Some(DeviceFault::ServerError));
    app.sim.set_device_fault(&ids[8], Some(DeviceFault::AlwaysNotFound));
    let first = app.scan().await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    assert_eq!((first.devices.ok, first.devices.failed, first.devices.not_found), (2_298, 1, 1));
    // Three packs of up to 1,000 devices; the failed and the not-found scans stay rows.
    let rows = vec![("failed".to_owned(), 1), ("not_found".to_owned(), 1)];
    assert_eq!(stored(pool, first.scan_run_id).await, (3, 2_298, rows));

    app.sim.evolve(Evolution {
        install_updates: 0.4,
        new_monthly_kb: true,
        ..Evolution::default()
    });
    let second = app.scan().await;
    assert_eq!(second.status, RunStatus::Completed, "{second:?}");
    let (packed, unpacked) = packed_and_unpacked(pool).await;
    assert!(packed.len() > 2 * 2_300, "{} rows", packed.len());
    assert!(packed == unpacked, "the views read the same packed and unpacked");

    // A run still running is not packed; once ended, it is.
    let tenant: i32 =
        sqlx::query_scalar("SELECT tenant_id FROM kbwatch.tenant").fetch_one(pool).await.unwrap();
    let running = app.store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let device: i64 = sqlx::query_scalar("SELECT min(device_id) FROM kbwatch.device")
        .fetch_one(pool)
        .await
        .unwrap();
    let result = DeviceResult {
        device_id: device,
        scanned_at: chrono::Utc::now(),
        last_seen: None,
        first_scan: false,
        outcome: DeviceOutcome::Ok(Vec::new()),
    };
    app.store.write_results(running, std::slice::from_ref(&result), &[], 1, 0).await.unwrap();
    assert_eq!(app.store.pack_scans(tenant).await.unwrap(), 0, "a running run is not packed");
    sqlx::query("UPDATE kbwatch.scan_run SET status = 'interrupted' WHERE scan_run_id = $1")
        .bind(running)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(app.store.pack_scans(tenant).await.unwrap(), 1);
    assert_eq!(stored(pool, running).await, (1, 1, vec![]));

    // The same scan written again after its run was packed (a batch retried late) is a repeat:
    // the scan packed first is kept, as device_scan's key kept it.
    let again =
        DeviceResult { scanned_at: result.scanned_at + chrono::Duration::seconds(5), ..result };
    let before = packed_and_unpacked(pool).await.0;
    app.store.write_results(running, &[again], &[], 1, 0).await.unwrap();
    assert_eq!(app.store.pack_scans(tenant).await.unwrap(), 0);
    assert_eq!(stored(pool, running).await, (1, 1, vec![]));
    let history = "SELECT count(*) FROM reporting.device_history WHERE scan_run_id = $1";
    let scans: i64 = sqlx::query_scalar(history).bind(running).fetch_one(pool).await.unwrap();
    assert_eq!(scans, 1);
    let after = packed_and_unpacked(pool).await.0;
    let differ = |a: &[String], b: &[String]| a.iter().filter(|r| !b.contains(r)).count();
    // Only the run's counters moved (reporting.scan_runs): one more device, one more call.
    assert_eq!((differ(&before, &after), differ(&after, &before)), (1, 1));
}

/// Every packed scan, in order, as text.
async fn packed_scans(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT (device_id, scan_run_id, scanned_at, missing_kbs, cve_addressed_total, device_lo,
                 device_hi, scanned_from, scanned_to, source)::text
         FROM kbwatch.packed_scan ORDER BY scan_run_id, device_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn packs_written_before_their_ids_were_deltas_read_the_same() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    MIGRATOR.run_to(21, &pool).await.expect("migrations up to 0021 apply");
    // 2,600 devices, a scan of all but every seventh (holes in the packs' ids), at times a few
    // microseconds apart, packed by 0021's pack_scans: three packs of ids as such.
    let statements = [
        "INSERT INTO kbwatch.tenant (name) VALUES ('t')",
        "INSERT INTO kbwatch.scan_run (tenant_id, trigger, started_at, finished_at, status)
         SELECT tenant_id, 'manual', now() - interval '1 hour', now(), 'completed'
         FROM kbwatch.tenant",
        "INSERT INTO kbwatch.device (tenant_id, machine_id, id_valid, raw, first_listed_at,
                                     last_listed_at, last_listed_run_id)
         SELECT r.tenant_id, md5(i::text) || substr(md5(i::text), 1, 8), true, '{}', now(),
                now(), r.scan_run_id
         FROM kbwatch.scan_run r, generate_series(1, 2600) i",
        "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome,
                                          missing_kbs, cve_addressed_total)
         SELECT d.device_id, r.scan_run_id,
                r.started_at + (d.device_id * 7919 % 3000000) * interval '1 microsecond', 'ok',
                (d.device_id % 5)::int4, d.device_id % 11 * 3
         FROM kbwatch.device d, kbwatch.scan_run r
         WHERE d.device_id % 7 <> 3",
        "SELECT kbwatch.pack_scans(scan_run_id) FROM kbwatch.scan_run",
    ];
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let before = packed_scans(&pool).await;
    assert_eq!(before.len(), 2_600 - 2_600 / 7 - 1, "every scan but every seventh device's");

    MIGRATOR.run(&pool).await.expect("the later migrations apply");
    assert_eq!(packed_scans(&pool).await, before);
    let (packs, first_is_lo): (i64, bool) = sqlx::query_as(
        "SELECT count(*), bool_and(device_id_deltas[1] = device_lo) FROM kbwatch.scan_pack",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((packs, first_is_lo), (3, true));
    // A packed device is still not deleted; one in a hole is.
    let delete = "DELETE FROM kbwatch.device WHERE device_id = $1";
    let refused = sqlx::query(delete).bind(5_i64).execute(&pool).await.unwrap_err();
    let code = refused.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("23503"), "{refused}");
    sqlx::query(delete).bind(3_i64).execute(&pool).await.expect("a device in no pack goes");
}

#[tokio::test]
async fn deltas_decode_to_their_ids_and_answer_membership_exactly() {
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    MIGRATOR.run(&pool).await.expect("migrations apply");
    let cases: [&[i64]; 4] = [&[], &[42], &[7, 8, 9, 12, 13, 40, 41], &[1, 1_000_000_000_000]];
    for ids in cases {
        let (deltas, decoded): (Vec<i64>, Vec<i64>) = sqlx::query_as(
            "SELECT kbwatch.delta_encode($1), kbwatch.delta_decode(kbwatch.delta_encode($1))",
        )
        .bind(ids)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(decoded, ids, "deltas {deltas:?}");
        // Every id from below the first to above the last: in the pack exactly when listed.
        let (lo, hi) = (ids.first().map_or(0, |f| f - 2), ids.last().map_or(0, |l| l + 2));
        let probes: Vec<i64> = (lo..=hi.min(lo + 60)).chain(ids.iter().copied()).collect();
        let contained: Vec<bool> = sqlx::query_scalar(
            "SELECT kbwatch.delta_contains(kbwatch.delta_encode($1), p)
             FROM unnest($2::int8[]) WITH ORDINALITY AS u(p, i) ORDER BY i",
        )
        .bind(ids)
        .bind(&probes)
        .fetch_all(&pool)
        .await
        .unwrap();
        let expected: Vec<bool> = probes.iter().map(|p| ids.contains(p)).collect();
        assert_eq!(contained, expected, "ids {ids:?}, probes {probes:?}");
    }
}
