//! Row 1: how much of the quota a scan spends, against a simulator that enforces exactly the
//! configured sliding windows, beside two governor pacers at the same quota.
//!
//! "Calls the windows admit in T": starting with empty windows, a sliding minute window of N calls
//! admits at most N calls in each of the half-open minutes [0, 60 s), [60 s, 120 s), … of the
//! interval [0, T) (a call admitted at t leaves the window at t + 60 s, so the best a client can do
//! is N at 0, N at 60 s, …), so N × ceil(T / 60 s), and never more than the hour window's M:
//! `min(N × ceil(T / 60 s), M)` for T ≤ 1 h. T starts at the first getmissingkbs request the
//! simulator receives; "calls made" are the requests it admitted (not answered 429) within T.

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use governor::{Quota, RateLimiter};
use kbwatch::scan::ScanOptions;
use kbwatch::sim::{Sim, SimQuota};
use tokio_util::sync::CancellationToken;

use crate::kit::TestApp;
use crate::kit::auth::STATIC_TOKEN;
use crate::setup::{Setup, finish, start};
use crate::table::{Row, thousands};

/// The scaled quota: 12 × the default 100/min, and the default's hour-to-minute ratio of 15.
const QUOTA: SimQuota = SimQuota { per_minute: 1200, per_hour: 18_000 };
const CONCURRENCY: u32 = 8;

/// What one pacer achieved within the window.
pub struct Spent {
    pub admitted: u64,
    pub throttled: u64,
}

/// The most calls the windows admit in `window` from a cold start (see the module doc).
fn admissible(window: Duration) -> u64 {
    admissible_at(QUOTA, window)
}

/// The most calls `quota`'s windows admit in `window` from a cold start.
pub fn admissible_at(quota: SimQuota, window: Duration) -> u64 {
    let minutes = window.as_secs_f64() / 60.0;
    (u64::from(quota.per_minute) * minutes.ceil() as u64).min(u64::from(quota.per_hour))
}

pub async fn run(window: Duration) -> Vec<Row> {
    // Enough devices that no pacer runs out within the window.
    let devices = QUOTA.per_minute as usize * (window.as_secs() as usize / 60 + 3);
    let setup = || Setup {
        devices,
        server_quota: Some(QUOTA),
        client_quota: Some(QUOTA),
        concurrency: CONCURRENCY,
    };
    let (kbwatch, steady, bursty) =
        (start(setup()).await, start(setup()).await, start(setup()).await);
    let per_minute = NonZeroU32::new(QUOTA.per_minute).expect("a non-zero quota");
    let (ours, steady_spent, bursty_spent) = tokio::join!(
        spend(&kbwatch.sim, window, |stop| scan_until(&kbwatch, stop)),
        spend(&steady.sim, window, |stop| {
            governed(&steady, Quota::per_minute(per_minute).allow_burst(NonZeroU32::MIN), stop)
        }),
        spend(&bursty.sim, window, |stop| governed(&bursty, Quota::per_minute(per_minute), stop)),
    );
    for bench in [kbwatch, steady, bursty] {
        finish(bench).await;
    }
    rows(window, &ours, &steady_spent, &bursty_spent)
}

/// Drives `pacer` until the window after its first getmissingkbs request has passed, then stops it.
pub async fn spend<F, Fut>(sim: &Sim, window: Duration, pacer: F) -> Spent
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let stop = CancellationToken::new();
    let stats = sim.clone_stats_handle();
    let measure = async {
        while stats().kbs_requests == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(window).await;
        let s = stats();
        stop.cancel();
        Spent { admitted: s.kbs_requests - s.throttled, throttled: s.throttled }
    };
    let (spent, ()) = tokio::join!(measure, pacer(stop.clone()));
    spent
}

/// A scan as `kbwatch scan` runs it, until `stop`.
pub async fn scan_until(bench: &TestApp, stop: CancellationToken) {
    bench.scan_with_options(bench.client(), &ScanOptions::default(), &stop).await;
}

/// A bare loop paced by governor: each of `CONCURRENCY` slots waits for the limiter, then requests
/// the next device; a 429 is counted by the simulator and the loop goes on.
async fn governed(bench: &TestApp, quota: Quota, stop: CancellationToken) {
    let limiter = Arc::new(RateLimiter::direct(quota));
    let http = reqwest::Client::new();
    let base = bench.sim.base_url();
    let ids = bench.sim.device_ids();
    let requests = ids.iter().cycle().map(|id| {
        let mut url = base.clone();
        url.path_segments_mut().expect("the simulator URL has a path").extend([
            "api",
            "machines",
            id,
            "getmissingkbs",
        ]);
        let (limiter, http) = (limiter.clone(), http.clone());
        async move {
            limiter.until_ready().await;
            if let Ok(response) = http.get(url).bearer_auth(STATIC_TOKEN).send().await {
                let _ = response.bytes().await;
            }
        }
    });
    let looping = futures::stream::iter(requests)
        .buffer_unordered(CONCURRENCY as usize)
        .for_each(|()| async {});
    tokio::select! {
        () = looping => {}
        () = stop.cancelled() => {}
    }
}

fn rows(window: Duration, ours: &Spent, steady: &Spent, bursty: &Spent) -> Vec<Row> {
    let max = admissible(window);
    let figure = |s: &Spent| {
        format!(
            "{:.1} % ({} of {}), {} × 429",
            s.admitted as f64 / max as f64 * 100.0,
            thousands(s.admitted),
            thousands(max),
            thousands(s.throttled)
        )
    };
    let quota = format!(
        "{}/min and {}/h",
        thousands(QUOTA.per_minute.into()),
        thousands(QUOTA.per_hour.into())
    );
    vec![
        Row::judged(
            &format!("quota use in {} s, server enforcing {quota}: kbwatch scan", window.as_secs()),
            figure(ours),
            "≥ 97 %, zero 429s",
            ours.admitted as f64 >= 0.97 * max as f64 && ours.throttled == 0,
        ),
        Row::context(
            "  governor steady rate at the same quota (burst 1, 20 calls/s)",
            figure(steady),
        ),
        Row::context("  governor `Quota::per_minute(1200)` (burst 1,200)", figure(bursty)),
    ]
}
