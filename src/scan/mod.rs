//! One scan of one tenant: list → plan → fan out → hand results to the store.
//!
//! The tenant's advisory lock is held for the whole scan. Device results flow through a bounded
//! channel to a writer task that commits them in batches ([`writer`]); the run row is closed with
//! its status whatever happens after it was opened.

mod changes;
mod ending;
mod fanout;
mod fill;
mod handoff;
mod list;
mod panicked;
mod run;
mod writer;

pub use panicked::{Health, ScanPanicked};
pub use run::{Progress, ScanOptions, ScanSummary, Trigger};

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use anyhow::Context as _;
use futures::FutureExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use run::Scan;

use crate::config::TenantConfig;
use crate::defender::Client;
use crate::model::{CallCount, RunStatus};
use crate::pacer::Endpoint;
use crate::store::{Retention, RunEnd, Store};

/// Scans `tenant` once. `Ok(None)` when another process holds the tenant's lock, or has already
/// scanned the cron tick of `options.scheduled_for`. The client's
/// pacer and token cache carry over between scans; its call counters start at zero for each.
pub async fn scan_tenant(
    store: &Store,
    tenant: &TenantConfig,
    client: Arc<Client>,
    options: &ScanOptions,
    progress: Arc<Progress>,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<ScanSummary>> {
    let tenant_id = store.ensure_tenant(&tenant.name).await?;
    let Some(lock) = store.try_lock_tenant(tenant_id).await? else {
        tracing::info!(tenant = %tenant.name, "Tenant is being scanned by another process; skipping");
        return Ok(None);
    };
    let orphans = store.mark_interrupted(tenant_id).await?;
    if orphans > 0 {
        crate::metrics::scans_orphaned(&tenant.name, orphans);
        tracing::warn!(tenant = %tenant.name, runs = orphans, "Marked runs left running by a stopped process as interrupted");
    }
    let runner = runner_name();
    let Some(run_id) = store
        .start_run(tenant_id, options.trigger.as_str(), options.scheduled_for, &runner)
        .await?
    else {
        tracing::info!(tenant = %tenant.name, tick = ?options.scheduled_for, "Tick already scanned by another process; skipping");
        lock.release().await?;
        return Ok(None);
    };
    let client = Arc::new(client.with_fresh_counters());
    let span = tracing::info_span!("scan", tenant = %tenant.name, scan_run_id = run_id);
    // The scan stops on shutdown, and when its lock is lost to another process.
    let (lock_lost, stop) = (lock.lost(), cancel.child_token());
    let stop_on_loss = {
        let (lost, stop) = (lock_lost.clone(), stop.clone());
        tokio::spawn(async move {
            lost.cancelled().await;
            stop.cancel();
        })
    };
    let scan = Scan {
        store,
        tenant,
        tenant_id,
        run_id,
        client: client.clone(),
        options,
        progress,
        cancel: &stop,
        lock_lost,
    };
    let summary = match AssertUnwindSafe(scan.run().instrument(span)).catch_unwind().await {
        Ok(summary) => summary,
        Err(panic) => Err(panicked::close_run(&scan, panic).await),
    };
    stop_on_loss.abort();
    if let Err(e) = lock.release().await {
        tracing::warn!(
            error = format!("{e:#}"),
            "Releasing the tenant lock failed; it ends with its connection"
        );
    }
    Ok(Some(summary?))
}

/// `hostname:pid`, recorded with each run.
fn runner_name() -> String {
    let host =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// What the run's row was closed with, besides its status and error.
pub(super) struct Closed {
    calls: CallCount,
    effective_per_minute: u32,
}

impl Scan<'_> {
    async fn run(&self) -> anyhow::Result<ScanSummary> {
        let started = Instant::now();
        let ending = self.work().await;
        let closed = self.close(ending.status, ending.error.as_deref()).await?;
        // The views read what is not packed yet: a failure here costs only space until the
        // tenant's next run packs it.
        if let Err(e) = self.store.pack_scans(self.tenant_id).await {
            tracing::warn!(error = format!("{e:#}"), "Packing the run's scans failed");
        }
        if let Err(e) = self.store.pack_intervals(self.tenant_id).await {
            tracing::warn!(error = format!("{e:#}"), "Packing the run's closed intervals failed");
        }
        // The views compute what is not rolled up yet: a failure here costs only read time.
        if let Err(e) = self.store.roll_up_fleet_days().await {
            tracing::warn!(error = format!("{e:#}"), "Rolling up the fleet's days failed");
        }
        if let Err(e) = self.store.roll_up_fleet_states().await {
            tracing::warn!(error = format!("{e:#}"), "Rolling up the fleet's states failed");
        }
        if let Err(e) = self.store.roll_up_kb_fixes().await {
            tracing::warn!(error = format!("{e:#}"), "Rolling up the fixes failed");
        }
        let summary = ScanSummary {
            scan_run_id: self.run_id,
            status: ending.status,
            listed: ending.listed,
            planned: ending.planned,
            rejected: ending.rejected,
            devices: ending.devices,
            api_calls: closed.calls.api_calls,
            throttled: closed.calls.throttled,
            effective_per_minute: closed.effective_per_minute,
            error: ending.error,
            elapsed: started.elapsed(),
        };
        log_summary(&summary);
        self.record_metrics(&summary).await;
        // After the roll-up, and outside the scan's duration.
        if let Some(keep_days) = self.options.keep_days {
            self.drop_old_history(keep_days).await;
        }
        Ok(summary)
    }

    /// Closes the run's row: its status and error, the calls it made and the rate getmissingkbs
    /// was paced at when it ended. Every run, however it ended, is closed here.
    pub(super) async fn close(
        &self,
        status: RunStatus,
        error: Option<&str>,
    ) -> anyhow::Result<Closed> {
        let calls = self.client.counters().read();
        let effective_per_minute =
            self.client.pacer().effective_per_minute(Endpoint::MissingKbs).await;
        let end = RunEnd {
            status,
            api_calls: calls.api_calls as i64,
            throttled: calls.throttled as i64,
            effective_per_minute: effective_per_minute as i32,
            error,
        };
        let closed =
            self.store.finish_run(self.run_id, &end).await.context("closing the scan run")?;
        if !closed {
            tracing::warn!(
                status = status.as_str(),
                "The run was closed by another process meanwhile (its tenant lock was lost); it keeps that status"
            );
        }
        Ok(Closed { calls, effective_per_minute })
    }

    /// `[retention]`: drops the history older than `keep_days` days, if no process did today. A
    /// failure costs only space until the next day's pass, so it does not fail the scan.
    async fn drop_old_history(&self, keep_days: u32) {
        if self.cancel.is_cancelled() {
            return; // shutting down: the pass would stop at once, and today's would be spent
        }
        let d = match self.store.drop_old_history(keep_days, self.cancel).await {
            Ok(Retention::Dropped(d)) => d,
            Ok(Retention::AlreadyDone | Retention::Busy) => return,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "Dropping old history failed; the next day's pass drops it"
                );
                return;
            }
        };
        let rows = [
            ("device_scan", d.device_scans),
            ("missing_kb", d.missing_kbs),
            ("device", d.devices),
            ("fleet_day", d.fleet_days),
            ("fleet_state_day", d.fleet_state_days),
            ("scan_run", d.scan_runs),
        ];
        rows.iter().for_each(|&(table, n)| crate::metrics::retention_dropped(table, n));
        tracing::info!(
            keep_days,
            cutoff = %d.cutoff,
            device_scans = d.device_scans,
            missing_kbs = d.missing_kbs,
            devices = d.devices,
            fleet_days = d.fleet_days,
            fleet_state_days = d.fleet_state_days,
            scan_runs = d.scan_runs,
            finished = d.finished,
            "Dropped history older than the retention"
        );
    }

    /// The scan's metrics; after a completed scan, the fleet totals as the store now has them.
    async fn record_metrics(&self, summary: &ScanSummary) {
        let tenant = self.tenant.name.as_str();
        let d = &summary.devices;
        let status = summary.status.as_str();
        let devices = (d.ok, d.not_found, d.failed, d.from_export);
        crate::metrics::scan_finished(tenant, status, summary.elapsed, devices);
        let stored = summary.status == RunStatus::Completed
            || (summary.status == RunStatus::Partial && d.ok > 0);
        if stored {
            crate::metrics::progress_at(tenant, std::time::SystemTime::now());
        }
        if summary.status != RunStatus::Completed {
            return;
        }
        crate::metrics::last_success(tenant);
        match self.store.fleet_totals(tenant).await {
            Ok((missing_kbs, cve_addressed)) => {
                crate::metrics::fleet_totals(tenant, missing_kbs, cve_addressed);
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "Reading the fleet totals for the metrics failed"
            ),
        }
    }

    /// Lists and requests side by side. The fan-out requests devices as the listing hands them
    /// over, and ends when the listing has handed over its last one. A listing that fails stops
    /// it: requests in flight finish and their results are stored. Once the listing is complete,
    /// the devices the plan left out may be filled from the export ([`fill`]).
    async fn work(&self) -> ending::Ending {
        let (to_fanout, planned) = handoff::handoff();
        let stop_fanout = self.cancel.child_token();
        let listing = async {
            match list::list_devices(self, to_fanout).await {
                // The fan-out requests the plan meanwhile.
                Ok(list::Listed::Complete(mut listing)) => {
                    let requested = std::mem::take(&mut listing.requested);
                    listing.from_export = fill::from_export(self, &requested).await;
                    Ok(list::Listed::Complete(listing))
                }
                listing => {
                    stop_fanout.cancel();
                    listing
                }
            }
        };
        let (listing, fanned) =
            tokio::join!(listing, fanout::scan_devices(self, planned, stop_fanout.clone()));
        if let Err(e) = &listing
            && let Some(api) = e.chain().find_map(|c| c.downcast_ref())
        {
            self.stopped_by(api);
        }
        ending::ending(listing, fanned, self.lock_lost.is_cancelled())
    }
}

fn log_summary(s: &ScanSummary) {
    tracing::info!(
        status = s.status.as_str(),
        listed = s.listed,
        planned = s.planned,
        rejected = s.rejected,
        ok = s.devices.ok,
        from_export = s.devices.from_export,
        not_found = s.devices.not_found,
        failed = s.devices.failed,
        api_calls = s.api_calls,
        throttled = s.throttled,
        effective_per_minute = s.effective_per_minute,
        elapsed_s = s.elapsed.as_secs_f64(),
        error = s.error.as_deref().unwrap_or(""),
        "Scan finished"
    );
}
