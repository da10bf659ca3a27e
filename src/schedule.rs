//! Cron ticks (tokio-cron-scheduler, 6 fields, UTC) that start one scan per tenant, never two of
//! the same tenant at once: a tick that finds the tenant's previous scan still running skips it,
//! and each scan stops starting devices when the next tick is due.
//!
//! It also gives the metrics that the alert rules measure a tenant against: the schedule's
//! interval, when scheduling began, the last completed scan as the database has it, and the
//! start of the scan running now.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{RetentionConfig, ScheduleConfig, TenantConfig};
use crate::defender::Client;
use crate::scan::{self, Health, Progress, ScanOptions, Trigger};
use crate::store::Store;

/// A tenant with its long-lived client (token cache and pacer survive between scans).
#[derive(Clone)]
pub struct ScheduledTenant {
    pub config: TenantConfig,
    pub client: Arc<Client>,
}

/// Runs scans on `schedule.cron`, at most `schedule.max_concurrent_scans` at once, until
/// `cancel`; then waits up to `schedule.drain_timeout` for running scans to stop. A scan that
/// panics is noted in `health`. After each scan, history older than `retention` is dropped (once
/// a day).
pub async fn run(
    schedule: ScheduleConfig,
    retention: RetentionConfig,
    tenants: Vec<ScheduledTenant>,
    store: Store,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (cron, drain) = (schedule.cron.as_str(), schedule.drain_timeout);
    let keep_days = retention.keep_days;
    let scheduler = JobScheduler::new().await.context("starting the scheduler")?;
    let tracker = TaskTracker::new();
    let turns = Arc::new(Semaphore::new(schedule.max_concurrent_scans.max(1) as usize));
    let running = Arc::new(Mutex::new(HashSet::<String>::new()));
    let ticks = Arc::new(
        crate::config::parse_cron(cron)
            .map_err(|e| anyhow::anyhow!("schedule.cron {cron:?} {e}"))?,
    );
    let interval = longest_gap(&ticks, Utc::now());
    for tenant in &tenants {
        crate::metrics::tenant_scheduled(&tenant.config.name, interval);
        restore_last_success(&store, &tenant.config.name).await;
    }
    let job = {
        let (tracker, cancel, store) = (tracker.clone(), cancel.clone(), store.clone());
        Job::new_async(cron, move |_, _| {
            let (tracker, cancel, store, running, tenants, health, turns, ticks) = (
                tracker.clone(),
                cancel.clone(),
                store.clone(),
                running.clone(),
                tenants.clone(),
                health.clone(),
                turns.clone(),
                ticks.clone(),
            );
            let tick = Tick::around(&ticks, Utc::now());
            Box::pin(async move {
                let scans = Scans {
                    tracker: &tracker,
                    running: &running,
                    store: &store,
                    health: &health,
                    turns: &turns,
                    ticks: &ticks,
                    keep_days,
                };
                for tenant in tenants {
                    scans.start(tenant, tick, &cancel);
                }
            })
        })
        .with_context(|| format!("invalid schedule.cron {cron:?}"))?
    };
    scheduler.add(job).await.context("adding the scan job")?;
    scheduler.start().await.context("starting the scheduler")?;
    tracing::info!(cron, "Scheduler started");
    cancel.cancelled().await;
    let mut scheduler = scheduler;
    scheduler.shutdown().await.context("stopping the scheduler")?;
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!(drain_s = drain.as_secs(), "Scans did not stop within the drain deadline");
    }
    Ok(())
}

/// How far ahead [`longest_gap`] looks, and how many ticks it takes at most.
const GAP_HORIZON: chrono::TimeDelta = chrono::TimeDelta::days(8);
const GAP_TICKS: usize = 10_000;

/// The longest time between two consecutive ticks after `now`, over the next eight days (a
/// weekday schedule's weekend included) or 10,000 ticks, and at least the next two: the interval
/// against which a tenant's scans are overdue.
fn longest_gap(cron: &croner::Cron, now: DateTime<Utc>) -> Duration {
    let ticks: Vec<DateTime<Utc>> = cron
        .iter_after(now)
        .take(GAP_TICKS)
        .enumerate()
        .take_while(|(i, tick)| *i < 2 || *tick <= now + GAP_HORIZON)
        .map(|(_, tick)| tick)
        .collect();
    let gaps = ticks.windows(2).filter_map(|pair| (pair[1] - pair[0]).to_std().ok());
    gaps.max().unwrap_or(GAP_HORIZON.to_std().expect("eight days is positive"))
}

/// Sets `kbwatch_last_success_timestamp_seconds` and `kbwatch_last_progress_timestamp_seconds`
/// from the tenant's latest completed run, and latest run that stored results, in the
/// database, so that a restart does not hide a tenant whose scans stopped completing, and a
/// replica that scans nothing still shows the tenant's state.
async fn restore_last_success(store: &Store, tenant: &str) {
    match store.last_completed(tenant).await {
        Ok((completed, stored)) => {
            if let Some(at) = completed {
                crate::metrics::last_success_at(tenant, SystemTime::from(at));
            }
            if let Some(at) = stored {
                crate::metrics::progress_at(tenant, SystemTime::from(at));
            }
        }
        Err(e) => tracing::warn!(
            tenant,
            error = format!("{e:#}"),
            "Reading the last completed scan for the metrics failed"
        ),
    }
}

/// The cron tick a job run belongs to and when the next one is due. The scheduler polls, so a
/// run starts up to ~0.5 s after its tick: the tick is the latest occurrence at or before now,
/// which every replica computes alike.
#[derive(Debug, Clone, Copy)]
struct Tick {
    at: Option<DateTime<Utc>>,
    deadline: Option<tokio::time::Instant>,
}

impl Tick {
    fn around(cron: &croner::Cron, now: DateTime<Utc>) -> Tick {
        let at = cron.find_previous_occurrence(&now, true).ok();
        let deadline = cron
            .find_next_occurrence(&now, false)
            .ok()
            .and_then(|next| (next - now).to_std().ok())
            .map(|left| tokio::time::Instant::now() + left);
        Tick { at, deadline }
    }
}

/// What starting a scan needs from the scheduler.
struct Scans<'a> {
    tracker: &'a TaskTracker,
    running: &'a Arc<Mutex<HashSet<String>>>,
    store: &'a Store,
    health: &'a Arc<Health>,
    /// One permit per scan that may run now.
    turns: &'a Arc<Semaphore>,
    ticks: &'a Arc<croner::Cron>,
    /// `retention.keep_days`, for each scan.
    keep_days: Option<u32>,
}

impl Scans<'_> {
    fn start(&self, tenant: ScheduledTenant, tick: Tick, cancel: &CancellationToken) {
        let name = tenant.config.name.clone();
        if !self.running.lock().expect("running-set lock is never poisoned").insert(name.clone()) {
            tracing::warn!(tenant = %name, "Previous scan still running; skipping this tick");
            return;
        }
        let (store, health, cancel) = (self.store.clone(), self.health.clone(), cancel.clone());
        let (turns, ticks, keep_days) = (self.turns.clone(), self.ticks.clone(), self.keep_days);
        // Frees the tenant for the next tick however this task ends, a panic included.
        let guard = Running { set: self.running.clone(), name: name.clone() };
        self.tracker.spawn(async move {
            // Waiting for a turn counts as running: the next tick skips a tenant still waiting.
            let _turn = tokio::select! {
                _ = cancel.cancelled() => return,
                turn = turns.acquire_owned() => turn.expect("the semaphore is never closed"),
            };
            // A scan that waited for its turn past the next tick still has until the tick after
            // that: it scans late rather than not at all (the semaphore serves in order, so the
            // tenants that waited go first).
            let deadline = Tick::around(&ticks, Utc::now()).deadline;
            crate::metrics::scan_running(&name, true);
            let options = ScanOptions {
                trigger: Trigger::Schedule,
                deadline,
                scheduled_for: tick.at,
                keep_days,
                ..ScanOptions::default()
            };
            let result = scan::scan_tenant(
                &store,
                &tenant.config,
                tenant.client,
                &options,
                Arc::new(Progress::default()),
                &cancel,
            )
            .await;
            if let Err(e) = result {
                health.record(&e);
                tracing::error!(tenant = %name, error = format!("{e:#}"), "Scan failed");
            }
            drop(guard);
        });
    }
}

/// A tenant's place in the set of running scans, left when dropped.
struct Running {
    set: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A poisoned lock still holds the set: a panic elsewhere must not keep the tenant out.
        let mut set = self.set.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.remove(&self.name);
        crate::metrics::scan_running(&self.name, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(cron: &str, now: &str) -> Duration {
        let now = DateTime::parse_from_rfc3339(now).unwrap().with_timezone(&Utc);
        longest_gap(&crate::config::parse_cron(cron).unwrap(), now)
    }

    #[test]
    fn the_interval_is_the_longest_gap_between_ticks() {
        assert_eq!(gap("0 0 * * * *", "2026-12-02T10:30:00Z"), Duration::from_secs(3600));
        assert_eq!(gap("*/2 * * * * *", "2026-12-02T10:30:00Z"), Duration::from_secs(2));
        assert_eq!(gap("0 0 6,18 * * *", "2026-12-02T10:30:00Z"), Duration::from_secs(12 * 3600));
        // Weekdays at 09:00, asked on a Wednesday: the weekend's gap, Friday to Monday.
        let weekdays = gap("0 0 9 * * Mon-Fri", "2026-12-02T10:30:00Z");
        assert_eq!(weekdays, Duration::from_secs(3 * 24 * 3600));
        // Monthly: past the eight-day horizon, the next two ticks still count.
        let monthly = gap("0 0 0 1 * *", "2026-12-02T10:30:00Z");
        assert_eq!(monthly, Duration::from_secs(31 * 24 * 3600), "1 January to 1 February");
    }
}
