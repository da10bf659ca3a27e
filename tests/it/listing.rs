//! The device list through the 10,000-row page cap.

use std::collections::HashSet;

use kbwatch::sim::SimConfig;

use crate::helpers::{Auth, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_larger_than_the_page_cap_is_listed_completely() {
    let app =
        spawn_app(SimConfig { devices: 25_000, ..SimConfig::default() }, Auth::TokenFile, "").await;
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
    let app =
        spawn_app(SimConfig { devices: 0, ..SimConfig::default() }, Auth::TokenFile, "").await;
    let summary = app.scan().await;
    assert_eq!(summary.status, kbwatch::store::RunStatus::Completed);
    assert_eq!((summary.listed, summary.planned), (0, 0));
}
