//! The writer task: batches device results and commits them every `batch_size` devices or every
//! `flush_every`, whichever comes first, retrying a failed commit with backoff.
//!
//! Two batches may be committing at once, each on its own connection: a batch's statements keep
//! one PostgreSQL backend busy, and a second lets the database use the other core while the first
//! waits on its commit. Batches hold distinct devices, so their transactions touch distinct rows
//! except the run's counters, which they add to.
//!
//! Most devices of a fleet miss the same few hundred KBs: a KB is stored by the first batch that
//! reports it and again only when what the API says of it changes, not by every batch.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::model::{CallCounters, DeviceResult, MissingKb, RunCounters};
use crate::store::{Store, kbs_to_store};

/// Commit attempts for one batch before the scan gives up on storing (about a minute in all).
const WRITE_ATTEMPTS: u32 = 12;
/// Batches committing at once.
const COMMITS_IN_FLIGHT: usize = 2;

/// A committed batch's counts, and the KBs it stored.
type Committed = anyhow::Result<(RunCounters, Vec<MissingKb>)>;

/// What the committed batches have stored so far.
#[derive(Default)]
struct Stored {
    total: RunCounters,
    kbs: HashSet<MissingKb>,
}

/// Runs until the channel closes; returns the counts committed, with the error that stopped it.
pub(super) async fn write_loop(
    store: Store,
    run_id: i64,
    mut rx: mpsc::Receiver<DeviceResult>,
    calls: Arc<CallCounters>,
    batch_size: usize,
    flush_every: Duration,
) -> Result<RunCounters, (RunCounters, anyhow::Error)> {
    let mut stored = Stored::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut commits: JoinSet<Committed> = JoinSet::new();
    let mut ticker = tokio::time::interval(flush_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failure = None;
    loop {
        let closed = tokio::select! {
            received = rx.recv() => match received {
                Some(result) => {
                    batch.push(result);
                    if batch.len() < batch_size { continue }
                    false
                }
                None => true,
            },
            _ = ticker.tick() => false,
        };
        if !batch.is_empty() {
            if commits.len() >= COMMITS_IN_FLIGHT {
                failure = failure.or(join_one(&mut commits, &mut stored).await);
            }
            if failure.is_some() {
                break;
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            // A KB that a batch still in flight is storing is stored by this one too.
            let kbs = kbs_to_store(&full, &stored.kbs);
            commits.spawn(flush(store.clone(), run_id, full, kbs, calls.clone()));
        }
        if closed {
            break;
        }
    }
    while !commits.is_empty() {
        failure = failure.or(join_one(&mut commits, &mut stored).await);
    }
    match failure {
        Some(e) => Err((stored.total, e)),
        None => Ok(stored.total),
    }
}

/// Waits for one commit to end: what it stored joins `stored`, or its error is returned.
async fn join_one(commits: &mut JoinSet<Committed>, stored: &mut Stored) -> Option<anyhow::Error> {
    match commits.join_next().await? {
        Ok(Ok((counters, kbs))) => {
            stored.total.add(counters);
            stored.kbs.extend(kbs);
            None
        }
        Ok(Err(e)) => Some(e),
        Err(e) => Some(anyhow::anyhow!("a commit task failed: {e}")),
    }
}

async fn flush(
    store: Store,
    run_id: i64,
    mut batch: Vec<DeviceResult>,
    kbs: Vec<MissingKb>,
    calls: Arc<CallCounters>,
) -> Committed {
    let mut attempt = 0;
    loop {
        let seen = calls.read();
        let (api_calls, throttled) = (seen.api_calls as i64, seen.throttled as i64);
        match store.write_results(run_id, &batch, &kbs, api_calls, throttled).await {
            Ok(counters) => return Ok((counters, kbs)),
            Err(e) if attempt + 1 < WRITE_ATTEMPTS => {
                attempt += 1;
                // The failed attempt may have committed: the retry looks for what it stored.
                batch.iter_mut().for_each(|r| r.first_scan = false);
                let delay = Duration::from_millis(250 * (1 << attempt.min(5)));
                tracing::warn!(
                    error = format!("{e:#}"),
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "Storing results failed; retrying"
                );
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}
