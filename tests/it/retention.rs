//! `[retention]` (`store::retention`, migration 0012): a pass drops the history older than its
//! cutoff, every `reporting` view stays exact for the days kept, a second pass the same day does
//! nothing, and `kbwatch scan` runs one when `retention.keep_days` is set. About what is gone, so
//! it also counts rows of the `kbwatch` tables.

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use kbwatch::model::{DeviceOutcome, DeviceResult, MissingKb, RunStatus};
use kbwatch::sim::Evolution;
use kbwatch::store::{Dropped, Retention, RunEnd, Store};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::kit::db::fixture_device;
use crate::kit::internal::{self, pack_scans, redo_fleet_days};
use crate::kit::{Auth, Kbwatch, Tenant, fixture_store, fleet, spawn_app, wait_for};

/// What a device's scan of one day saw.
enum Seen {
    Ok(&'static [(&'static str, i32)]),
    Failed,
    Unscanned,
}

/// The history, by device and days ago (10 to 0): KBs that appear, get fixed (`1` fixes 5001 on
/// the first day kept, 5; `2` and `8` fix 5003 in the run across the cutoff, before and after it)
/// and change their cveAddressed; failed scans; a device gone 7 days ago
/// (`3`), one gone 2 days ago (`8`), one gone 4 days ago but last scanned 7 days ago (`9`); one
/// whose scans fail since 6 days ago (`5`), one not scanned since 6 days ago (`6`) and one first
/// scanned 2 days ago (`7`).
fn seen(device: char, n: i64) -> Seen {
    use Seen::*;
    match (device, n) {
        ('1', 6..) => Ok(&[("5001", 2), ("5002", 3), ("5004", 2)]),
        ('1', 5) => Ok(&[("5002", 3), ("5004", 2)]),
        ('1', 4) => Ok(&[("5002", 3), ("5003", 4), ("5004", 2)]),
        ('1', 3) => Ok(&[("5002", 3), ("5003", 4), ("5004", 5)]),
        ('1', _) => Ok(&[("5002", 3), ("5004", 5)]),
        ('2', 3 | 8) => Failed,
        ('2', 7..) => Ok(&[("5001", 2), ("5003", 4)]),
        ('2', 5..=6) => Ok(&[("5001", 2), ("5005", 1)]),
        ('2', _) => Ok(&[("5005", 1)]),
        ('3', 9..) => Ok(&[("5001", 2), ("5002", 3)]),
        ('3', 8) => Ok(&[("5001", 2)]),
        ('5', 7..) => Ok(&[("5002", 3)]),
        ('5', _) => Failed,
        ('6', 6..) => Ok(&[("5006", 1)]),
        ('7', 2) => Ok(&[("5003", 4), ("5006", 1)]),
        ('7', 0..=1) => Ok(&[("5006", 1)]),
        ('8', 7..) => Ok(&[("5001", 2), ("5003", 4)]),
        ('8', 5..=6) => Ok(&[("5001", 2)]),
        ('8', 3..=4) => Ok(&[]),
        ('9', 7..) => Ok(&[("5001", 2)]),
        _ => Unscanned,
    }
}

const DEVICES: [char; 8] = ['1', '2', '3', '5', '6', '7', '8', '9'];

fn midnight(days_ago: i64) -> DateTime<Utc> {
    (Utc::now().date_naive() - Duration::days(days_ago)).and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn kb(id: &str, cve: i32) -> MissingKb {
    MissingKb {
        id: id.into(),
        name: Some(format!("Update {id}")),
        products_names: None,
        url: None,
        machine_missed_on: Some(1),
        cve_addressed: Some(cve),
    }
}

/// A run of `status` started at `at`, closed half an hour later.
async fn run_at(store: &Store, tenant: i32, at: DateTime<Utc>, status: RunStatus) -> i64 {
    let run = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let end = RunEnd { status, api_calls: 1, throttled: 0, effective_per_minute: 1, error: None };
    if status != RunStatus::Running {
        store.finish_run(run, &end).await.unwrap();
    }
    sqlx::query(
        "UPDATE kbwatch.scan_run SET started_at = $2,
             finished_at = CASE WHEN finished_at IS NOT NULL THEN $2 + interval '30 minutes' END
         WHERE scan_run_id = $1",
    )
    .bind(run)
    .bind(at)
    .execute(store.pool())
    .await
    .unwrap();
    run
}

/// Writes the history of [`seen`]; the runs, 10 days ago first.
async fn write_history(store: &Store, tenant: i32) -> Vec<i64> {
    let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    // Six days ago's run starts 4 minutes before midnight: its first three scans are before the
    // cutoff of a five-day retention, the others after it.
    let start = |n: i64| match n {
        6 => midnight(5) - Duration::minutes(4),
        _ => (midnight(n) + Duration::hours(6)).min(now - Duration::minutes(10)),
    };
    let mut runs = vec![run_at(store, tenant, start(10), RunStatus::Completed).await];
    let mut ids = Vec::new();
    for digit in DEVICES {
        ids.push(fixture_device(store, tenant, runs[0], digit).await);
    }
    let catalogue: Vec<MissingKb> = (1..=6).map(|i| kb(&format!("500{i}"), i)).collect::<Vec<_>>();
    for n in (0..=10).rev() {
        if n < 10 {
            runs.push(run_at(store, tenant, start(n), RunStatus::Completed).await);
        }
        let mut results = Vec::new();
        for (i, (&digit, &device_id)) in DEVICES.iter().zip(&ids).enumerate() {
            let outcome = match seen(digit, n) {
                Seen::Ok(kbs) => DeviceOutcome::Ok(kbs.iter().map(|(id, c)| kb(id, *c)).collect()),
                Seen::Failed => DeviceOutcome::Failed("HTTP 503".into()),
                Seen::Unscanned => continue,
            };
            let first_scan = n == 10 || matches!(seen(digit, n + 1), Seen::Unscanned);
            let scanned_at = start(n) + Duration::minutes(i as i64 + 1);
            results.push(DeviceResult {
                device_id,
                scanned_at,
                last_seen: None,
                first_scan,
                outcome,
            });
        }
        store.write_results(*runs.last().unwrap(), &results, &catalogue, 1, 0).await.unwrap();
    }
    // A run that failed 8 days ago and one left running 9 days ago by a process that died.
    run_at(store, tenant, start(8) + Duration::hours(2), RunStatus::Failed).await;
    run_at(store, tenant, start(9) + Duration::hours(2), RunStatus::Running).await;
    // The listings: `3` gone 7 days ago, `9` 4 days ago, `8` 2 days ago, the others in today's.
    sqlx::query(
        "UPDATE kbwatch.device d SET last_listed_run_id = v.run, gone_at = v.gone
         FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS v(device_id, run, gone)
         WHERE d.device_id = v.device_id",
    )
    .bind(&ids)
    .bind(vec![runs[10], runs[10], runs[2], runs[10], runs[10], runs[10], runs[7], runs[5]])
    .bind(vec![None, None, Some(start(7)), None, None, None, Some(start(2)), Some(start(4))])
    .execute(store.pool())
    .await
    .unwrap();
    redo_fleet_days(store.pool()).await;
    runs
}

/// Each view's rows kept by retention, given the cutoff as `$1`.
const KEPT: [(&str, &str); 7] = [
    ("device_history", "scanned_at >= $1"),
    ("missing_kb_snapshots", "scanned_at >= $1"),
    ("fleet_daily", "day >= ($1 AT TIME ZONE 'UTC')::date"),
    ("fleet_state_daily", "day >= ($1 AT TIME ZONE 'UTC')::date"),
    ("scan_runs", "started_at >= $1"),
    ("devices", "true"),
    ("current_missing_kbs", "true"),
];

/// `counts` (`$1` bound to `run`, `$2` to the cutoff of a five-day retention): a pair of counts.
async fn sides(pool: &PgPool, counts: &'static str, run: i64) -> (i64, i64) {
    sqlx::query_as(counts).bind(run).bind(midnight(5)).fetch_one(pool).await.unwrap()
}

/// Copies every view, and the intervals and devices, into the schema `pre`.
async fn snapshot(pool: &PgPool) {
    let mut sql = "CREATE SCHEMA pre;
         CREATE TABLE pre.kb_remediation AS SELECT * FROM reporting.kb_remediation;
         CREATE TABLE pre.missing_kb AS SELECT * FROM kbwatch.missing_kb_interval;
         CREATE TABLE pre.device AS SELECT * FROM kbwatch.device;"
        .to_owned();
    for (view, _) in KEPT {
        sql += &format!("CREATE TABLE pre.{view} AS SELECT * FROM reporting.{view};");
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await.unwrap();
}

/// (rows of `now`, rows in one of `now` and `then` but not the other), `$1` bound to `cutoff`.
async fn compare(pool: &PgPool, now: &str, then: &str, cutoff: DateTime<Utc>) -> (i64, i64) {
    let sql = format!(
        "SELECT (SELECT count(*) FROM ({now}) n),
                (SELECT count(*) FROM ((({now}) EXCEPT ALL ({then}))
                                       UNION ALL (({then}) EXCEPT ALL ({now}))) d)"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(cutoff).fetch_one(pool).await.unwrap()
}

/// `reporting.kb_remediation` over the intervals as they were before retention, counting only
/// the fixes on or after `$1`: the definition of migration 0009, on `pre`'s tables.
const REMEDIATION_KEPT: &str = "
    WITH fixed AS (
        SELECT d.tenant_id, m.kb_id, m.device_id,
               extract(epoch FROM (m.closed_at - m.opened_at)) / 86400.0 AS days
        FROM pre.missing_kb m JOIN pre.device d ON d.device_id = m.device_id
        WHERE m.closed_scan_run_id IS NOT NULL AND m.fixed AND m.closed_at >= $1
    ), open_now AS (
        SELECT d.tenant_id, m.kb_id, count(*) AS devices_missing_now
        FROM pre.missing_kb m JOIN pre.device d ON d.device_id = m.device_id
        WHERE m.closed_scan_run_id IS NULL AND d.gone_at IS NULL
        GROUP BY d.tenant_id, m.kb_id
    ), fixed_agg AS (
        SELECT tenant_id, kb_id, count(DISTINCT device_id) AS devices_remediated,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY days) AS median_days_to_remediate
        FROM fixed GROUP BY tenant_id, kb_id
    )
    SELECT t.name AS tenant, k.kb_id, k.name AS kb_name,
           coalesce(o.devices_missing_now, 0) AS devices_missing_now,
           coalesce(f.devices_remediated, 0) AS devices_remediated, f.median_days_to_remediate
    FROM (SELECT tenant_id, kb_id FROM open_now UNION SELECT tenant_id, kb_id FROM fixed_agg) tk
    JOIN kbwatch.tenant t ON t.tenant_id = tk.tenant_id
    JOIN kbwatch.kb k ON k.kb_id = tk.kb_id
    LEFT JOIN open_now o ON o.tenant_id = tk.tenant_id AND o.kb_id = tk.kb_id
    LEFT JOIN fixed_agg f ON f.tenant_id = tk.tenant_id AND f.kb_id = tk.kb_id";

/// The rows of the five tables retention drops from (the scans: rows and packed).
async fn counts(pool: &PgPool) -> [i64; 5] {
    let mut out = [0; 5];
    for (i, table) in
        ["device_scan", "missing_kb_interval", "device", "fleet_day", "scan_run"].iter().enumerate()
    {
        let sql = format!("SELECT count(*) FROM kbwatch.{table}");
        out[i] = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.unwrap();
    }
    let packed = "SELECT count(*) FROM kbwatch.packed_scan";
    out[0] += sqlx::query_scalar::<_, i64>(packed).fetch_one(pool).await.unwrap();
    out
}

fn dropped(outcome: Retention) -> Dropped {
    match outcome {
        Retention::Dropped(d) => d,
        other => panic!("expected a pass, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_is_exact_for_the_days_kept() {
    let (store, tenant) = fixture_store("retained").await;
    let pool = store.pool();
    let runs = write_history(&store, tenant).await;
    // Every ended run's good scans packed, as each scan packs its own (the failed stay rows).
    pack_scans(pool).await;
    snapshot(pool).await;
    let before = counts(pool).await;
    // Six days ago's pack, on both sides of the cutoff (scans before it, after it).
    let straddling = || {
        let scans = "SELECT count(*) FILTER (WHERE scanned_at < $2),
                            count(*) FILTER (WHERE scanned_at >= $2)
                     FROM kbwatch.packed_scan WHERE scan_run_id = $1";
        sides(pool, scans, runs[4])
    };
    assert_eq!(straddling().await, (2, 2), "`1` and `2` before, `6` and `8` after");
    // The intervals that run closed, packed: `2`'s before the cutoff, `8`'s after it.
    let closed_across = || {
        let intervals = "SELECT count(*) FILTER (WHERE closed_at < $2),
                                count(*) FILTER (WHERE closed_at >= $2)
                         FROM kbwatch.packed_interval WHERE closed_scan_run_id = $1";
        sides(pool, intervals, runs[4])
    };
    assert_eq!(closed_across().await, (1, 1), "`2`'s fix before the cutoff, `8`'s after");

    let d = dropped(store.drop_old_history(5, &CancellationToken::new()).await.unwrap());
    let cutoff = d.cutoff;
    assert_eq!(cutoff, midnight(5), "UTC midnight five days ago");
    assert!(d.finished, "{d:?}");
    assert_eq!(straddling().await, (0, 2), "the pack keeps the scans from the cutoff on");
    assert_eq!(closed_across().await, (0, 1), "the pack keeps the intervals closed since");

    for (view, kept) in KEPT {
        let now = format!("SELECT * FROM reporting.{view} WHERE {kept}");
        let then = format!("SELECT * FROM pre.{view} WHERE {kept}");
        let (rows, differ) = compare(pool, &now, &then, cutoff).await;
        assert!(rows > 0, "{view}: rows kept");
        assert_eq!(differ, 0, "{view}: rows that differ from before, over the days kept");
    }
    let (days, runs_kept): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM reporting.fleet_daily
                 WHERE day >= ($1 AT TIME ZONE 'UTC')::date),
                (SELECT count(*) FROM reporting.scan_runs WHERE started_at >= $1)",
    )
    .bind(cutoff)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!((days, runs_kept), (6, 6), "the days and runs of the last five days and today");

    // kb_remediation: the KBs missing now as before, the fixes of the days kept.
    let now = "SELECT * FROM reporting.kb_remediation";
    let (rows, differ) = compare(pool, now, REMEDIATION_KEPT, cutoff).await;
    assert_eq!((rows, differ), (6, 0), "kb_remediation over the fixes since the cutoff");
    let (_, dropped_fixes) = compare(pool, "SELECT * FROM pre.kb_remediation", now, cutoff).await;
    assert!(dropped_fixes > 0, "fixes before the cutoff counted before, and no longer");
    let missing_now = |schema: &str| {
        format!(
            "SELECT tenant, kb_id, devices_missing_now FROM {schema}.kb_remediation
             WHERE devices_missing_now > 0"
        )
    };
    let (rows, differ) =
        compare(pool, &missing_now("reporting"), &missing_now("pre"), cutoff).await;
    assert_eq!((rows, differ), (4, 0), "devices_missing_now");

    // What is older is gone (each device's last scan and last good scan stay in device_state:
    // `5` has failed since its good scan 7 days ago, `6` was last scanned 6 days ago, `9` 7 days
    // ago and went after the cutoff, and `reporting.devices` is as before), but for the runs kept
    // rows refer to: 10 days ago (intervals still open), 6 days ago (an interval it opened) and
    // the one left running.
    let old_scans: Vec<(String, i64)> = sqlx::query_as(
        "SELECT d.machine_id, s.scan_run_id FROM kbwatch.device_scan s
         JOIN kbwatch.device d USING (device_id) WHERE s.scanned_at < $1
         UNION ALL
         SELECT d.machine_id, s.scan_run_id FROM kbwatch.packed_scan s
         JOIN kbwatch.device d USING (device_id) WHERE s.scanned_at < $1 ORDER BY 1",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(old_scans, []);
    let old: (i64, i64, i64, i64, Vec<i64>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM kbwatch.missing_kb_interval WHERE closed_at < $1),
                (SELECT count(*) FROM kbwatch.device WHERE gone_at < $1),
                (SELECT count(*) FROM kbwatch.device),
                (SELECT count(*) FROM kbwatch.fleet_day WHERE day < ($1 AT TIME ZONE 'UTC')::date),
                (SELECT array_agg(scan_run_id ORDER BY scan_run_id) FROM kbwatch.scan_run
                 WHERE started_at < $1)",
    )
    .bind(cutoff)
    .fetch_one(pool)
    .await
    .unwrap();
    let running: i64 =
        sqlx::query_scalar("SELECT scan_run_id FROM kbwatch.scan_run WHERE status = 'running'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(old, (0, 0, 7, 0, vec![runs[0], runs[4], running]), "`9` is kept");

    // The pass counted what it dropped, and recorded it.
    let after = counts(pool).await;
    let counted = [d.device_scans, d.missing_kbs, d.devices, d.fleet_days, d.scan_runs];
    let gone: Vec<i64> = before.iter().zip(after).map(|(b, a)| b - a).collect();
    assert_eq!(counted.map(|n| n as i64).to_vec(), gone);
    assert_eq!(gone[2..], [1, 5, 4], "device `3`, days 10 to 6, runs of 9, 8 and 7 days ago");
    let recorded: (i64, bool) =
        sqlx::query_as("SELECT device_scans, finished_at IS NOT NULL FROM kbwatch.retention_pass")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(recorded, (gone[0], true));

    // Again the same day: nothing to do. While another session holds the lock: not now.
    let again = store.drop_old_history(5, &CancellationToken::new()).await.unwrap();
    assert_eq!(again, Retention::AlreadyDone);
    assert_eq!(counts(pool).await, after, "a second pass the same day is a no-op");
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(1801615204, -1)").execute(&mut *other).await.unwrap();
    let busy = store.drop_old_history(3, &CancellationToken::new()).await.unwrap();
    assert_eq!(busy, Retention::Busy);
    sqlx::query("SELECT pg_advisory_unlock(1801615204, -1)").execute(&mut *other).await.unwrap();

    // keep_days lowered: a later cutoff, another pass the same day, as exact.
    let d = dropped(store.drop_old_history(3, &CancellationToken::new()).await.unwrap());
    assert_eq!(d.cutoff, midnight(3));
    assert_eq!(d.devices, 1, "`9` goes now; `8` was scanned after the cutoff");
    assert!(d.device_scans > 0 && d.missing_kbs > 0, "{d:?}");
    for (view, kept) in KEPT {
        let now = format!("SELECT * FROM reporting.{view} WHERE {kept}");
        let (rows, differ) =
            compare(pool, &now, &now.replace("reporting.", "pre."), d.cutoff).await;
        assert!(
            rows > 0 && differ == 0,
            "{view} after a second cutoff: {rows} rows, {differ} differ"
        );
    }
}

/// Moves what run `run` wrote `days` days back: its times, its scans, the intervals it opened or
/// closed, and the devices its listing found gone.
async fn shift_run(pool: &PgPool, run: i64, days: i32) {
    internal::unpack_intervals(&mut pool.acquire().await.unwrap()).await;
    for sql in [
        "UPDATE kbwatch.device SET gone_at = gone_at - $2 * interval '1 day'
         WHERE gone_at BETWEEN (SELECT started_at FROM kbwatch.scan_run WHERE scan_run_id = $1)
                           AND (SELECT finished_at FROM kbwatch.scan_run WHERE scan_run_id = $1)",
        "UPDATE kbwatch.device_scan SET scanned_at = scanned_at - $2 * interval '1 day'
         WHERE scan_run_id = $1",
        "UPDATE kbwatch.scan_pack SET scanned_from = scanned_from - $2 * interval '1 day',
                                      scanned_to = scanned_to - $2 * interval '1 day'
         WHERE scan_run_id = $1",
        "UPDATE kbwatch.missing_kb SET opened_at = opened_at - $2 * interval '1 day'
         WHERE opened_scan_run_id = $1",
        "UPDATE kbwatch.missing_kb SET closed_at = closed_at - $2 * interval '1 day'
         WHERE closed_scan_run_id = $1",
        "UPDATE kbwatch.scan_run SET started_at = started_at - $2 * interval '1 day',
                                     finished_at = finished_at - $2 * interval '1 day'
         WHERE scan_run_id = $1",
    ] {
        sqlx::query(sql).bind(run).bind(days).execute(pool).await.unwrap();
    }
    internal::pack_scans(pool).await;
}

/// What is older than `cutoff`: scans, intervals closed, devices gone, rolled-up days, and runs
/// no interval refers to.
async fn older_than(pool: &PgPool, cutoff: DateTime<Utc>) -> [i64; 5] {
    let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM kbwatch.device_scan WHERE scanned_at < $1)
                + (SELECT count(*) FROM kbwatch.packed_scan WHERE scanned_at < $1),
                (SELECT count(*) FROM kbwatch.missing_kb_interval WHERE closed_at < $1),
                (SELECT count(*) FROM kbwatch.device WHERE gone_at < $1),
                (SELECT count(*) FROM kbwatch.fleet_day WHERE day < ($1 AT TIME ZONE 'UTC')::date),
                (SELECT count(*) FROM kbwatch.scan_run r
                 WHERE r.started_at < $1 AND NOT EXISTS (
                     SELECT 1 FROM kbwatch.missing_kb_interval m
                     WHERE r.scan_run_id IN (m.opened_scan_run_id, m.closed_scan_run_id)))",
    )
    .bind(cutoff)
    .fetch_one(pool)
    .await
    .unwrap();
    [row.0, row.1, row.2, row.3, row.4]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbwatch_scan_and_the_daemon_drop_what_is_older_than_keep_days() {
    let mut app = spawn_app(fleet(40), Auth::TokenFile, Tenant::default()).await;
    let pool = &app.pool().clone();
    let first = app.scan().await.scan_run_id;
    app.sim.evolve(Evolution {
        install_updates: 0.5,
        new_monthly_kb: true,
        offboard_devices: 2,
        ..Evolution::default()
    });
    let second = app.scan().await.scan_run_id;
    shift_run(pool, first, 10).await;
    shift_run(pool, second, 8).await;
    redo_fleet_days(pool).await;
    let cutoff = midnight(3);
    let old = older_than(pool, cutoff).await;
    assert!(old[..4].iter().all(|&n| n > 0), "history older than the cutoff: {old:?}");

    // The setting reaches the scan from the environment as from the file.
    let scan = Kbwatch::new(["scan"]).config(&app.config_file());
    let out = scan.env("KBWATCH_RETENTION__KEEP_DAYS", "3").output().await;
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stderr.contains("Dropped history older than the retention"), "{}", out.stderr);
    assert_eq!(older_than(pool, cutoff).await, [0; 5], "nothing older than the cutoff is left");

    // The daemon's scans run it too: keep_days lowered, another pass the same day.
    app.config.retention.keep_days = Some(2);
    let scheduler = app.start_scheduler("* * * * * *");
    let passes = || async {
        sqlx::query_scalar::<_, Vec<i32>>(
            "SELECT array_agg(keep_days ORDER BY retention_pass_id) FROM kbwatch.retention_pass
             WHERE finished_at IS NOT NULL",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    wait_for("a pass of the daemon", Duration::seconds(30).to_std().unwrap(), || async {
        passes().await.len() == 2
    })
    .await;
    scheduler.stop().await;
    assert_eq!(passes().await, [3, 2]);
}
