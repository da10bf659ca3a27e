//! The scan plan on fixtures: order by need, skips, and the quota budget (no real waiting).
//!
//! The plan is made from what the store keeps, so the fixtures are rows of the internal tables
//! (`kbwatch.device`, `kbwatch.device_scan`), and the last test checks the `lastSeen` kept with
//! each device scan, which no view shows.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use kbwatch::model::Machine;
use kbwatch::store::{HandedOver, ListedDevice, Store};

use crate::kit::{Auth, Tenant, fixture_store, fleet, spawn_app};

fn machine(id: &str, last_seen_hours_ago: i64) -> Machine {
    let last_seen = Utc::now() - TimeDelta::hours(last_seen_hours_ago);
    Machine {
        id: id.into(),
        computer_dns_name: Some(format!("host-{}", &id[..4])),
        os_platform: Some("Windows11".into()),
        os_version: None,
        os_build: Some(22631),
        health_status: Some("Active".into()),
        onboarding_status: Some("Onboarded".into()),
        rbac_group_id: Some("0".into()),
        rbac_group_name: None,
        machine_tags: vec![],
        first_seen: None,
        last_seen: Some(last_seen),
        is_potential_duplication: Some(false),
        merged_into_machine_id: None,
        raw: serde_json::value::RawValue::from_string(serde_json::json!({ "id": id }).to_string())
            .unwrap(),
    }
}

/// The plan of `run`, whose listing at `listed_at` handed nothing over; `rescan_after` 20 h.
async fn plan_of(
    store: &Store,
    tenant: i32,
    run: i64,
    listed_at: chrono::DateTime<Utc>,
) -> Vec<kbwatch::model::PlannedDevice> {
    let handed_over = HandedOver { listed_at, through: 0 };
    let rescan_after = Duration::from_secs(20 * 3600);
    store.plan_devices(tenant, run, handed_over, Utc::now(), rescan_after, &[]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_puts_never_scanned_then_moved_then_stalest_first_and_skips_the_rest() {
    let (store, tenant) = fixture_store("fixtures").await;
    let earlier = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let run = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();

    // (name, id, hours since the last good scan, lastSeen moved since it, merged away)
    let fixtures = [
        ("never", "a", None, false, false),
        ("moved", "b", Some(30), true, false),
        ("stale25", "c", Some(25), false, false),
        ("stale40", "d", Some(40), false, false),
        ("fresh", "e", Some(1), true, false),
        ("merged", "f", None, false, true),
    ];
    let mut machines: Vec<Machine> =
        fixtures.iter().map(|(_, c, _, _, _)| machine(&c.repeat(40), 2)).collect();
    machines[5].merged_into_machine_id = Some("a".repeat(40));
    machines.push(machine("../evil", 2));
    let listed: Vec<ListedDevice<'_>> = machines
        .iter()
        .map(|m| ListedDevice {
            machine_id: m.id.clone(),
            id_valid: !m.id.contains('/'),
            machine: m,
        })
        .collect();
    // The first listing returns what it saw first and can be requested: valid, not merged.
    let first = store.upsert_listed_devices(tenant, earlier, Utc::now(), &listed).await.unwrap();
    let new: Vec<&str> = first.iter().map(|p| &p.machine_id.as_str()[..1]).collect();
    assert_eq!(new, ["a", "b", "c", "d", "e"]);
    // This run lists them again: none is new, all are planned from what is stored.
    let listed_at = Utc::now();
    let again = store.upsert_listed_devices(tenant, run, listed_at, &listed).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    for (_, c, scanned_hours_ago, moved, _) in fixtures {
        let Some(hours) = scanned_hours_ago else { continue };
        // Fixture state: the last good scan `hours` ago, with the lastSeen it saw then.
        sqlx::query(
            "INSERT INTO kbwatch.device_scan (device_id, scan_run_id, scanned_at, outcome, last_seen)
             SELECT device_id, $4, now() - make_interval(hours => $2), 'ok',
                    CASE WHEN $3 THEN last_seen - interval '1 day' ELSE last_seen END
             FROM kbwatch.device WHERE machine_id = $1",
        )
        .bind(c.repeat(40))
        .bind(hours)
        .bind(moved)
        .bind(earlier)
        .execute(store.pool())
        .await
        .unwrap();
    }
    crate::kit::internal::redo_device_state(store.pool()).await;

    let plan = plan_of(&store, tenant, run, listed_at).await;
    let order: Vec<&str> = plan
        .iter()
        .map(|p| fixtures.iter().find(|f| f.1.repeat(40) == p.machine_id.as_str()).unwrap().0)
        .collect();
    assert_eq!(order, ["never", "moved", "stale40", "stale25"]);

    // A device listed by an earlier run only is not planned.
    let next = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let listed_at = Utc::now();
    store.upsert_listed_devices(tenant, next, listed_at, &listed[..2]).await.unwrap();
    assert_eq!(plan_of(&store, tenant, next, listed_at).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_plans_only_what_the_quota_reaches_before_the_next_tick() {
    let app = spawn_app(fleet(50), Auth::TokenFile, Tenant::default().quota(10, 1500)).await;
    let deadline = Some(tokio::time::Instant::now() + Duration::from_secs(30));
    let options = kbwatch::scan::ScanOptions { deadline, ..Default::default() };
    let cancel = tokio_util::sync::CancellationToken::new();
    let summary = app.scan_with_options(app.client(), &options, &cancel).await;
    assert_eq!((summary.listed, summary.planned, summary.devices.ok), (50, 10, 10), "{summary:?}");
    assert_eq!(summary.status, kbwatch::model::RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_remembers_the_last_seen_it_saw_so_only_moved_devices_come_first() {
    let app = spawn_app(fleet(20), Auth::TokenFile, Tenant::default()).await;
    let run = app.scan().await.scan_run_id;
    let unmatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM kbwatch.device_scan s JOIN kbwatch.device d USING (device_id)
         WHERE s.scan_run_id = $1 AND s.last_seen IS DISTINCT FROM d.last_seen",
    )
    .bind(run)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(unmatched, 0, "each scan row holds the lastSeen listed with it");

    // One device is seen again after the scan: it leads the next plan, the rest keep their order.
    let tenant = app.store.ensure_tenant(&app.tenant().name).await.unwrap();
    let before = app
        .store
        .plan_devices(tenant, run, handed_none(), Utc::now(), Duration::ZERO, &[])
        .await
        .unwrap();
    let moved: String = sqlx::query_scalar(
        "UPDATE kbwatch.device SET last_seen = last_seen + interval '1 hour'
         WHERE device_id = (SELECT max(device_id) FROM kbwatch.device WHERE id_valid)
         RETURNING machine_id",
    )
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    let after = app
        .store
        .plan_devices(tenant, run, handed_none(), Utc::now(), Duration::ZERO, &[])
        .await
        .unwrap();
    let ids = |plan: &[kbwatch::model::PlannedDevice]| -> Vec<i64> {
        plan.iter().map(|p| p.device_id).collect()
    };
    assert_ne!(before[0].machine_id.as_str(), moved, "unmoved, it was not first");
    assert_eq!(after[0].machine_id.as_str(), moved);
    let mut rest = ids(&before);
    rest.retain(|&id| id != after[0].device_id);
    assert_eq!(ids(&after[1..]), rest);
}

/// Nothing handed over by a listing: every listed device is planned from the store.
fn handed_none() -> HandedOver {
    HandedOver { listed_at: Utc::now(), through: 0 }
}
