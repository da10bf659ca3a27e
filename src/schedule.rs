//! Cron ticks (tokio-cron-scheduler, 6 fields, UTC) that start one scan per tenant, never two of
//! the same tenant at once: a tick that finds the tenant's previous scan still running skips it,
//! and each scan stops starting devices when the next tick is due.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ScheduleConfig, TenantConfig};
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
/// panics is noted in `health`.
pub async fn run(
    schedule: ScheduleConfig,
    tenants: Vec<ScheduledTenant>,
    store: Store,
    health: Arc<Health>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let (cron, drain) = (schedule.cron.as_str(), schedule.drain_timeout);
    let scheduler = JobScheduler::new().await.context("starting the scheduler")?;
    let tracker = TaskTracker::new();
    let turns = Arc::new(Semaphore::new(schedule.max_concurrent_scans.max(1) as usize));
    let running = Arc::new(Mutex::new(HashSet::<String>::new()));
    let ticks = crate::config::parse_cron(cron)
        .map_err(|e| anyhow::anyhow!("schedule.cron {cron:?} {e}"))?;
    let job = {
        let (tracker, cancel, store) = (tracker.clone(), cancel.clone(), store.clone());
        Job::new_async(cron, move |_, _| {
            let (tracker, cancel, store, running, tenants, health, turns) = (
                tracker.clone(),
                cancel.clone(),
                store.clone(),
                running.clone(),
                tenants.clone(),
                health.clone(),
                turns.clone(),
            );
            let tick = Tick::around(&ticks, Utc::now());
            Box::pin(async move {
                let scans = Scans {
                    tracker: &tracker,
                    running: &running,
                    store: &store,
                    health: &health,
                    turns: &turns,
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
}

impl Scans<'_> {
    fn start(&self, tenant: ScheduledTenant, tick: Tick, cancel: &CancellationToken) {
        let name = tenant.config.name.clone();
        if !self.running.lock().expect("running-set lock is never poisoned").insert(name.clone()) {
            tracing::warn!(tenant = %name, "Previous scan still running; skipping this tick");
            return;
        }
        let (store, health, cancel) = (self.store.clone(), self.health.clone(), cancel.clone());
        let turns = self.turns.clone();
        // Frees the tenant for the next tick however this task ends, a panic included.
        let guard = Running { set: self.running.clone(), name: name.clone() };
        self.tracker.spawn(async move {
            // Waiting for a turn counts as running: the next tick skips a tenant still waiting.
            let _turn = tokio::select! {
                _ = cancel.cancelled() => return,
                turn = turns.acquire_owned() => turn.expect("the semaphore is never closed"),
            };
            let options = ScanOptions {
                trigger: Trigger::Schedule,
                deadline: tick.deadline,
                scheduled_for: tick.at,
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
    }
}
