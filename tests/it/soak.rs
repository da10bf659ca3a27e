//! Soak: the scheduler on a 2-second cron over an evolving fleet for 200 scans. Every snapshot
//! stays equal to the simulator's truth at its scan, and memory stops growing after the first
//! scans. Long (about 7 minutes): run with `bash scripts/soak.sh` (`KBWATCH_SOAK_SCANS` to change).

use std::collections::BTreeSet;
use std::hash::{Hash as _, Hasher as _};
use std::time::Duration;

use chrono::Utc;
use kbwatch::sim::{Evolution, SimConfig};

use crate::kit::reporting::{self, Triple, triples};
use crate::kit::{Auth, Tenant, fleet, spawn_app};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A digest of a snapshot: keeping 200 full truths would itself grow the memory this test watches.
fn digest(set: &BTreeSet<Triple>) -> (usize, u64) {
    let mut hasher = std::hash::DefaultHasher::new();
    set.hash(&mut hasher);
    (set.len(), hasher.finish())
}

fn evolution(n: usize) -> Evolution {
    Evolution {
        install_updates: 0.05,
        new_monthly_kb: n.is_multiple_of(30),
        add_devices: 1,
        offboard_devices: 1,
        duplicate_devices: usize::from(n.is_multiple_of(50)),
        move_rbac_devices: 0,
        change_devices: 0,
        revise_kbs: 0,
        upgrade_software_devices: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: bash scripts/soak.sh"]
async fn two_hundred_scheduled_scans_of_an_evolving_fleet_stay_exact() {
    let scans: usize =
        std::env::var("KBWATCH_SOAK_SCANS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let sim = SimConfig { seed: 5, ..fleet(300) };
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().concurrency(8)).await;
    let scheduler = app.start_scheduler("*/2 * * * * *");

    // The fleet changes right after each run finishes, well before the next tick; the truth each
    // run must have seen is recorded with the time it was set.
    let mut truths = vec![(Utc::now(), digest(&triples(&app.sim.truth())))];
    let (mut seen, mut rss_early) = (0, 0);
    while seen < scans {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let runs = reporting::scan_runs(app.pool()).await;
        let finished = runs.iter().filter(|r| r.finished_at.is_some()).count();
        if finished > seen {
            seen = finished;
            app.sim.evolve(evolution(seen));
            truths.push((Utc::now(), digest(&triples(&app.sim.truth()))));
            if seen == 20.min(scans) {
                rss_early = rss_kib();
            }
        }
    }
    scheduler.stop().await;
    let rss_late = rss_kib();

    let all = reporting::scan_runs(app.pool()).await;
    for (i, run) in all.iter().take(scans).enumerate() {
        let id = run.scan_run_id;
        assert_eq!(run.status, "completed", "run {id}");
        let (set_at, truth) = &truths[i];
        assert!(*set_at < run.started_at, "run {id} started before its fleet was set");
        if let Some((next_set_at, _)) = truths.get(i + 1) {
            let finished = run.finished_at;
            assert!(finished.is_some_and(|f| f <= *next_set_at), "run {id} overlapped a change");
        }
        assert_eq!(&digest(&app.snapshot(id).await), truth, "snapshot of run {id} (rows, digest)");
    }
    println!(
        "soak: {scans} scheduled runs, RSS {rss_early} KiB after 20, {rss_late} KiB at the end"
    );
    assert!(rss_late <= rss_early + rss_early / 5, "memory grew: {rss_early} KiB → {rss_late} KiB");
}
