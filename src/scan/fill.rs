//! Whole-fleet coverage (`[tenant.export] fill`): a listed device this run does not request, whose
//! last state is older than `fill_after` or that has none, takes its state from the full
//! vulnerability export. It is stored as a good scan of source `export`, beside the run's
//! getmissingkbs scans, so every view counts it; the planner still requests it first among the
//! devices getmissingkbs has answered before (`Store::plan_devices`).
//!
//! The export is read once the plan is drawn, beside the fan-out, and only when such devices exist
//! and it was not read through within [`READ_EVERY`]: a device the export does not name (nothing
//! vulnerable, or not covered: the two look alike) stays without a state and would otherwise
//! bring every run back to it. A failure (a 403 for a missing `Vulnerability.Read.All`, 429s past
//! their budget or one that pauses it for more than [`MAX_PAUSE`], the database) is logged once
//! and leaves the devices as they were: the scan goes on, and the next run tries again.

use std::collections::HashSet;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::time::Instant;

use super::run::{Scan, export_paused_past, until};
use crate::model::{DeviceOutcome, DeviceResult, ExportStates, MissingKb, PlannedDevice};
use crate::store::kbs_to_store;

/// How soon the export is read through again: its delta's snapshot is regenerated every 6 hours
/// (`/work/shared/reference/export-api.md` §3), and the full export is taken to be no fresher.
const READ_EVERY: TimeDelta = TimeDelta::hours(6);
/// The longest pause a 429 may put on the export's read: the run ends only once the fill has.
const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(300);
/// Devices per written batch.
const BATCH: usize = 1000;

/// Fills the devices this run does not request (`requested`: those its plan handed over) from
/// the export, if it is on; the number of devices stored. Shutdown and the run's deadline stop the
/// export's read; shutdown stops the writing between batches, and what is written stays.
pub(super) async fn from_export(scan: &Scan<'_>, requested: &[i64]) -> u64 {
    let export = &scan.tenant.export;
    if !export.enabled || !export.fill {
        return 0;
    }
    fill(scan, requested).await.unwrap_or_else(|e| {
        tracing::warn!(
            error = format!("{e:#}"),
            "Filling devices from the export failed; they keep their states until a later run"
        );
        0
    })
}

async fn fill(scan: &Scan<'_>, requested: &[i64]) -> anyhow::Result<u64> {
    let now = Utc::now();
    if let Some(read) = scan.store.export_read_at(scan.tenant_id).await?
        && now - read < READ_EVERY
    {
        return Ok(0);
    }
    let fill_after = TimeDelta::from_std(scan.tenant.export.fill_after).unwrap_or(TimeDelta::MAX);
    let stale_before = now.checked_sub_signed(fill_after).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let candidates =
        scan.store.fill_candidates(scan.tenant_id, scan.run_id, requested, stale_before).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let read_at = Utc::now();
    let states = tokio::select! {
        () = scan.cancel.cancelled() => return Ok(0),
        () = until(scan.options.deadline) => return Ok(0),
        paused = export_paused_past(&scan.client, Instant::now() + MAX_PAUSE) => {
            let wait_s = paused.saturating_duration_since(Instant::now()).as_secs();
            anyhow::bail!("the export is throttled for {wait_s} s, longer than a fill waits");
        }
        states = scan.client.export_states() => states.context("reading the full export")?,
    };
    let mut stored = 0;
    // A KB is written by the first batch that names it (the export says the same of it in every
    // batch), as the writer does with getmissingkbs' KBs.
    let mut written = HashSet::new();
    for batch in candidates.chunks(BATCH) {
        if scan.cancel.is_cancelled() {
            return Ok(stored);
        }
        let results = export_results(&states, batch, read_at);
        if results.is_empty() {
            continue;
        }
        let kbs: Vec<MissingKb> = kbs_to_store(&results, &HashSet::new())
            .into_iter()
            .filter(|kb| written.insert(kb.id.clone()))
            .collect();
        let calls = scan.client.counters().read();
        let (api_calls, throttled) = (calls.api_calls as i64, calls.throttled as i64);
        scan.store.write_export_states(scan.run_id, &results, &kbs, api_calls, throttled).await?;
        stored += results.len() as u64;
    }
    // Only once every state is written: a read cut short is read again by the next run.
    scan.store.set_export_read_at(scan.tenant_id, read_at).await?;
    let c = states.counts;
    tracing::info!(
        candidates = candidates.len(),
        stored,
        unknown = candidates.len() as u64 - stored,
        named = states.len(),
        rows = c.rows,
        pages = c.pages,
        rejected = c.rejected,
        malformed = c.malformed,
        "Filled devices from the export"
    );
    Ok(stored)
}

/// The states of `devices` the export names, as of `read_at`; a device it does not name has no
/// result (its state is unknown, not "missing nothing").
fn export_results(
    states: &ExportStates,
    devices: &[PlannedDevice],
    read_at: DateTime<Utc>,
) -> Vec<DeviceResult> {
    devices
        .iter()
        .filter_map(|d| {
            let kbs = states.missing_kbs(&d.machine_id)?;
            Some(DeviceResult {
                device_id: d.device_id,
                scanned_at: read_at,
                last_seen: d.last_seen,
                first_scan: d.first_scan,
                outcome: DeviceOutcome::Ok(kbs),
            })
        })
        .collect()
}
