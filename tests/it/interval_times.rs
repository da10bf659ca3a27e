//! An interval keeps when it opened and closed and whether its closing was a fix (migration
//! 0009), and `current_missing_kbs` and `kb_remediation` read them there: the same rows as the
//! definitions they replaced (migration 0002's, below), with a fix, a cveAddressed change (not a
//! fix), a KB that stays and a KB fixed twice; `kb_remediation` with its fixes staged, rolled up
//! (migration 0013) and rolled up again from the intervals. About the intervals themselves, so
//! it reads `kbwatch.missing_kb`.

use crate::kit::db::fixture_device;
use crate::kit::fixture_store;
use crate::kit::reporting::assert_view_as_before;
use chrono::{DateTime, Duration, Utc};
use kbwatch::model::{DeviceOutcome, DeviceResult, MissingKb};

/// `reporting.current_missing_kbs` as migration 0002 defined it.
const CURRENT_BEFORE: &str = "
    SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, m.kb_id, k.name AS kb_name,
           k.products_names, k.url, m.cve_addressed, o.scanned_at AS missing_since
    FROM kbwatch.missing_kb m
    JOIN kbwatch.device d ON d.device_id = m.device_id
    JOIN kbwatch.tenant t ON t.tenant_id = d.tenant_id
    JOIN kbwatch.kb k ON k.kb_id = m.kb_id
    LEFT JOIN kbwatch.device_scan o
           ON o.device_id = m.device_id AND o.scan_run_id = m.opened_scan_run_id
    WHERE m.closed_scan_run_id IS NULL AND d.gone_at IS NULL";

/// `reporting.kb_remediation` as migration 0002 defined it.
const REMEDIATION_BEFORE: &str = "
    WITH fixed AS (
        SELECT d.tenant_id, m.kb_id, m.device_id,
               extract(epoch FROM (c.scanned_at - o.scanned_at)) / 86400.0 AS days
        FROM kbwatch.missing_kb m
        JOIN kbwatch.device d ON d.device_id = m.device_id
        LEFT JOIN kbwatch.device_scan o
               ON o.device_id = m.device_id AND o.scan_run_id = m.opened_scan_run_id
        LEFT JOIN kbwatch.device_scan c
               ON c.device_id = m.device_id AND c.scan_run_id = m.closed_scan_run_id
        WHERE m.closed_scan_run_id IS NOT NULL
          AND NOT EXISTS (
              SELECT 1 FROM kbwatch.missing_kb r
              WHERE r.device_id = m.device_id AND r.kb_id = m.kb_id
                AND r.opened_scan_run_id = m.closed_scan_run_id)
    ), open_now AS (
        SELECT d.tenant_id, m.kb_id, count(*) AS devices_missing_now
        FROM kbwatch.missing_kb m
        JOIN kbwatch.device d ON d.device_id = m.device_id
        WHERE m.closed_scan_run_id IS NULL AND d.gone_at IS NULL
        GROUP BY d.tenant_id, m.kb_id
    ), fixed_agg AS (
        SELECT tenant_id, kb_id, count(DISTINCT device_id) AS devices_remediated,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY days) AS median_days_to_remediate
        FROM fixed
        GROUP BY tenant_id, kb_id
    )
    SELECT t.name AS tenant, k.kb_id, k.name AS kb_name,
           coalesce(o.devices_missing_now, 0) AS devices_missing_now,
           coalesce(f.devices_remediated, 0) AS devices_remediated,
           f.median_days_to_remediate
    FROM (SELECT tenant_id, kb_id FROM open_now UNION SELECT tenant_id, kb_id FROM fixed_agg) tk
    JOIN kbwatch.tenant t ON t.tenant_id = tk.tenant_id
    JOIN kbwatch.kb k ON k.kb_id = tk.kb_id
    LEFT JOIN open_now o ON o.tenant_id = tk.tenant_id AND o.kb_id = tk.kb_id
    LEFT JOIN fixed_agg f ON f.tenant_id = tk.tenant_id AND f.kb_id = tk.kb_id";

/// (device, KB, opened at, closed at (µs since the epoch), fixed) of an interval.
type Interval = (i64, String, Option<i64>, Option<i64>, Option<bool>);

fn kb(id: &str, cve: i32) -> MissingKb {
    MissingKb {
        id: id.into(),
        name: Some(format!("Update {id}")),
        products_names: Some(vec!["windows_11".into()]),
        url: None,
        machine_missed_on: Some(1),
        cve_addressed: Some(cve),
    }
}

fn result(device_id: i64, at: DateTime<Utc>, first: bool, kbs: &[(&str, i32)]) -> DeviceResult {
    DeviceResult {
        device_id,
        scanned_at: at,
        last_seen: None,
        first_scan: first,
        outcome: DeviceOutcome::Ok(kbs.iter().map(|(id, cve)| kb(id, *cve)).collect()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intervals_keep_their_times_and_the_views_give_the_rows_they_gave() {
    let (store, tenant) = fixture_store("intervals").await;
    let t0 = Utc::now() - Duration::days(10);
    let run1 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let a = fixture_device(&store, tenant, run1, '1').await;
    let b = fixture_device(&store, tenant, run1, '2').await;
    let kbs = [kb("5001", 2), kb("5002", 2), kb("5003", 2)];
    let day = |n: i64| t0 + Duration::days(n) + Duration::minutes(7 * n);
    store
        .write_results(
            run1,
            &[
                result(a, day(0), true, &[("5001", 2), ("5002", 2)]),
                result(b, day(0), true, &[("5001", 2), ("5003", 2)]),
            ],
            &kbs,
            1,
            0,
        )
        .await
        .unwrap();
    // Day 3: a fixes 5001 and 5002 changes its cveAddressed (closed and reopened: no fix);
    // b keeps both.
    let run2 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let changed = [kb("5002", 5)];
    store
        .write_results(
            run2,
            &[
                result(a, day(3), false, &[("5002", 5)]),
                result(b, day(3), false, &[("5001", 2), ("5003", 2)]),
            ],
            &changed,
            1,
            0,
        )
        .await
        .unwrap();
    // Day 8: b fixes 5001.
    let run3 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    store
        .write_results(run3, &[result(b, day(8), false, &[("5003", 2)])], &[], 1, 0)
        .await
        .unwrap();

    let shown: Vec<Interval> = sqlx::query_as(
        "SELECT device_id, kb_id, (extract(epoch FROM opened_at) * 1000000)::int8,
                (extract(epoch FROM closed_at) * 1000000)::int8, fixed
         FROM kbwatch.missing_kb ORDER BY device_id, kb_id, opened_scan_run_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let micros = |t: DateTime<Utc>| Some(t.timestamp_micros());
    let (d0, d3, d8) = (micros(day(0)), micros(day(3)), micros(day(8)));
    assert_eq!(
        shown,
        vec![
            (a, "5001".into(), d0, d3, Some(true)),
            (a, "5002".into(), d0, d3, Some(false)),
            (a, "5002".into(), d3, None, None),
            (b, "5001".into(), d0, d8, Some(true)),
            (b, "5003".into(), d0, None, None),
        ]
    );
    assert_view_as_before(store.pool(), "current_missing_kbs", CURRENT_BEFORE, 2, "now").await;
    let remediation = |when: &'static str| {
        assert_view_as_before(store.pool(), "kb_remediation", REMEDIATION_BEFORE, 3, when)
    };
    remediation("fixes staged").await;
    assert_eq!(store.roll_up_kb_fixes().await.unwrap(), 2, "two fixes moved");
    remediation("fixes rolled up").await;

    // Day 10: 5001 is missing on a again; day 12 a fixes it a second time (a device counts once),
    // and b fixes 5003.
    let run4 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let again = [result(a, day(10), false, &[("5001", 2), ("5002", 5)])];
    store.write_results(run4, &again, &[], 1, 0).await.unwrap();
    let run5 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let fixed = [result(a, day(12), false, &[("5002", 5)]), result(b, day(12), false, &[])];
    store.write_results(run5, &fixed, &[], 2, 0).await.unwrap();
    remediation("a second fix staged, one rolled up").await;
    let staged: Vec<(String, i64)> =
        sqlx::query_as("SELECT kb_id, new_devices FROM kbwatch.kb_fixes_staged() ORDER BY kb_id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(staged, [("5001".into(), 0), ("5003".into(), 1)], "a fixed 5001 before");
    store.roll_up_kb_fixes().await.unwrap();
    remediation("rolled up again").await;
    sqlx::query("SELECT kbwatch.rebuild_kb_fixes()").execute(store.pool()).await.unwrap();
    remediation("rolled up from the intervals").await;
}
