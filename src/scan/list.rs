//! The listing phase: page through the device list, store each page, then draw the plan.

use anyhow::Context as _;
use chrono::Utc;
use futures::{StreamExt as _, TryStreamExt as _};

use super::Scan;
use crate::defender::validate_machine_id;
use crate::pacer::Endpoint;
use crate::store::{ListedDevice, PlannedDevice};

/// Devices per upsert statement.
const UPSERT_ROWS: usize = 1000;
/// Upsert statements in flight at once, each on a connection of its own: a slice is bound by
/// PostgreSQL's CPU, and a page is stored while nothing else runs.
const UPSERTS_IN_FLIGHT: usize = 2;

pub(super) struct Listing {
    pub listed: u64,
    pub rejected: u64,
    pub plan: Vec<PlannedDevice>,
}

/// Lists and stores every device; `Ok(None)` on shutdown. Unlisted devices are marked gone only
/// after a complete listing.
pub(super) async fn list_devices(scan: &Scan<'_>) -> anyhow::Result<Option<Listing>> {
    let listed_at = Utc::now();
    let mut pager = scan.client.machines(scan.tenant.device_filter.as_deref());
    let (mut listed, mut rejected) = (0u64, 0u64);
    loop {
        let page = tokio::select! {
            _ = scan.cancel.cancelled() => return Ok(None),
            page = pager.next_page() => page.context("listing devices")?,
        };
        let Some(machines) = page else { break };
        if machines.is_empty() {
            continue;
        }
        let devices: Vec<ListedDevice<'_>> = machines
            .iter()
            .map(|m| match validate_machine_id(&m.id) {
                Some(id) => ListedDevice { machine_id: id.as_str().to_owned(), id_valid: true, machine: m },
                None => {
                    tracing::warn!(machine_id = ?m.id, "Rejected a device whose id is not 40 hex digits; it will not be requested");
                    ListedDevice { machine_id: m.id.clone(), id_valid: false, machine: m }
                }
            })
            .collect();
        listed += devices.len() as u64;
        rejected += devices.iter().filter(|d| !d.id_valid).count() as u64;
        // In slices: one statement's encoded arguments for a whole 10,000-device page are tens of MB.
        // Slices hold distinct devices, so concurrent upserts never wait on each other's rows.
        // (Collected first: a lazily mapped iterator in the stream is not `Send` enough to spawn.)
        let upserts: Vec<_> = devices
            .chunks(UPSERT_ROWS)
            .map(|slice| {
                scan.store.upsert_listed_devices(scan.tenant_id, scan.run_id, listed_at, slice)
            })
            .collect();
        futures::stream::iter(upserts)
            .buffer_unordered(UPSERTS_IN_FLIGHT)
            .try_collect::<()>()
            .await?;
    }
    // The pager remembers every id it listed (to drop repeats): free that before the plan is read.
    drop(pager);
    let gone = scan.store.mark_unlisted_gone(scan.tenant_id, scan.run_id, listed_at).await?;
    let mut plan = scan
        .store
        .plan_devices(scan.tenant_id, scan.run_id, Utc::now(), scan.tenant.rescan_after)
        .await?;
    if let Some(deadline) = scan.options.deadline {
        // The plan is ordered by need: keep what the quota can reach before the next tick.
        let horizon = deadline.saturating_duration_since(tokio::time::Instant::now());
        let budget = scan.client.pacer().budget(Endpoint::MissingKbs, horizon).await;
        if plan.len() > budget {
            tracing::info!(
                planned = plan.len(),
                budget,
                "The quota reaches only part of the fleet before the next run; scanning the devices that need it most"
            );
            plan.truncate(budget);
        }
    }
    scan.store.set_run_plan(scan.run_id, listed as i32, plan.len() as i32, rejected as i32).await?;
    tracing::info!(listed, rejected, gone, planned = plan.len(), "Listed devices");
    Ok(Some(Listing { listed, rejected, plan }))
}
