//! `reporting.fleet_daily` from rolled-up days (migration 0008): the same rows as the definition it
//! replaced (migration 0003's, below), whether days are rolled up or not, and a day is rolled up
//! only once no running run can still write into it (one whose scan holds the tenant's lock: an
//! orphan does not count, migration 0010). About the roll-up's own table, so it reads
//! `kbwatch.fleet_day` and `kbwatch.tenant`.

use chrono::{Duration, NaiveDate, Utc};
use kbwatch::sim::Evolution;
use sqlx::PgPool;

use crate::kit::internal::{pack_scans, redo_fleet_days, unpack_scans};
use crate::kit::reporting::assert_view_as_before;
use crate::kit::{Auth, Tenant, fleet, spawn_app};

/// `reporting.fleet_daily` as migration 0003 defined it.
const BEFORE: &str = "
    SELECT t.name AS tenant, y.day, y.devices_reporting, y.devices_missing_any,
           y.missing_kbs_total, y.cve_addressed_total
    FROM (
        SELECT d.tenant_id, x.day,
               count(*) AS devices_reporting,
               count(*) FILTER (WHERE x.missing_kbs > 0) AS devices_missing_any,
               sum(x.missing_kbs) AS missing_kbs_total,
               sum(x.cve_addressed_total) AS cve_addressed_total
        FROM (
            SELECT DISTINCT ON (s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date)
                   s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date AS day,
                   s.missing_kbs, s.cve_addressed_total
            FROM kbwatch.device_scan s
            WHERE s.outcome = 'ok'
            ORDER BY s.device_id, (s.scanned_at AT TIME ZONE 'UTC')::date, s.scanned_at DESC
        ) x
        JOIN kbwatch.device d USING (device_id)
        GROUP BY d.tenant_id, x.day
    ) y
    JOIN kbwatch.tenant t USING (tenant_id)";

/// The view's rows equal the old definition's, and there are `days` of them.
async fn assert_same_rows(pool: &PgPool, days: i64, when: &str) {
    assert_view_as_before(pool, "fleet_daily", BEFORE, days, when).await;
}

/// Moves run `run_id`'s device scans `days_ago` days back, to `hour`:00 UTC, device by device a
/// second apart.
async fn place(pool: &PgPool, run_id: i64, days_ago: i64, hour: u32) {
    let day = (Utc::now() - Duration::days(days_ago)).date_naive();
    let at = day.and_hms_opt(hour, 0, 0).unwrap().and_utc();
    let mut conn = pool.acquire().await.unwrap();
    unpack_scans(&mut conn).await;
    sqlx::query(
        "UPDATE kbwatch.device_scan SET scanned_at = $2 + (device_id % 60) * interval '1 second'
         WHERE scan_run_id = $1",
    )
    .bind(run_id)
    .bind(at)
    .execute(&mut *conn)
    .await
    .unwrap();
    pack_scans(pool).await;
}

async fn rolled_through(pool: &PgPool) -> (Option<NaiveDate>, Option<NaiveDate>) {
    sqlx::query_as(
        "SELECT (SELECT fleet_days_through FROM kbwatch.tenant),
                (SELECT max(day) FROM kbwatch.fleet_day)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_up_days_give_the_rows_of_the_definition_they_replaced() {
    let app = spawn_app(fleet(60), Auth::TokenFile, Tenant::default()).await;
    let pool = app.pool();
    // Four scans of a changing fleet: two on one day (the later one counts), one the next day,
    // one today.
    let mut runs = Vec::new();
    for _ in 0..4 {
        runs.push(app.scan().await.scan_run_id);
        app.sim.evolve(Evolution { install_updates: 0.3, ..Evolution::default() });
    }
    place(pool, runs[0], 3, 9).await;
    place(pool, runs[1], 3, 22).await;
    place(pool, runs[2], 2, 23).await;
    let today = Utc::now().date_naive();

    // Nothing rolled up: every day is computed.
    sqlx::raw_sql(
        "DELETE FROM kbwatch.fleet_day; UPDATE kbwatch.tenant SET fleet_days_through = NULL;",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_same_rows(pool, 3, "nothing rolled up").await;

    // Rolled up: the past days come from the roll-up, today is computed.
    redo_fleet_days(pool).await;
    let (through, last) = rolled_through(pool).await;
    assert!(through.is_some_and(|d| d < today), "rolled up through {through:?}");
    assert_eq!(last, Some(today - Duration::days(2)), "both past days are in the roll-up");
    assert_same_rows(pool, 3, "past days rolled up").await;

    // A run running since three days ago (its scan holds the tenant's lock): it could still
    // write into its days, so they are not rolled up, and the view computes them.
    let started = Utc::now() - Duration::days(3);
    let tenant: i32 = sqlx::query_scalar(
        "INSERT INTO kbwatch.scan_run (tenant_id, trigger, started_at)
         SELECT tenant_id, 'manual', $1 FROM kbwatch.tenant RETURNING tenant_id",
    )
    .bind(started)
    .fetch_one(pool)
    .await
    .unwrap();
    let scanning = app.store.try_lock_tenant(tenant).await.unwrap().expect("the lock is free");
    redo_fleet_days(pool).await;
    let (through, last) = rolled_through(pool).await;
    let blocked = (started - Duration::hours(1)).date_naive();
    assert!(through.is_some_and(|d| d < blocked), "rolled up through {through:?}");
    assert!(last.is_none_or(|d| d < blocked), "nothing from {blocked} on: {last:?}");
    assert_same_rows(pool, 3, "a run still running").await;

    // Such a run writes into a day not rolled up, and the view shows it at once.
    place(pool, runs[3], 3, 23).await;
    assert_same_rows(pool, 2, "a late write into a day not rolled up").await;

    // Left `running` by a process that died (no one holds the tenant's lock): it writes nothing
    // more and holds nothing back.
    scanning.release().await.unwrap();
    redo_fleet_days(pool).await;
    let (through, last) = rolled_through(pool).await;
    assert!(through.is_some_and(|d| d >= today - Duration::days(2)), "through {through:?}");
    assert_eq!(last, Some(today - Duration::days(2)), "every past day is rolled up");
    assert_same_rows(pool, 2, "an orphaned run").await;
}

/// With no day to roll up (after a run, the usual case), both day roll-ups return at once, without
/// waiting for their locks (migration 0020): a daemon with hundreds of tenants calls them at the
/// end of every run, each call on one of the pool's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roll_ups_with_nothing_due_do_not_wait_for_their_locks() {
    let app = spawn_app(fleet(10), Auth::TokenFile, Tenant::default()).await;
    assert_eq!(app.scan().await.devices.ok, 10);
    let pool = app.store.pool();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(1801615204, 0), pg_advisory_xact_lock(1801615204, -3)",
    )
    .execute(&mut *holder)
    .await
    .unwrap();
    let mut caller = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL statement_timeout = '5s'").execute(&mut *caller).await.unwrap();
    let rolled: (i64, i64) =
        sqlx::query_as("SELECT kbwatch.roll_up_fleet_days(), kbwatch.roll_up_fleet_states()")
            .fetch_one(&mut *caller)
            .await
            .expect("nothing due: no wait for the locks another session holds");
    assert_eq!(rolled, (0, 0));

    // A day that is due is still rolled up under the lock: the call waits for the holder.
    sqlx::raw_sql(
        "UPDATE kbwatch.tenant SET fleet_days_through = fleet_days_through - 2;
         SET LOCAL statement_timeout = '1s'",
    )
    .execute(&mut *caller)
    .await
    .unwrap();
    let waited = sqlx::query("SELECT kbwatch.roll_up_fleet_days()").execute(&mut *caller).await;
    let code = waited.expect_err("waits, then times out").into_database_error().unwrap();
    assert_eq!(code.code().as_deref(), Some("57014"), "query_canceled by the statement timeout");
    caller.rollback().await.unwrap();
    holder.rollback().await.unwrap();
}
