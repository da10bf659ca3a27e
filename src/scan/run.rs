//! What one run is: its trigger and knobs, its live progress and summary, and the context its
//! parts share. The orchestration is in the module root, which uses the parts; the parts use this.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::TenantConfig;
use crate::defender::Client;
use crate::model::{RunCounters, RunStatus};
use crate::pacer::Endpoint;
use crate::store::Store;

/// What starts a scan (stored in `scan_run.trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Demo,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Demo => "demo",
        }
    }
}

/// Knobs of one scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub trigger: Trigger,
    /// Stop starting new devices at this instant (the next tick); the run ends `partial`.
    pub deadline: Option<Instant>,
    /// The cron tick this run belongs to: a tick another replica already scanned is skipped.
    pub scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
    /// Devices per committed batch.
    pub batch_size: usize,
    /// Longest time a finished result waits before it is committed.
    pub flush_every: Duration,
    /// `retention.keep_days`: after the run, history older than this many days is dropped (once
    /// a day per database). `None` keeps all history.
    pub keep_days: Option<u32>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            trigger: Trigger::Manual,
            deadline: None,
            scheduled_for: None,
            batch_size: 500,
            flush_every: Duration::from_secs(1),
            keep_days: None,
        }
    }
}

/// Live counts for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    pub planned: AtomicU64,
    pub done: AtomicU64,
}

/// How a scan ended.
#[derive(Debug, Clone)]
pub struct ScanSummary {
    pub scan_run_id: i64,
    pub status: RunStatus,
    pub listed: u64,
    pub planned: u64,
    pub rejected: u64,
    pub devices: RunCounters,
    pub api_calls: u64,
    pub throttled: u64,
    /// The per-minute rate getmissingkbs was paced at when the run ended.
    pub effective_per_minute: u32,
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// What the parts of one run (the listing, the fan-out, the run's own bookkeeping) share.
pub(super) struct Scan<'a> {
    pub(super) store: &'a Store,
    pub(super) tenant: &'a TenantConfig,
    pub(super) tenant_id: i32,
    pub(super) run_id: i64,
    pub(super) client: Arc<Client>,
    pub(super) options: &'a ScanOptions,
    pub(super) progress: Arc<Progress>,
    pub(super) cancel: &'a CancellationToken,
    /// Fired when the tenant's lock was lost to another process (`cancel` fires too).
    pub(super) lock_lost: CancellationToken,
}

/// Waits until `deadline`; forever when there is none.
pub(super) async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Returns once a 429 has paused the vulnerability export past `give_up_at`, with the pause's
/// end: the export's reads are optional, and waiting out a long pause would hold the run back.
pub(super) async fn export_paused_past(client: &Client, give_up_at: Instant) -> Instant {
    loop {
        if let Some(until) = client.pacer().paused_until(Endpoint::Export).await
            && until > give_up_at
        {
            return until;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
