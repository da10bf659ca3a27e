//! Soak: the scheduler on a 2-second cron over an evolving fleet for 200 scans. Every snapshot
//! stays equal to the simulator's truth at its scan, and memory stops growing after the first
//! scans. Long (about 7 minutes): run with `bash scripts/soak.sh` (`KBWATCH_SOAK_SCANS` to change).

use std::collections::BTreeSet;
use std::hash::{Hash as _, Hasher as _};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kbwatch::config::ScheduleConfig;
use kbwatch::schedule::{self, ScheduledTenant};
use kbwatch::sim::{Evolution, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Auth, spawn_app, triples};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

type Run = (i64, String, DateTime<Utc>, Option<DateTime<Utc>>);

async fn runs(pool: &sqlx::PgPool) -> Vec<Run> {
    sqlx::query_as(
        "SELECT scan_run_id, status, started_at, finished_at FROM kbwatch.scan_run ORDER BY scan_run_id",
    )
    .fetch_all(pool)
    .await
    .expect("scan runs are read")
}

/// A digest of a snapshot: keeping 200 full truths would itself grow the memory this test watches.
fn digest(set: &BTreeSet<(String, String, i64)>) -> (usize, u64) {
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: bash scripts/soak.sh"]
async fn two_hundred_scheduled_scans_of_an_evolving_fleet_stay_exact() {
    let scans: usize =
        std::env::var("KBWATCH_SOAK_SCANS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 100000000\nconcurrency = 8\n";
    let sim = SimConfig { devices: 300, seed: 5, ..SimConfig::default() };
    let app = spawn_app(sim, Auth::TokenFile, quota).await;
    let tenants = vec![ScheduledTenant { config: app.tenant().clone(), client: app.client() }];
    let cancel = CancellationToken::new();
    let daemon = tokio::spawn(schedule::run(
        ScheduleConfig {
            cron: "*/2 * * * * *".into(),
            drain_timeout: Duration::from_secs(10),
            ..ScheduleConfig::default()
        },
        tenants,
        app.store.clone(),
        Default::default(),
        cancel.clone(),
    ));

    // The fleet changes right after each run finishes, well before the next tick; the truth each
    // run must have seen is recorded with the time it was set.
    let mut truths = vec![(Utc::now(), digest(&triples(&app.sim.truth())))];
    let (mut seen, mut rss_early) = (0, 0);
    while seen < scans {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let finished = runs(app.store.pool()).await.iter().filter(|r| r.3.is_some()).count();
        if finished > seen {
            seen = finished;
            app.sim.evolve(evolution(seen));
            truths.push((Utc::now(), digest(&triples(&app.sim.truth()))));
            if seen == 20.min(scans) {
                rss_early = rss_kib();
            }
        }
    }
    cancel.cancel();
    daemon.await.expect("scheduler task").expect("scheduler stops cleanly");
    let rss_late = rss_kib();

    let all = runs(app.store.pool()).await;
    for (i, (run, status, started, finished)) in all.iter().take(scans).enumerate() {
        assert_eq!(status, "completed", "run {run}");
        let (set_at, truth) = &truths[i];
        assert!(set_at < started, "run {run} started before its fleet was set");
        if let Some((next_set_at, _)) = truths.get(i + 1) {
            assert!(finished.is_some_and(|f| f <= *next_set_at), "run {run} overlapped a change");
        }
        assert_eq!(
            &digest(&app.snapshot(*run).await),
            truth,
            "snapshot of run {run} (rows, digest)"
        );
    }
    println!(
        "soak: {scans} scheduled runs, RSS {rss_early} KiB after 20, {rss_late} KiB at the end"
    );
    assert!(rss_late <= rss_early + rss_early / 5, "memory grew: {rss_early} KiB → {rss_late} KiB");
}
