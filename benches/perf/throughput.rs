//! Row 2: end-to-end devices per second with no quota (list, request, store in PostgreSQL), and
//! the ratio to a bare HTTP loop that requests the same devices from the same simulator.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kbwatch::store::RunStatus;
use tokio_util::sync::CancellationToken;

use crate::setup::{Bench, Setup, TOKEN, drop_database};
use crate::table::{Row, thousands};

/// Requests in flight, for kbwatch and for the bare loop alike (kbwatch's default).
const CONCURRENCY: u32 = 8;

pub async fn run(devices: usize) -> Vec<Row> {
    let bench = Bench::start(Setup {
        devices,
        server_quota: None,
        client_quota: None,
        concurrency: CONCURRENCY,
    })
    .await;
    let ids = bench.sim.device_ids();
    // The loop's best of two, so that the ratio is not flattered by a cold first pass.
    let bare = bare_loop(&bench, &ids).await.min(bare_loop(&bench, &ids).await);
    let client = bench.client();
    let first = bench.scan(client.clone(), &CancellationToken::new()).await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    let again = bench.scan(client, &CancellationToken::new()).await;
    assert_eq!(again.status, RunStatus::Completed, "{again:?}");
    drop_database(bench).await;

    let per_second = |n: u64, t: Duration| n as f64 / t.as_secs_f64();
    let bare_rate = per_second(ids.len() as u64, bare);
    let first_rate = per_second(first.devices.ok as u64, first.elapsed);
    let again_rate = per_second(again.devices.ok as u64, again.elapsed);
    let share = first_rate / bare_rate;
    let n = thousands(devices as u64);
    vec![
        Row::judged(
            &format!("end to end, first scan of {n} devices into an empty database, no quota"),
            format!("{first_rate:.0} devices/s ({:.1} s)", first.elapsed.as_secs_f64()),
            "≥ 1,000 devices/s",
            first_rate >= 1000.0,
        ),
        Row::judged(
            &format!("  vs a bare HTTP loop (reqwest, {CONCURRENCY} in flight, same ids, no DB)"),
            format!("{:.0} % ({bare_rate:.0} requests/s)", share * 100.0),
            "≥ 50 %",
            share >= 0.5,
        ),
        Row::context(
            "  second scan of the same, unchanged fleet",
            format!("{again_rate:.0} devices/s ({:.1} s)", again.elapsed.as_secs_f64()),
        ),
    ]
}

/// getmissingkbs for every id, `CONCURRENCY` at a time, bodies read and dropped; the wall time.
async fn bare_loop(bench: &Bench, ids: &[String]) -> Duration {
    let http = reqwest::Client::new();
    let base = bench.sim.base_url();
    let started = Instant::now();
    let requests = ids.iter().map(|id| {
        let mut url = base.clone();
        url.path_segments_mut().expect("the simulator URL has a path").extend([
            "api",
            "machines",
            id,
            "getmissingkbs",
        ]);
        let request = http.get(url).bearer_auth(TOKEN).send();
        async move {
            let response = request.await.expect("the simulator answers");
            assert!(response.status().is_success(), "{}", response.status());
            response.bytes().await.expect("the body is read").len()
        }
    });
    let bytes: usize = futures::stream::iter(requests)
        .buffer_unordered(CONCURRENCY as usize)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    assert!(bytes > 0);
    started.elapsed()
}
