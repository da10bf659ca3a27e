//! Writing results: a first scan skips the look for open intervals, and a retry of it is harmless.
//!
//! About the store's intervals (`kbwatch.missing_kb`) on fixtures, so it reads and writes the
//! internal tables.

use chrono::Utc;
use kbwatch::model::{DeviceOutcome, DeviceResult, MissingKb};
use kbwatch::store::Store;

use crate::kit::db::fixture_device;
use crate::kit::fixture_store;

fn kb(id: &str) -> MissingKb {
    MissingKb {
        id: id.into(),
        name: Some(format!("Update {id}")),
        products_names: Some(vec!["windows_11".into()]),
        url: None,
        machine_missed_on: Some(1),
        cve_addressed: Some(2),
    }
}

fn result(device_id: i64, first_scan: bool, kbs: &[&str]) -> DeviceResult {
    DeviceResult {
        device_id,
        scanned_at: Utc::now(),
        last_seen: None,
        first_scan,
        outcome: DeviceOutcome::Ok(kbs.iter().map(|id| kb(id)).collect()),
    }
}

/// (KB, opened by run, closed by run) of the device's intervals, in order.
async fn intervals(store: &Store, device: i64) -> Vec<(String, i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT kb_id, opened_scan_run_id, closed_scan_run_id FROM kbwatch.missing_kb
         WHERE device_id = $1 ORDER BY kb_id, opened_scan_run_id",
    )
    .bind(device)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_scan_written_again_as_a_retry_changes_nothing_and_later_scans_close_intervals() {
    let (store, tenant) = fixture_store("results").await;
    let first = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    let device = fixture_device(&store, tenant, first, 'a').await;
    let kbs = [kb("5001"), kb("5002")];

    store
        .write_results(first, &[result(device, true, &["5001", "5002"])], &kbs, 1, 0)
        .await
        .unwrap();
    // What the writer retries after a failure that may have committed: the same batch, the first
    // scan no longer claimed.
    store
        .write_results(first, &[result(device, false, &["5001", "5002"])], &[], 1, 0)
        .await
        .unwrap();
    let opened = vec![("5001".to_owned(), first, None), ("5002".to_owned(), first, None)];
    assert_eq!(intervals(&store, device).await, opened);

    let second = store.start_run(tenant, "manual", None, "test").await.unwrap().unwrap();
    store.write_results(second, &[result(device, false, &["5002"])], &[], 1, 0).await.unwrap();
    let closed = vec![("5001".to_owned(), first, Some(second)), ("5002".to_owned(), first, None)];
    assert_eq!(intervals(&store, device).await, closed);
}
