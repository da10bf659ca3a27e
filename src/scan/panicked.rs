//! A scan that panicked: a bug, not an API or database fault. Its run is closed `failed` with the
//! panic's message, the tenant stays free for the next tick, and the daemon says so in `/healthz`
//! ([`Health`]) and in `kbwatch_scan_panics_total`, so that an operator (or a liveness probe) acts.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

use super::run::Scan;
use crate::model::RunStatus;

/// The error of a scan that panicked.
#[derive(Debug, thiserror::Error)]
#[error("internal error: the scan panicked: {message}")]
pub struct ScanPanicked {
    pub message: String,
}

/// What the daemon's liveness probe reports: scans that panicked since it started.
#[derive(Debug, Default)]
pub struct Health {
    panicked_scans: AtomicU64,
}

impl Health {
    /// Notes a scan's error; only a panic counts.
    pub fn record(&self, error: &anyhow::Error) {
        if error.chain().any(|e| e.is::<ScanPanicked>()) {
            self.panicked_scans.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn panicked_scans(&self) -> u64 {
        self.panicked_scans.load(Ordering::Relaxed)
    }
}

/// Closes the run of `scan` as failed after it panicked; returns the error that reports it.
pub(super) async fn close_run(scan: &Scan<'_>, panic: Box<dyn Any + Send>) -> anyhow::Error {
    crate::metrics::scan_panicked(&scan.tenant.name);
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    let panicked = ScanPanicked { message };
    let error = panicked.to_string();
    match scan.close(RunStatus::Failed, Some(&error)).await {
        Ok(_) => panicked.into(),
        Err(e) => anyhow::Error::from(panicked).context(format!("closing its run failed: {e:#}")),
    }
}
