//! With `[tenant.export]` on, a run requests first the devices whose missing KBs the delta export
//! says changed since their last good scan; with it off, or refused, the plan is the one without
//! it. The simulator over real HTTP and a real PostgreSQL; the first scan is moved a day into the
//! past (`kbwatch.device_scan` and `device_state`, which no view writes), so that it comes before
//! the simulated day's changes as it would in a real day.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DurationRound as _, TimeDelta, Utc};
use kbwatch::model::RunStatus;
use kbwatch::scan::ScanOptions;
use kbwatch::sim::{Evolution, Faults, Route, SimConfig, SimStats};
use tokio_util::sync::CancellationToken;

use crate::kit::internal::backdate_run;
use crate::kit::{Auth, Tenant, TestApp, fleet, spawn_app};

const DEVICES: usize = 60;
/// Devices that install or get a KB in the simulated day.
const CHANGED: usize = 6;
const TWO_DAYS: Duration = Duration::from_secs(2 * 86_400);

/// A tenant (the export on or off) whose first scan stored every device a simulated day ago, and
/// the day since: [`CHANGED`] devices installed or got a KB, two others moved to another RBAC
/// group (the export gives them a `Fixed` and a `New` for every KB), and every device's `lastSeen`
/// moved. Returns the app and the devices that changed.
async fn a_day_after_the_first_scan(
    export: bool,
    rescan_after: Duration,
) -> (TestApp, Vec<String>) {
    let yesterday = Utc::now().duration_trunc(TimeDelta::hours(6)).unwrap() - TimeDelta::days(1);
    let sim = SimConfig { now: Some(yesterday), ..fleet(DEVICES) };
    let tenant = Tenant::default().unpaced().export(export).rescan_after(rescan_after);
    let app = spawn_app(sim, Auth::TokenFile, tenant).await;
    let first = app.scan().await;
    assert_eq!(first.devices.ok, DEVICES as i32, "{first:?}");
    assert_eq!(app.sim.stats().export_changes_requests, 0, "nothing scanned yet: not called");
    backdate_run(app.pool(), first.scan_run_id, 1).await;
    let day = app.sim.evolve(Evolution {
        change_devices: CHANGED,
        move_rbac_devices: 2,
        ..Evolution::default()
    });
    assert_eq!(day.devices_changed.len(), CHANGED, "{day:?}");
    (app, day.devices_changed)
}

/// The devices requested since `before`.
fn requested_since(app: &TestApp, before: &SimStats) -> BTreeSet<String> {
    let after = app.sim.stats().kbs_requests_by_device;
    let was = |id: &String| before.kbs_requests_by_device.get(id).copied().unwrap_or(0);
    after.into_iter().filter(|(id, n)| *n > was(id)).map(|(id, _)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_budget_goes_to_the_devices_the_export_says_changed() {
    let (mut app, changed) = a_day_after_the_first_scan(true, Duration::ZERO).await;
    // Every device is due and every lastSeen moved: without the export, nothing tells them apart.
    // The quota reaches CHANGED requests before the next tick.
    app.config.tenants[0].quota.per_minute = CHANGED as u32;
    let before = app.sim.stats();
    let deadline = Some(tokio::time::Instant::now() + Duration::from_secs(30));
    let options = ScanOptions { deadline, ..ScanOptions::default() };
    let run = app.scan_with_options(app.client(), &options, &CancellationToken::new()).await;
    assert_eq!((run.status, run.planned), (RunStatus::Completed, CHANGED as u64), "{run:?}");
    assert_eq!(requested_since(&app, &before), changed.into_iter().collect());
    assert_eq!(app.sim.stats().export_changes_requests, 1, "read once per run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_devices_pass_rescan_after_and_a_refused_export_leaves_the_plan_as_before() {
    let (app, changed) = a_day_after_the_first_scan(true, TWO_DAYS).await;
    let message = "Missing application roles. API required roles: Vulnerability.Read.All";
    let refused =
        Faults { forbidden_on: vec![(Route::ExportChanges, message.into())], ..Faults::default() };
    app.sim.set_faults(refused);
    let run = app.scan().await;
    // Nothing is due before two days: the plan of before is empty, and the scan does not fail.
    assert_eq!((run.status, run.planned), (RunStatus::Completed, 0), "{run:?}");
    assert_eq!(app.sim.stats().export_changes_requests, 1, "a 403 is not retried");

    app.sim.set_faults(Faults::default());
    let before = app.sim.stats();
    let run = app.scan().await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let want: BTreeSet<String> = changed.iter().cloned().collect();
    assert_eq!(requested_since(&app, &before), want, "the changed ones, not the RBAC moves");
    let truth = app.sim.truth();
    let stored: BTreeSet<_> =
        app.current_missing().await.into_iter().filter(|t| want.contains(&t.0)).collect();
    let true_now: BTreeSet<_> = changed
        .iter()
        .flat_map(|m| truth[m].iter().map(move |k| (m.clone(), k.id.clone(), k.cve_addressed)))
        .collect();
    assert_eq!(stored, true_now, "their changes are stored");

    // Stored after the changes: the next run has nothing to request.
    let run = app.scan().await;
    assert_eq!((run.status, run.planned), (RunStatus::Completed, 0), "{run:?}");
    assert_eq!(app.sim.stats().export_changes_requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_export_off_the_plan_is_as_before_and_the_export_is_never_called() {
    let (app, _) = a_day_after_the_first_scan(false, TWO_DAYS).await;
    let run = app.scan().await;
    assert_eq!((run.status, run.planned), (RunStatus::Completed, 0), "nothing is due: {run:?}");
    let stats = app.sim.stats();
    assert_eq!((stats.export_changes_requests, stats.export_requests), (0, 0));
}
