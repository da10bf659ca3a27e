//! Row 2: end-to-end devices per second with no quota (list, request, store in PostgreSQL), and
//! the ratio to a bare HTTP loop that makes the same requests of the same simulator: the device
//! list, then getmissingkbs for each listed device.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kbwatch::model::RunStatus;
use kbwatch::scan::{ScanOptions, ScanSummary};
use tokio_util::sync::CancellationToken;

use crate::cpu::{CpuClock, CpuTimes};
use crate::kit::TestApp;
use crate::kit::auth::STATIC_TOKEN;
use crate::setup::{Setup, finish, start};
use crate::table::{Row, thousands};

/// Requests in flight, for kbwatch and for the bare loop alike (kbwatch's default).
const CONCURRENCY: u32 = 8;

/// Rounds of the comparison; each side's figure is its best round.
const ROUNDS: usize = 3;

/// One round: the bare loop once, then kbwatch's first scan into an empty database and a second
/// scan of the same fleet, against one simulator.
struct Round {
    bare: Loop,
    bare_cpu: CpuTimes,
    first: ScanSummary,
    first_cpu: CpuTimes,
    again: ScanSummary,
}

pub async fn run(devices: usize) -> Vec<Row> {
    // Both sides are summarised alike, each by its best round, and take turns within a round, so
    // that neither a cold first pass nor a busy moment of the shared machine decides the ratio. (A
    // first scan needs an empty database: each round has a fresh one.)
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        rounds.push(round(devices).await);
    }
    let best = |time: fn(&Round) -> Duration| {
        rounds.iter().min_by_key(|r| time(r)).expect("at least one round")
    };
    let (bare, bare_cpu) = {
        let r = best(|r| r.bare.total());
        (r.bare, r.bare_cpu)
    };
    let (first, first_cpu) = {
        let r = best(|r| r.first.elapsed);
        (r.first.clone(), r.first_cpu)
    };
    let again = best(|r| r.again.elapsed).again.clone();

    let per_second = |n: u64, t: Duration| n as f64 / t.as_secs_f64();
    let bare_rate = per_second(devices as u64, bare.total());
    let requests_rate = per_second(devices as u64, bare.requests);
    let first_rate = per_second(first.devices.ok as u64, first.elapsed);
    let again_rate = per_second(again.devices.ok as u64, again.elapsed);
    let share = first_rate / bare_rate;
    let n = thousands(devices as u64);
    vec![
        Row::judged(
            &format!("end to end, first scan of {n} devices into an empty database, no quota"),
            format!("{first_rate:.0} devices/s ({:.2} s)", first.elapsed.as_secs_f64()),
            "≥ 1,000 devices/s",
            first_rate >= 1000.0,
        ),
        Row::judged(
            &format!(
                "  vs a bare HTTP loop (reqwest: list, then getmissingkbs {CONCURRENCY} in flight, no DB)"
            ),
            format!(
                "{:.0} % ({bare_rate:.0} devices/s, {:.2} s)",
                share * 100.0,
                bare.total().as_secs_f64()
            ),
            "≥ 50 %",
            share >= 0.5,
        ),
        Row::context(
            "    the loop's getmissingkbs requests alone",
            format!(
                "{:.0} % ({requests_rate:.0} requests/s, {:.2} s)",
                first_rate / requests_rate * 100.0,
                bare.requests.as_secs_f64()
            ),
        ),
        Row::context(
            "    CPU time: this process (kbwatch or the loop, and the simulator) + PostgreSQL",
            format!("scan {}, loop {}", cpu_text(first_cpu), cpu_text(bare_cpu)),
        ),
        Row::context(
            "  second scan of the same, unchanged fleet",
            format!("{again_rate:.0} devices/s ({:.2} s)", again.elapsed.as_secs_f64()),
        ),
    ]
}

/// "650 + 600 ms": this process's CPU time, then the server's (when it runs on this machine).
fn cpu_text(cpu: CpuTimes) -> String {
    let ms = |d: Duration| thousands(d.as_millis() as u64);
    match cpu.server {
        Some(server) => format!("{} + {} ms", ms(cpu.process), ms(server)),
        None => format!("{} ms + PostgreSQL's (not on this machine)", ms(cpu.process)),
    }
}

async fn round(devices: usize) -> Round {
    let bench =
        start(Setup { devices, server_quota: None, client_quota: None, concurrency: CONCURRENCY })
            .await;
    let clock = CpuClock::new(&bench.store).await;
    let start = clock.now();
    let bare = bare_loop(&bench).await;
    let bare_cpu = clock.now() - start;
    let client = bench.client();
    let start = clock.now();
    let first = scan(&bench, client.clone()).await;
    let first_cpu = clock.now() - start;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    let again = scan(&bench, client).await;
    assert_eq!(again.status, RunStatus::Completed, "{again:?}");
    finish(bench).await;
    Round { bare, bare_cpu, first, first_cpu, again }
}

/// One scan to its end, as `kbwatch scan` runs it.
async fn scan(bench: &TestApp, client: std::sync::Arc<kbwatch::defender::Client>) -> ScanSummary {
    bench.scan_with_options(client, &ScanOptions::default(), &CancellationToken::new()).await
}

/// The wall times of one pass of the bare loop.
#[derive(Clone, Copy)]
struct Loop {
    listing: Duration,
    requests: Duration,
}

impl Loop {
    fn total(self) -> Duration {
        self.listing + self.requests
    }
}

/// The ids of one page of the device list: all the bare loop reads of it.
#[derive(serde::Deserialize)]
struct Page {
    value: Vec<Listed>,
}

#[derive(serde::Deserialize)]
struct Listed {
    id: String,
}

/// What a scan does over HTTP, and nothing else: one request for the device list (one page holds
/// the fleet), then getmissingkbs for every listed id, `CONCURRENCY` at a time, bodies read and
/// dropped.
async fn bare_loop(bench: &TestApp) -> Loop {
    let http = reqwest::Client::new();
    let base = bench.sim.base_url();
    let started = Instant::now();
    let mut list = base.join("api/machines").expect("the simulator URL is a base");
    list.query_pairs_mut().append_pair("$top", "10000");
    let page: Page = http
        .get(list)
        .bearer_auth(STATIC_TOKEN)
        .send()
        .await
        .expect("the simulator answers")
        .error_for_status()
        .expect("the list succeeds")
        .json()
        .await
        .expect("the list parses");
    let listing = started.elapsed();
    assert!(page.value.len() <= 10_000, "one page holds the benchmark's fleet");
    let started = Instant::now();
    let requests = page.value.iter().map(|device| {
        let mut url = base.clone();
        url.path_segments_mut().expect("the simulator URL has a path").extend([
            "api",
            "machines",
            &device.id,
            "getmissingkbs",
        ]);
        let request = http.get(url).bearer_auth(STATIC_TOKEN).send();
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
    Loop { listing, requests: started.elapsed() }
}
