//! Each device's last scan and last good scan are kept in `kbwatch.device_state` as results are
//! written (migration 0011): `reporting.devices` reads them there and gives the rows migration
//! 0005's definition gave (below) through good, failed and not-found scans, a batch written twice
//! and a late batch of an older run; the planner orders by them. About an internal table, so it
//! reads `kbwatch.device_state`.

use chrono::{DateTime, Duration, Utc};
use kbwatch::model::{DeviceOutcome, DeviceResult, MissingKb};

use crate::kit::db::fixture_device;
use crate::kit::fixture_store;
use crate::kit::internal::redo_device_state;
use crate::kit::reporting::assert_view_as_before;

/// `reporting.devices` as migration 0005 defined it.
const DEVICES_BEFORE: &str = "
    SELECT t.name AS tenant, d.machine_id, d.computer_dns_name, d.os_platform, d.os_build,
           d.health_status, d.onboarding_status, d.rbac_group_name, d.machine_tags, d.last_seen,
           last_scan.scanned_at AS last_scanned_at, last_scan.outcome AS last_scan_outcome,
           last_good.missing_kbs, last_good.cve_addressed_total
    FROM kbwatch.device d
    JOIN kbwatch.tenant t USING (tenant_id)
    LEFT JOIN LATERAL (
        SELECT s.scanned_at, s.outcome FROM kbwatch.device_scan s
        WHERE s.device_id = d.device_id
        ORDER BY s.scan_run_id DESC LIMIT 1) last_scan ON true
    LEFT JOIN LATERAL (
        SELECT s.missing_kbs, s.cve_addressed_total FROM kbwatch.device_scan s
        WHERE s.device_id = d.device_id AND s.outcome = 'ok'
        ORDER BY s.scan_run_id DESC LIMIT 1) last_good ON true
    WHERE d.gone_at IS NULL";

/// A device's state: (run, outcome, good run, good lastSeen, missing KBs, cveAddressed total).
type State = (i64, String, Option<i64>, Option<DateTime<Utc>>, Option<i32>, Option<i64>);

fn kb(id: &str) -> MissingKb {
    MissingKb {
        id: id.into(),
        name: None,
        products_names: None,
        url: None,
        machine_missed_on: None,
        cve_addressed: Some(4),
    }
}

fn result(device_id: i64, at: DateTime<Utc>, first: bool, outcome: DeviceOutcome) -> DeviceResult {
    DeviceResult { device_id, scanned_at: at, last_seen: Some(at), first_scan: first, outcome }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_last_scans_are_kept_as_results_are_written() {
    let (store, tenant) = fixture_store("device_state").await;
    let t0 = Utc::now() - Duration::days(3);
    let run1 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let [a, b, c, never] = [
        fixture_device(&store, tenant, run1, '1').await,
        fixture_device(&store, tenant, run1, '2').await,
        fixture_device(&store, tenant, run1, '3').await,
        fixture_device(&store, tenant, run1, '4').await,
    ];
    let ok = |kbs: &[&str]| DeviceOutcome::Ok(kbs.iter().map(|id| kb(id)).collect());
    let kbs = [kb("5001"), kb("5002")];
    let first = [
        result(a, t0, true, ok(&["5001", "5002"])),
        result(b, t0, true, ok(&["5001"])),
        result(c, t0, true, DeviceOutcome::Failed("HTTP 500".into())),
    ];
    store.write_results(run1, &first, &kbs, 3, 0).await.unwrap();
    let state = |device: i64| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_as::<_, State>(
                "SELECT scan_run_id, outcome, good_scan_run_id, good_last_seen, missing_kbs,
                        cve_addressed_total
                 FROM kbwatch.device_state WHERE device_id = $1",
            )
            .bind(device)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    let t1 = t0 + Duration::days(1);
    let run2 = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let second = [
        result(a, t1, false, DeviceOutcome::Failed("timed out".into())),
        result(b, t1, false, DeviceOutcome::NotFound),
        result(c, t1, false, ok(&[])),
    ];
    store.write_results(run2, &second, &[], 3, 0).await.unwrap();
    // Written twice (a retry after a lost acknowledgement): nothing changes.
    store.write_results(run2, &second, &[], 0, 0).await.unwrap();

    let (at0, at1) = (Some(t0), Some(t1));
    let micros = |s: Option<State>| {
        s.map(|(r, o, g, seen, m, cve)| {
            let seen = seen.map(|t| t.timestamp_micros());
            (r, o, g, seen, m, cve)
        })
    };
    let us = |t: Option<DateTime<Utc>>| t.map(|t| t.timestamp_micros());
    assert_eq!(
        micros(state(a).await),
        Some((run2, "failed".into(), Some(run1), us(at0), Some(2), Some(8))),
        "a failed scan keeps the last good one's counts"
    );
    assert_eq!(
        micros(state(b).await),
        Some((run2, "not_found".into(), Some(run1), us(at0), Some(1), Some(4)))
    );
    assert_eq!(
        micros(state(c).await),
        Some((run2, "ok".into(), Some(run2), us(at1), Some(0), Some(0)))
    );
    assert_eq!(state(never).await, None, "never scanned");

    // A late batch of the older run does not move a state back to it.
    store.write_results(run2, &[result(never, t1, true, ok(&["5002"]))], &[], 1, 0).await.unwrap();
    store.write_results(run1, &[result(never, t0, true, ok(&[]))], &[], 1, 0).await.unwrap();
    assert_eq!(
        micros(state(never).await),
        Some((run2, "ok".into(), Some(run2), us(at1), Some(1), Some(4)))
    );

    assert_view_as_before(store.pool(), "devices", DEVICES_BEFORE, 4, "as written").await;
    // The state derived again from the scans (as migration 0011 fills it) is the state written.
    let written: Vec<String> = all_states(&store).await;
    redo_device_state(store.pool()).await;
    assert_eq!(all_states(&store).await, written);
}

async fn all_states(store: &kbwatch::store::Store) -> Vec<String> {
    sqlx::query_scalar("SELECT s::text FROM kbwatch.device_state s ORDER BY device_id")
        .fetch_all(store.pool())
        .await
        .unwrap()
}
