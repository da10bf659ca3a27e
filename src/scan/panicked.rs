//! A scan that panicked: a bug, not an API or database fault. Its run is closed `failed` with the
//! panic's message, the tenant stays free for the next tick, and the process says so in
//! `/healthz` and in `kbwatch_scan_panics_total`, so that an operator (or a liveness probe) acts.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::defender::Client;
use crate::pacer::Endpoint;
use crate::store::{RunEnd, RunStatus, Store};

static PANICKED_SCANS: AtomicU64 = AtomicU64::new(0);

/// Scans that panicked since the process started.
pub fn panicked_scans() -> u64 {
    PANICKED_SCANS.load(Ordering::Relaxed)
}

/// Closes run `run_id` as failed after its scan panicked; returns the error that reports it.
pub(super) async fn close_run(
    store: &Store,
    tenant: &str,
    run_id: i64,
    client: &Client,
    panic: Box<dyn Any + Send>,
) -> anyhow::Error {
    PANICKED_SCANS.fetch_add(1, Ordering::Relaxed);
    crate::metrics::scan_panicked(tenant);
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    let error = format!("internal error: the scan panicked: {message}");
    let calls = client.counters();
    let end = RunEnd {
        status: RunStatus::Failed,
        api_calls: calls.api_calls.load(Ordering::Relaxed) as i64,
        throttled: calls.throttled.load(Ordering::Relaxed) as i64,
        effective_per_minute: client.pacer().effective_per_minute(Endpoint::MissingKbs).await
            as i32,
        error: Some(&error),
    };
    match store.finish_run(run_id, &end).await {
        Ok(()) => anyhow::anyhow!(error),
        Err(e) => anyhow::anyhow!("{error}; closing its run failed too: {e:#}"),
    }
}
