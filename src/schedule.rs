//! Cron ticks (tokio-cron-scheduler, 6 fields, UTC) that start one scan per tenant, never two of
//! the same tenant at once: a tick that finds the tenant's previous scan still running skips it,
//! and each scan stops starting devices when the next tick is due.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::TenantConfig;
use crate::defender::Client;
use crate::scan::{self, Progress, ScanOptions, Trigger};
use crate::store::Store;

/// A tenant with its long-lived client (token cache and pacer survive between scans).
#[derive(Clone)]
pub struct ScheduledTenant {
    pub config: TenantConfig,
    pub client: Arc<Client>,
}

/// Runs scans on `cron` until `cancel`, then waits up to `drain` for running scans to stop.
pub async fn run(
    cron: &str,
    tenants: Vec<ScheduledTenant>,
    store: Store,
    cancel: CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    let scheduler = JobScheduler::new().await.context("starting the scheduler")?;
    let tracker = TaskTracker::new();
    let running = Arc::new(Mutex::new(HashSet::<String>::new()));
    let job = {
        let (tracker, cancel, store) = (tracker.clone(), cancel.clone(), store.clone());
        Job::new_async(cron, move |job_id, mut scheduler| {
            let (tracker, cancel, store, running, tenants) =
                (tracker.clone(), cancel.clone(), store.clone(), running.clone(), tenants.clone());
            Box::pin(async move {
                let next = scheduler.next_tick_for_job(job_id).await.ok().flatten();
                let deadline = next
                    .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
                    .map(|left| tokio::time::Instant::now() + left);
                for tenant in tenants {
                    start_scan(&tracker, &running, &store, tenant, deadline, &cancel);
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

fn start_scan(
    tracker: &TaskTracker,
    running: &Arc<Mutex<HashSet<String>>>,
    store: &Store,
    tenant: ScheduledTenant,
    deadline: Option<tokio::time::Instant>,
    cancel: &CancellationToken,
) {
    let name = tenant.config.name.clone();
    if !running.lock().expect("running-set lock is never poisoned").insert(name.clone()) {
        tracing::warn!(tenant = %name, "Previous scan still running; skipping this tick");
        return;
    }
    let (running, store, cancel) = (running.clone(), store.clone(), cancel.clone());
    tracker.spawn(async move {
        let options =
            ScanOptions { trigger: Trigger::Schedule, deadline, ..ScanOptions::default() };
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
            tracing::error!(tenant = %name, error = format!("{e:#}"), "Scan failed");
        }
        running.lock().expect("running-set lock is never poisoned").remove(&name);
    });
}
