//! The writer task: batches device results and commits them every `batch_size` devices or every
//! `flush_every`, whichever comes first, retrying a failed commit with backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::defender::Client;
use crate::store::{DeviceResult, RunCounters, Store};

/// Commit attempts for one batch before the scan gives up on storing (about a minute in all).
const WRITE_ATTEMPTS: u32 = 12;

/// Runs until the channel closes; returns the counts committed, with the error that stopped it.
pub(super) async fn write_loop(
    store: Store,
    run_id: i64,
    mut rx: mpsc::Receiver<DeviceResult>,
    client: Arc<Client>,
    batch_size: usize,
    flush_every: Duration,
) -> Result<RunCounters, (RunCounters, anyhow::Error)> {
    let mut total = RunCounters::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut ticker = tokio::time::interval(flush_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            match flush(&store, run_id, &batch, &client).await {
                Ok(counters) => add(&mut total, counters),
                Err(e) => return Err((total, e)),
            }
            batch.clear();
        }
        if closed {
            return Ok(total);
        }
    }
}

async fn flush(
    store: &Store,
    run_id: i64,
    batch: &[DeviceResult],
    client: &Client,
) -> anyhow::Result<RunCounters> {
    let mut attempt = 0;
    loop {
        let calls = client.counters();
        let api_calls = calls.api_calls.load(Ordering::Relaxed) as i64;
        let throttled = calls.throttled.load(Ordering::Relaxed) as i64;
        match store.write_results(run_id, batch, api_calls, throttled).await {
            Ok(counters) => return Ok(counters),
            Err(e) if attempt + 1 < WRITE_ATTEMPTS => {
                attempt += 1;
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

fn add(total: &mut RunCounters, c: RunCounters) {
    total.ok += c.ok;
    total.not_found += c.not_found;
    total.failed += c.failed;
}
