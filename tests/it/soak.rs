//! Soak: 200 scans of an evolving fleet. Every snapshot stays equal to the simulator's truth at
//! its scan, and memory stops growing after the first scans. Long: run with `bash scripts/soak.sh`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kbwatch::sim::{Evolution, SimConfig};
use kbwatch::store::RunStatus;

use crate::helpers::{Auth, spawn_app, triples};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: bash scripts/soak.sh"]
async fn two_hundred_scans_of_an_evolving_fleet_stay_exact() {
    let scans: usize =
        std::env::var("KBWATCH_SOAK_SCANS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 100000000\nconcurrency = 8\n";
    let app = spawn_app(
        SimConfig { devices: 300, seed: 5, ..SimConfig::default() },
        Auth::TokenFile,
        quota,
    )
    .await;
    let client = app.client();
    let mut truths = BTreeMap::new();
    let mut rss_early = 0;
    for n in 1..=scans {
        if n > 1 {
            app.sim.evolve(Evolution {
                install_updates: 0.05,
                new_monthly_kb: n % 30 == 0,
                add_devices: 2,
                offboard_devices: 1,
                duplicate_devices: usize::from(n % 50 == 0),
            });
        }
        let truth = triples(&app.sim.truth());
        let summary = app.scan_with(Arc::clone(&client)).await;
        assert_eq!(summary.status, RunStatus::Completed, "scan {n}: {summary:?}");
        truths.insert(summary.scan_run_id, truth);
        if n == 20.min(scans) {
            rss_early = rss_kib();
        }
    }
    let rss_late = rss_kib();
    for (run, truth) in &truths {
        assert_eq!(&app.snapshot(*run).await, truth, "snapshot of run {run}");
    }
    println!("soak: {scans} scans, RSS {rss_early} KiB after 20, {rss_late} KiB at the end");
    assert!(rss_late <= rss_early + rss_early / 5, "memory grew: {rss_early} KiB → {rss_late} KiB");
}
