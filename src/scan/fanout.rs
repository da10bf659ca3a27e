//! The fan-out: request each planned device (paced by the client), send results to the writer.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handoff::Pickup;
use super::run::Scan;
use super::writer;
use crate::defender::{ApiError, Client};
use crate::model::{DeviceOutcome, DeviceResult, PlannedDevice, RunCounters};

/// Why the fan-out ended.
pub(super) struct Fanned {
    pub devices: RunCounters,
    /// An error that stops the whole tenant (401 after refresh, 403).
    pub fatal: Option<ApiError>,
    pub write_error: Option<String>,
    pub cancelled: bool,
    pub deadline_hit: bool,
}

/// Requests the devices `plan` hands over until it closes or `stop` is cancelled.
pub(super) async fn scan_devices(scan: &Scan<'_>, plan: Pickup, stop: CancellationToken) -> Fanned {
    let (tx, rx) = mpsc::channel::<DeviceResult>(scan.options.batch_size * 2);
    let writer = tokio::spawn(writer::write_loop(
        scan.store.clone(),
        scan.run_id,
        rx,
        scan.client.counters().clone(),
        scan.options.batch_size,
        scan.options.flush_every,
    ));
    let deadline_hit = Arc::new(Mutex::new(false));
    if let Some(deadline) = scan.options.deadline {
        spawn_deadline(stop.clone(), deadline, deadline_hit.clone());
    }
    let concurrency = scan.tenant.quota.concurrency.max(1) as usize;
    let mut fatal = None;
    let results = plan
        .map(|device| scan_one(&scan.client, device))
        .buffer_unordered(concurrency)
        .take_until(stop.cancelled());
    let mut results = std::pin::pin!(results);
    while let Some(result) = results.next().await {
        match result {
            Ok(result) => {
                scan.progress.done.fetch_add(1, Ordering::Relaxed);
                if tx.send(result).await.is_err() {
                    break; // the writer gave up; its error is reported below
                }
            }
            Err(e) => {
                scan.stopped_by(&e);
                tracing::error!(error = %e, "Stopping the tenant's scan");
                fatal = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let (devices, write_error) = match writer.await {
        Ok(Ok(counters)) => (counters, None),
        Ok(Err((counters, e))) => (counters, Some(format!("{e:#}"))),
        Err(e) => (RunCounters::default(), Some(format!("writer task failed: {e}"))),
    };
    let deadline_hit = *deadline_hit.lock().expect("flag lock is never poisoned");
    Fanned { devices, fatal, write_error, cancelled: scan.cancel.is_cancelled(), deadline_hit }
}

fn spawn_deadline(stop: CancellationToken, deadline: tokio::time::Instant, hit: Arc<Mutex<bool>>) {
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep_until(deadline) => {
                *hit.lock().expect("flag lock is never poisoned") = true;
                stop.cancel();
            }
        }
    });
}

/// One device: its result, or the error that stops the tenant's scan.
async fn scan_one(client: &Client, device: PlannedDevice) -> Result<DeviceResult, ApiError> {
    let id = device.machine_id;
    let outcome = match client.missing_kbs(&id).await {
        Ok(kbs) => DeviceOutcome::Ok(kbs),
        Err(ApiError::NotFound) => DeviceOutcome::NotFound,
        Err(e) if e.stops_scan() => return Err(e),
        Err(e) => {
            tracing::debug!(machine_id = %id, error = %e, "Device failed");
            DeviceOutcome::Failed(e.to_string())
        }
    };
    Ok(DeviceResult {
        device_id: device.device_id,
        scanned_at: Utc::now(),
        last_seen: device.last_seen,
        first_scan: device.first_scan,
        outcome,
    })
}

impl Scan<'_> {
    /// Notes in the metrics an error that stops the tenant's scan and needs an operator: a failed
    /// authentication or a missing permission.
    pub(super) fn stopped_by(&self, error: &ApiError) {
        let kind = match error {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            _ => return,
        };
        crate::metrics::auth_failed(&self.tenant.name, kind);
    }
}
