//! `[tenant.export] fill`: a device the run's budget does not reach, whose last state is older than
//! `fill_after` or that has none, takes its state from the full export, marked `export`; the
//! export is not read again within hours; the plan still requests such devices before those
//! getmissingkbs has answered; a refused export fills nothing and the scan goes on. The simulator
//! over real HTTP and a real PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kbwatch::model::RunStatus;
use kbwatch::scan::ScanSummary;
use kbwatch::sim::{Evolution, Faults, Route, SimConfig, Throttle, TruthKb};

use crate::kit::internal::backdate_run;
use crate::kit::reporting::{current_missing, device_history, scan_run, snapshot, triples};
use crate::kit::{Auth, Tenant, TestApp, fleet, spawn_app};

const DEVICES: usize = 300;
/// Requests a run may make: a fifth of the fleet.
const BUDGET: u32 = 60;

/// A fleet of [`DEVICES`] whose tenant has the export on, unthrottled.
async fn app(tenant: Tenant) -> TestApp {
    let sim = SimConfig { export_quota: None, ..fleet(DEVICES) };
    spawn_app(sim, Auth::TokenFile, tenant.unpaced().export(true)).await
}

/// One run that may request `budget` devices, completed.
async fn run_with_budget(app: &mut TestApp, budget: u32) -> ScanSummary {
    let run = app.scan_within(budget).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    run
}

/// Each device's scans of run `run_id` by source.
async fn sources(app: &TestApp, run_id: i64) -> BTreeMap<String, String> {
    let history = device_history(app.pool()).await;
    history
        .into_iter()
        .filter(|s| s.scan_run_id == run_id)
        .map(|s| (s.machine_id, s.source))
        .collect()
}

fn of_source(sources: &BTreeMap<String, String>, source: &str) -> BTreeSet<String> {
    sources.iter().filter(|(_, s)| *s == source).map(|(m, _)| m.clone()).collect()
}

/// The truth of `devices` only.
fn truth_of(
    truth: &BTreeMap<String, Vec<TruthKb>>,
    devices: &BTreeSet<String>,
) -> BTreeSet<(String, String, i64)> {
    let kept = truth.iter().filter(|(m, _)| devices.contains(*m));
    triples(&kept.map(|(m, kbs)| (m.clone(), kbs.clone())).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_the_budget_leaves_out_take_their_state_from_the_export() {
    let mut app = app(Tenant::default()).await;
    let first = run_with_budget(&mut app, BUDGET).await;
    assert_eq!((first.planned, first.devices.ok), (u64::from(BUDGET), BUDGET as i32), "{first:?}");
    let by_source = sources(&app, first.scan_run_id).await;
    let (requested, exported) =
        (of_source(&by_source, "getmissingkbs"), of_source(&by_source, "export"));
    assert_eq!(requested.len(), BUDGET as usize);
    assert_eq!(exported.len(), first.devices.from_export as usize, "{first:?}");
    assert!(requested.is_disjoint(&exported));
    let stored = scan_run(app.pool(), first.scan_run_id).await;
    assert_eq!(
        (stored.devices_scanned, stored.devices_from_export),
        (BUDGET as i32, first.devices.from_export)
    );

    // Every device that misses a KB has a state, as the truth has it: the export names each of
    // them. Those it does not name (nothing vulnerable) have none.
    let truth = app.sim.truth();
    let missing_any: BTreeSet<String> =
        truth.iter().filter(|(_, kbs)| !kbs.is_empty()).map(|(m, _)| m.clone()).collect();
    let with_state: BTreeSet<String> = requested.union(&exported).cloned().collect();
    assert!(
        missing_any.is_subset(&with_state),
        "{} without a state",
        missing_any.difference(&with_state).count()
    );
    assert_eq!(current_missing(app.pool()).await, triples(&truth), "the whole fleet, as true");
    let exported_snapshot: BTreeSet<_> = snapshot(app.pool(), first.scan_run_id)
        .await
        .into_iter()
        .filter(|t| exported.contains(&t.0))
        .collect();
    assert_eq!(exported_snapshot, truth_of(&truth, &exported), "the export's sets are the truth");
    assert!(exported.len() > DEVICES / 2, "most of the 240 left out: {}", exported.len());
    let shown: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT machine_id, missing_kbs_source FROM reporting.devices")
            .fetch_all(app.pool())
            .await
            .unwrap();
    for (machine, source) in shown {
        let want = [(&requested, "getmissingkbs"), (&exported, "export")]
            .iter()
            .find(|(set, _)| set.contains(&machine))
            .map(|(_, source)| (*source).to_owned());
        assert_eq!(source, want, "reporting.devices says where {machine}'s counts came from");
    }

    // What getmissingkbs said of a KB is kept: the export has no product names.
    let unnamed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reporting.current_missing_kbs c
         WHERE c.machine_id = ANY($1) AND cardinality(coalesce(c.products_names, '{}')) = 0",
    )
    .bind(requested.iter().cloned().collect::<Vec<_>>())
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(unnamed, 0, "a KB getmissingkbs reported keeps its product names");

    // The next run: the export is not read again within hours, and the plan requests first the
    // devices without a state, then those only the export gave one.
    let exports = app.sim.stats().export_requests;
    let second = run_with_budget(&mut app, BUDGET).await;
    assert_eq!((second.devices.from_export, app.sim.stats().export_requests), (0, exports));
    let second_requested = of_source(&sources(&app, second.scan_run_id).await, "getmissingkbs");
    let without_state: BTreeSet<String> =
        truth.keys().filter(|m| !with_state.contains(*m)).cloned().collect();
    assert!(without_state.len() < BUDGET as usize, "{}", without_state.len());
    assert!(without_state.is_subset(&second_requested), "devices without a state come first");
    assert!(second_requested.is_disjoint(&requested), "then those only the export has a state of");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_is_taken_again_once_older_than_fill_after() {
    let mut app = app(Tenant::default().fill_after(Duration::from_secs(3 * 86_400))).await;
    let first = run_with_budget(&mut app, BUDGET).await;
    assert!(first.devices.from_export > 0, "{first:?}");
    let day = app.sim.evolve(Evolution { change_devices: 40, ..Evolution::default() });
    assert_eq!(day.devices_changed.len(), 40);
    // Two days on: within `fill_after` (3 days), nothing is taken from the export, and with
    // nothing to fill it is not read.
    backdate_run(app.pool(), first.scan_run_id, 2).await;
    sqlx::query("UPDATE kbwatch.tenant SET export_read_at = export_read_at - interval '2 days'")
        .execute(app.pool())
        .await
        .unwrap();
    let exports = app.sim.stats().export_requests;
    let second = run_with_budget(&mut app, BUDGET).await;
    assert_eq!((second.devices.from_export, app.sim.stats().export_requests), (0, exports));

    // With `fill_after` a day, the states of two days ago are taken again: now every device
    // whose state is not from this run's requests is as true as the export.
    app.config.tenants[0].export.fill_after = Duration::from_secs(86_400);
    let third = run_with_budget(&mut app, BUDGET).await;
    assert!(app.sim.stats().export_requests > exports);
    let by_source = sources(&app, third.scan_run_id).await;
    let exported = of_source(&by_source, "export");
    assert_eq!(exported.len(), third.devices.from_export as usize);
    let second_requested = of_source(&sources(&app, second.scan_run_id).await, "getmissingkbs");
    assert!(
        exported.is_disjoint(&second_requested),
        "the second run's states are a day old at most"
    );
    assert_eq!(current_missing(app.pool()).await, triples(&app.sim.truth()), "every change stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_export_fills_nothing_and_is_tried_again_by_the_next_run() {
    let mut app = app(Tenant::default()).await;
    let message = "Missing application roles. API required roles: Vulnerability.Read.All";
    app.sim.set_faults(Faults {
        forbidden_on: vec![(Route::Export, message.into())],
        ..Faults::default()
    });
    let first = run_with_budget(&mut app, BUDGET).await;
    assert_eq!((first.devices.ok, first.devices.from_export), (BUDGET as i32, 0), "{first:?}");
    assert_eq!(app.sim.stats().export_requests, 1, "a 403 is not retried");

    app.sim.set_faults(Faults::default());
    let second = run_with_budget(&mut app, BUDGET).await;
    assert!(second.devices.from_export > 0, "not held back by the refused read: {second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fill_the_full_export_is_never_read() {
    let mut app = app(Tenant::default().export_fill(false)).await;
    let run = run_with_budget(&mut app, BUDGET).await;
    assert_eq!(run.devices.from_export, 0);
    assert_eq!(app.sim.stats().export_requests, 0);
}

/// The fleet: 60,000 devices, a quota of 1,500 calls an hour.
const LARGE: usize = 60_000;
const PER_HOUR: u32 = 1_500;
/// A day of runs 12 hours apart, each requesting its 12 hours of quota.
const RUNS_A_DAY: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_thousand_devices_at_1500_calls_an_hour_each_have_a_state_after_a_day() {
    // Two CVEs a KB at most: the export of 60,000 devices is 0.5 M rows instead of 8 M.
    let sim = SimConfig { max_cve_addressed: Some(2), export_quota: None, ..fleet(LARGE) };
    let mut app = spawn_app(sim, Auth::TokenFile, Tenant::default().unpaced().export(true)).await;
    let budget = PER_HOUR * 24 / RUNS_A_DAY;
    let mut requested = 0;
    let mut filled = BTreeSet::new();
    for _ in 0..RUNS_A_DAY {
        let run = run_with_budget(&mut app, budget).await;
        requested += u64::from(run.devices.ok as u32);
        filled.extend(of_source(&sources(&app, run.scan_run_id).await, "export"));
    }
    assert_eq!(requested, u64::from(PER_HOUR) * 24, "the day's quota, spent");
    assert_eq!(app.sim.stats().kbs_requests, requested);
    assert!(filled.len() > LARGE - 36_000 - 10_000, "{} filled", filled.len());

    let without_state: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reporting.devices WHERE missing_kbs IS NULL")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(without_state, 0, "every listed device has a state");
    let (listed, known): (i64, i64) = sqlx::query_as(
        "SELECT devices_listed, devices_known FROM reporting.fleet_state_daily
         WHERE day = (now() AT TIME ZONE 'UTC')::date",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((listed, known), (LARGE as i64, LARGE as i64));

    let truth = app.sim.truth();
    let from_export: BTreeSet<_> = sqlx::query_as::<_, (String, String, Option<i32>)>(
        "SELECT machine_id, kb_id, cve_addressed FROM reporting.missing_kb_snapshots
         WHERE source = 'export'",
    )
    .fetch_all(app.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|(m, k, c)| (m, k, i64::from(c.unwrap_or(0))))
    .collect();
    assert_eq!(from_export, truth_of(&truth, &filled), "the export's sets are the truth");
    assert_eq!(current_missing(app.pool()).await, triples(&truth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_throttled_for_an_hour_does_not_hold_the_run() {
    let mut app = app(Tenant::default()).await;
    let hour = Throttle { seconds: 3600, retry_after: true };
    app.sim.set_faults(Faults { throttled_on: vec![(Route::Export, hour)], ..Faults::default() });
    let started = std::time::Instant::now();
    let run = run_with_budget(&mut app, BUDGET).await;
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_eq!((run.devices.ok, run.devices.from_export), (BUDGET as i32, 0), "{run:?}");
    assert_eq!(app.sim.stats().export_requests, 1);
}
