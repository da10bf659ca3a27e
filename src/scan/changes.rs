//! With `[tenant.export]` on, the devices whose missing KBs changed since their last good scan, by
//! the vulnerability export's delta: the plan puts them first (after the devices never scanned),
//! even those scanned more recently than `rescan_after`.
//!
//! The delta is read once per run, beside the listing, since the oldest last good scan of the
//! devices a plan may request, at most [`MAX_BACK`] back (the API takes 14 days). When the export
//! is off, or no device has a good scan yet, it is not called. When the call fails (a 403 for a
//! missing `Vulnerability.Read.All`, 429s past their budget, longer than [`TIME_LIMIT`], or a 429
//! whose pause ends after it), the failure is logged once and the plan is the one without the
//! export: the scan goes on.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::run::{Scan, export_paused_past, until};

/// How far back the delta is read: the API's 14 days, less an hour for clocks that differ.
const MAX_BACK: TimeDelta = TimeDelta::hours(14 * 24 - 1);
/// How long reading the delta may take: the plan, and so every request but those of new
/// devices, waits for it.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The `device_id`s the export says changed since their last good scan; empty without the
/// export, when it fails, once `stop` fires (the plan is not made then) and at the run's deadline
/// (nothing more is requested then).
pub(super) async fn changed_devices(scan: &Scan<'_>, stop: &CancellationToken) -> Vec<i64> {
    if !scan.tenant.export.enabled {
        return Vec::new();
    }
    let give_up_at = Instant::now() + TIME_LIMIT;
    let read = tokio::select! {
        () = stop.cancelled() => return Vec::new(),
        () = until(scan.options.deadline) => return Vec::new(),
        paused = export_paused_past(&scan.client, give_up_at) => {
            let wait_s = paused.saturating_duration_since(Instant::now()).as_secs();
            tracing::warn!(
                wait_s,
                limit_s = TIME_LIMIT.as_secs(),
                "The export is throttled for longer than the plan may wait; planning without its changes"
            );
            return Vec::new();
        }
        read = tokio::time::timeout(TIME_LIMIT, read_changes(scan)) => read,
    };
    match read {
        Ok(Ok(changed)) => changed,
        Ok(Err(e)) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "Reading the export's changes failed; planning without them"
            );
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(
                limit_s = TIME_LIMIT.as_secs(),
                "Reading the export's changes took too long; planning without them"
            );
            Vec::new()
        }
    }
}

async fn read_changes(scan: &Scan<'_>) -> anyhow::Result<Vec<i64>> {
    let Some(oldest) = scan.store.oldest_good_scan(scan.tenant_id).await? else {
        return Ok(Vec::new());
    };
    let since = oldest.max(Utc::now() - MAX_BACK);
    let changes =
        scan.client.kb_changes_since(since).await.context("reading the export's changes")?;
    let changed = scan.store.changed_since_good_scan(scan.tenant_id, &changes).await?;
    tracing::info!(
        since = %since,
        rows = changes.rows,
        events = changes.events,
        ignored = changes.ignored,
        rejected = changes.rejected,
        changed = changed.len(),
        "Read the export's changes"
    );
    Ok(changed)
}
