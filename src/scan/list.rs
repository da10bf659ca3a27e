//! The listing phase: page through the device list and store each page, handing the devices to
//! request to the fan-out as soon as they are known.
//!
//! Devices this listing sees first have never been scanned, so they lead the plan: each stored
//! slice's new devices go to the fan-out at once, and requests run while the rest is listed and
//! stored. Once the fan-out falls behind (a page starts with more than a page of devices handed
//! over and not yet requested), later pages' new devices wait in the store instead of in memory.
//! The rest is planned from the store once the listing is complete, ordered by need; with the
//! export on, the devices it says changed come first among them (`changes`, read meanwhile).

use std::sync::atomic::Ordering;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};

use super::changes;
use super::handoff::Handoff;
use super::run::{Scan, until};
use crate::model::{PlannedDevice, validate_machine_id};
use crate::pacer::Endpoint;
use crate::store::{HandedOver, ListedDevice};

/// Devices per upsert statement.
const UPSERT_ROWS: usize = 1000;
/// Upsert statements in flight at once, each on a connection of its own: a slice is bound by
/// PostgreSQL's CPU.
const UPSERTS_IN_FLIGHT: usize = 2;

pub(super) struct Listing {
    pub listed: u64,
    pub rejected: u64,
    pub planned: u64,
    /// The `device_id`s handed to the fan-out: the export fills none of them.
    pub requested: Vec<i64>,
    /// Devices stored from the export (`fill`), once the listing is complete.
    pub from_export: u64,
}

/// How the listing ended.
pub(super) enum Listed {
    Complete(Listing),
    /// Shutdown came first.
    Shutdown,
    /// The next tick came first (a paused or slow listing): the next run lists again.
    Deadline,
}

/// Lists and stores every device, sending the devices to request to `plan` (see the module
/// docs), until shutdown or the run's deadline. Unlisted devices are marked gone only after a
/// complete listing. With the export on, what it says changed is read meanwhile (`changes`).
pub(super) async fn list_devices(scan: &Scan<'_>, plan: Handoff) -> anyhow::Result<Listed> {
    let listed_at = Utc::now();
    let mut plan = Plan::new(scan, plan, listed_at).await;
    // Stops reading the changes when the listing ends without a plan to make.
    let no_plan = scan.cancel.child_token();
    let listing = async {
        let listing = list_pages(scan, &mut plan, listed_at).await;
        if !matches!(listing, Ok(Listed::Complete(_))) {
            no_plan.cancel();
        }
        listing
    };
    let (listing, changed) = tokio::join!(listing, changes::changed_devices(scan, &no_plan));
    let Listing { listed, rejected, .. } = match listing? {
        Listed::Complete(listing) => listing,
        ended => return Ok(ended),
    };
    let gone = scan.store.mark_unlisted_gone(scan.tenant_id, scan.run_id, listed_at).await?;
    let known = scan
        .store
        .plan_devices(
            scan.tenant_id,
            scan.run_id,
            plan.handed_over,
            Utc::now(),
            scan.tenant.rescan_after,
            &changed,
        )
        .await?;
    plan.send(known);
    let (planned, requested) = plan.finish();
    scan.store.set_run_plan(scan.run_id, listed as i32, planned as i32, rejected as i32).await?;
    tracing::info!(listed, rejected, gone, planned, changed = changed.len(), "Listed devices");
    crate::metrics::fleet_devices(&scan.tenant.name, listed);
    Ok(Listed::Complete(Listing { listed, rejected, planned, requested, from_export: 0 }))
}

/// Pages through the device list, storing each page and handing its new devices to `plan`; the
/// counts of a complete listing (nothing planned yet).
async fn list_pages(
    scan: &Scan<'_>,
    plan: &mut Plan<'_>,
    listed_at: DateTime<Utc>,
) -> anyhow::Result<Listed> {
    let mut pager = scan.client.machines(scan.tenant.device_filter.as_deref());
    let (mut listed, mut rejected) = (0u64, 0u64);
    loop {
        let page = tokio::select! {
            _ = scan.cancel.cancelled() => return Ok(Listed::Shutdown),
            () = until(scan.options.deadline) => return Ok(Listed::Deadline),
            page = pager.next_page() => page.context("listing devices")?,
        };
        let Some(machines) = page else { break };
        if machines.is_empty() {
            continue;
        }
        plan.page_starts();
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
        let mut stored = futures::stream::iter(upserts).buffer_unordered(UPSERTS_IN_FLIGHT);
        while let Some(new) = stored.try_next().await? {
            plan.stored(new);
        }
    }
    // The pager remembers every id it listed (to drop repeats), freed here before the plan is read.
    Ok(Listed::Complete(Listing {
        listed,
        rejected,
        planned: 0,
        requested: Vec::new(),
        from_export: 0,
    }))
}

/// The plan as it is handed to the fan-out, within what the quota reaches before the next tick.
struct Plan<'a> {
    scan: &'a Scan<'a>,
    to_fanout: Handoff,
    /// Whether new devices are handed over as they are stored.
    streaming: bool,
    handed_over: HandedOver,
    budget: usize,
    /// The `device_id`s handed over.
    sent: Vec<i64>,
    left_out: u64,
}

impl<'a> Plan<'a> {
    async fn new(scan: &'a Scan<'a>, to_fanout: Handoff, listed_at: DateTime<Utc>) -> Self {
        let budget = match scan.options.deadline {
            Some(deadline) => {
                let horizon = deadline.saturating_duration_since(tokio::time::Instant::now());
                scan.client.pacer().budget(Endpoint::MissingKbs, horizon).await
            }
            None => usize::MAX,
        };
        let handed_over = HandedOver { listed_at, through: 0 };
        let sent = Vec::new();
        Plan { scan, to_fanout, streaming: true, handed_over, budget, sent, left_out: 0 }
    }

    /// A page is about to be stored: its new devices are handed over as they are stored only if
    /// every earlier page's were and the fan-out is less than a page behind.
    fn page_starts(&mut self) {
        self.streaming &= self.to_fanout.waiting() <= u64::from(self.scan.tenant.page_size);
    }

    /// The new, requestable devices of a stored slice: handed over now, or left in the store for
    /// the plan drawn after the listing (which takes the devices above `handed_over.through`).
    fn stored(&mut self, new: Vec<PlannedDevice>) {
        if self.streaming {
            let through = new.iter().map(|d| d.device_id).max().unwrap_or(0);
            self.handed_over.through = self.handed_over.through.max(through);
            self.send(new);
        }
    }

    /// Hands devices over in order, while the budget lasts.
    fn send(&mut self, devices: Vec<PlannedDevice>) {
        for device in devices {
            if self.budget == 0 {
                self.left_out += 1;
                continue;
            }
            self.budget -= 1;
            self.sent.push(device.device_id);
            self.scan.progress.planned.fetch_add(1, Ordering::Relaxed);
            self.to_fanout.send(device);
        }
    }

    /// The number of devices handed over, and their `device_id`s; the fan-out ends when it has
    /// requested them.
    fn finish(self) -> (u64, Vec<i64>) {
        let planned = self.sent.len() as u64;
        if self.left_out > 0 {
            tracing::info!(
                planned,
                left_out = self.left_out,
                "The quota reaches only part of the fleet before the next run; scanning the devices that need it most"
            );
        }
        (planned, self.sent)
    }
}
