//! `reporting.fleet_state_daily` (migration 0015): per tenant and day, every device listed at the
//! day's end with its last good scan before it, however old. The view gives the rows of the
//! definition below (over `reporting.device_history` and the devices' listing times), whether the
//! days are rolled up, computed live, or part of each; a day is rolled up only once no running
//! run can still write into it. About the roll-up's own tables, so it reads `kbwatch.tenant` and
//! writes listing times into `kbwatch.device`.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use kbwatch::model::{DeviceOutcome, DeviceResult, MissingKb, RunStatus};
use kbwatch::store::{RunEnd, Store};
use sqlx::PgPool;

use crate::kit::db::{fixture_device, fixture_store};

/// The view's definition, from scratch: each day from the first listing to today.
const DEFINITION: &str = "
    WITH days AS (
        SELECT t.tenant_id, t.name, g.day::date AS day,
               (g.day::date + 1)::timestamp AT TIME ZONE 'UTC' AS day_end
        FROM kbwatch.tenant t
        CROSS JOIN generate_series(
            (SELECT min(first_listed_at AT TIME ZONE 'UTC')::date FROM kbwatch.device),
            (now() AT TIME ZONE 'UTC')::date, interval '1 day') g(day)
    )
    SELECT y.name AS tenant, y.day, count(*) AS devices_listed,
           count(k.scanned_at) AS devices_known,
           count(*) FILTER (WHERE k.scanned_at < y.day_end - interval '7 days'),
           count(*) FILTER (WHERE k.missing_kbs > 0), sum(k.missing_kbs),
           sum(k.cve_addressed_total)::numeric
    FROM days y
    JOIN kbwatch.device d
      ON d.tenant_id = y.tenant_id AND d.first_listed_at < y.day_end
     AND (d.gone_at IS NULL OR d.gone_at >= y.day_end)
    LEFT JOIN LATERAL (
        SELECT h.scanned_at, h.missing_kbs, h.cve_addressed_total
        FROM reporting.device_history h
        WHERE h.tenant = y.name AND h.machine_id = d.machine_id AND h.outcome = 'ok'
          AND h.scanned_at < y.day_end
        ORDER BY h.scanned_at DESC LIMIT 1) k ON true
    GROUP BY y.name, y.day";

fn midnight(days_ago: i64) -> DateTime<Utc> {
    (Utc::now().date_naive() - Duration::days(days_ago)).and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn kb(i: i64) -> MissingKb {
    MissingKb {
        id: format!("50{i:02}"),
        name: None,
        products_names: None,
        url: None,
        machine_missed_on: Some(1),
        cve_addressed: Some(i as i32),
    }
}

/// Asserts the view has `days` rows, equal to the definition's.
async fn assert_as_defined(pool: &PgPool, days: i64, when: &str) {
    let sql = format!(
        "SELECT (SELECT count(*) FROM reporting.fleet_state_daily),
                (SELECT count(*) FROM (
                    (SELECT * FROM reporting.fleet_state_daily EXCEPT ALL ({DEFINITION}))
                    UNION ALL
                    (({DEFINITION}) EXCEPT ALL SELECT * FROM reporting.fleet_state_daily)) x)"
    );
    let (n, differ): (i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.unwrap();
    assert_eq!((n, differ), (days, 0), "{when}: rows, and rows that differ");
}

/// A completed run started at `at` (an hour into its day), and its results: device `i` of
/// `devices` scanned `i` minutes in, on the days of its turn (every `i + 1`th day), missing
/// KBs that come and go with the day; the third device's scans fail every fourth day.
async fn write_day(store: &Store, tenant: i32, devices: &[i64], n: i64) {
    let at = (midnight(n) + Duration::hours(1)).min(Utc::now() - Duration::minutes(30));
    let run = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let mut results = Vec::new();
    for (i, &device_id) in devices.iter().enumerate() {
        let i = i as i64;
        if n % (i + 1) != 0 {
            continue;
        }
        let outcome = if i == 2 && n % 4 == 0 {
            DeviceOutcome::Failed("HTTP 503".into())
        } else {
            DeviceOutcome::Ok((0..(n + i) % 4).map(|k| kb(k + i)).collect())
        };
        let scanned_at = at + Duration::minutes(i + 1);
        results.push(DeviceResult {
            device_id,
            scanned_at,
            last_seen: None,
            first_scan: false,
            outcome,
        });
    }
    let catalogue: Vec<MissingKb> = (0..10).map(kb).collect();
    store.write_results(run, &results, &catalogue, 1, 0).await.unwrap();
    let end = RunEnd {
        status: RunStatus::Completed,
        api_calls: 1,
        throttled: 0,
        effective_per_minute: 1,
        error: None,
    };
    store.finish_run(run, &end).await.unwrap();
    sqlx::query("UPDATE kbwatch.scan_run SET started_at = $2, finished_at = $2 + interval '10 minutes' WHERE scan_run_id = $1")
        .bind(run)
        .bind(at)
        .execute(store.pool())
        .await
        .unwrap();
}

async fn through(pool: &PgPool) -> NaiveDate {
    sqlx::query_scalar("SELECT fleet_states_through FROM kbwatch.tenant")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_state_of_each_day_counts_every_listed_device_with_its_last_known_state() {
    let (store, tenant) = fixture_store("states").await;
    let pool = store.pool();
    let first = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let mut devices = Vec::new();
    for digit in ['1', '2', '3', '4', '5', '6'] {
        devices.push(fixture_device(&store, tenant, first, digit).await);
    }
    // Listed 12 days ago, but `4` 5 days ago; `5` gone 3 days ago; `6` is never scanned, `2` not
    // after 9 days ago.
    sqlx::query(
        "UPDATE kbwatch.device SET first_listed_at = CASE WHEN machine_id LIKE '4%' THEN $2 ELSE $1 END,
                                   gone_at = CASE WHEN machine_id LIKE '5%' THEN $3 END",
    )
    .bind(midnight(12) + Duration::minutes(30))
    .bind(midnight(5) + Duration::minutes(30))
    .bind(midnight(3) + Duration::hours(12))
    .execute(pool)
    .await
    .unwrap();
    store
        .finish_run(
            first,
            &RunEnd {
                status: RunStatus::Completed,
                api_calls: 0,
                throttled: 0,
                effective_per_minute: 1,
                error: None,
            },
        )
        .await
        .unwrap();
    for n in (0..=12).rev() {
        let listed: Vec<i64> = devices
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                i != 5 && !(i == 3 && n > 5) && !(i == 4 && n < 3) && !(i == 1 && n < 9)
            })
            .map(|(_, &d)| d)
            .collect();
        write_day(&store, tenant, &listed, n).await;
    }
    crate::kit::internal::pack_scans(pool).await;

    // Nothing rolled up: every day computed by the view.
    sqlx::raw_sql(
        "DELETE FROM kbwatch.fleet_state_day; DELETE FROM kbwatch.device_state_carry;
         UPDATE kbwatch.tenant SET fleet_states_through = (now() AT TIME ZONE 'UTC')::date - 13;",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_as_defined(pool, 13, "nothing rolled up").await;

    // A run started 5 days ago still running (its scan holds the tenant's lock): days up to 6
    // days ago are final, the rest live.
    let running = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    sqlx::query("UPDATE kbwatch.scan_run SET started_at = $2 WHERE scan_run_id = $1")
        .bind(running)
        .bind(midnight(5) + Duration::hours(2))
        .execute(pool)
        .await
        .unwrap();
    let mut lock = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(1801615204, $1)")
        .bind(tenant)
        .execute(&mut *lock)
        .await
        .unwrap();
    let rolled = store.roll_up_fleet_states().await.unwrap();
    assert_eq!((rolled, through(pool).await), (7, (midnight(6)).date_naive()));
    assert_as_defined(pool, 13, "rolled up to 6 days ago").await;

    // The run ends: every day before today is final.
    sqlx::query("SELECT pg_advisory_unlock(1801615204, $1)")
        .bind(tenant)
        .execute(&mut *lock)
        .await
        .unwrap();
    sqlx::query("UPDATE kbwatch.scan_run SET status = 'interrupted' WHERE scan_run_id = $1")
        .bind(running)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(store.roll_up_fleet_states().await.unwrap(), 5);
    assert_eq!(through(pool).await, midnight(1).date_naive());
    assert_as_defined(pool, 13, "rolled up to yesterday").await;
    assert_eq!(store.roll_up_fleet_states().await.unwrap(), 0, "nothing more to roll up today");

    // What the rows say: 12 days ago, five devices listed (not `4`), three known (`3`'s scan
    // failed, `6` is never scanned); today, `5` is gone and `4` listed: five listed, four known,
    // `2`'s state older than 7 days.
    let ends: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT devices_listed, devices_known, devices_older_than_7_days
         FROM reporting.fleet_state_daily WHERE day IN ($1, $2) ORDER BY day",
    )
    .bind(midnight(12).date_naive())
    .bind(midnight(0).date_naive())
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(ends, [(5, 3, 0), (5, 4, 1)]);
}
