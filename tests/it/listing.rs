//! The device list through the 10,000-row page cap.

use std::collections::HashSet;

use kbwatch::sim::SimConfig;

use crate::kit::{Auth, Tenant, fleet, reporting, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_larger_than_the_page_cap_is_listed_completely() {
    let app = spawn_app(fleet(25_000), Auth::TokenFile, Tenant::default()).await;
    let client = app.client();
    let mut pager = client.machines(None);
    let mut ids = HashSet::new();
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.expect("page lists") {
        pages += 1;
        ids.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(ids.len(), 25_000);
    assert_eq!(pages, 3);
    assert_eq!(app.sim.stats().machines_requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_fleet_is_a_completed_scan_of_nothing() {
    let app = spawn_app(fleet(0), Auth::TokenFile, Tenant::default()).await;
    let summary = app.scan().await;
    assert_eq!(summary.status, kbwatch::model::RunStatus::Completed);
    assert_eq!((summary.listed, summary.planned), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_devices_are_requested_once_whether_handed_over_while_listing_or_planned_after() {
    let faults =
        kbwatch::sim::Faults { latency: std::time::Duration::from_millis(2), ..Default::default() };
    let sim = SimConfig { faults, ..fleet(500) };
    // Pages of 100 and one request at a time: the fan-out falls more than a page behind after two
    // pages, so the later pages' new devices are planned from the store once the listing ends.
    let tenant = Tenant::default().unpaced().concurrency(1).page_size(100);
    let app = spawn_app(sim, Auth::TokenFile, tenant).await;
    let summary = app.scan().await;
    assert_eq!(summary.status, kbwatch::model::RunStatus::Completed, "{summary:?}");
    assert_eq!((summary.listed, summary.planned, summary.devices.ok), (500, 500, 500));
    assert_eq!(app.sim.stats().kbs_requests, 500, "each device requested once");
    let history = reporting::device_history(app.pool()).await;
    let scanned: std::collections::BTreeSet<&str> =
        history.iter().map(|s| s.machine_id.as_str()).collect();
    assert_eq!((history.len(), scanned.len()), (500, 500), "each device stored once");
}
