//! The `changes` row (issue 15): of the devices whose missing KBs changed in a day, the share whose
//! change kbwatch stored that day, with the vulnerability export on (the planner puts the devices
//! its delta says changed first) and off (today's planner), on the same simulated days.
//!
//! A first scan stores every device; then each simulated day 5 % of the devices install or get a
//! KB (`Evolution::change_devices`), every active device's `lastSeen` moves (as the real API's
//! does, so it tells the planner nothing), and one run may request the day's budget of devices.
//! Runs are unpaced but capped: a fresh client each day with a quota of the budget a minute and
//! an hour, and a deadline within the hour, so the plan's budget is the day's.
//!
//! The simulator's clock moves a day a step, and its delta stamps each change with its 6-hour
//! snapshot; each run is moved into the past onto its simulated day (`backdate_run`), so that a
//! day's changes come after the runs before it, as they would over real days.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DurationRound as _, TimeDelta, Utc};
use kbwatch::model::RunStatus;
use kbwatch::scan::ScanOptions;
use kbwatch::sim::{Evolution, SimConfig};
use tokio_util::sync::CancellationToken;

use crate::kit::internal::backdate_run;
use crate::kit::{Auth, Tenant, TestApp, fleet, spawn_app};
use crate::setup::finish;
use crate::table::{Row, thousands};

/// The fleet, its days and the budget of each.
pub struct Plan {
    pub devices: usize,
    pub days: u32,
    /// Devices one day's run may request.
    pub budget: u32,
}

/// Issue 15: 20,000 devices, 3,000 calls a day, over five days.
pub const FULL: Plan = Plan { devices: 20_000, days: 5, budget: 3_000 };

/// The share of devices whose missing KBs change each day.
const CHANGE_SHARE: f64 = 0.05;
const TARGET: f64 = 0.95;

/// What one planner did over the days.
struct Measured {
    changed: usize,
    stored: usize,
    requested: u64,
    export_calls: u64,
    elapsed: Duration,
}

impl Measured {
    fn share(&self) -> f64 {
        self.stored as f64 / self.changed.max(1) as f64
    }
}

pub async fn run(plan: &Plan) -> Vec<Row> {
    let without = days_of_changes(plan, false).await;
    let with = days_of_changes(plan, true).await;
    let what = format!(
        "with the export: changed devices stored within their day ({} devices, {:.0} % change a \
         day, {} calls a day, {} days)",
        thousands(plan.devices as u64),
        CHANGE_SHARE * 100.0,
        thousands(u64::from(plan.budget)),
        plan.days
    );
    let figure = |m: &Measured| {
        format!(
            "{:.1} % ({} of {}; {} requests, {} export calls, {:.0} s)",
            m.share() * 100.0,
            thousands(m.stored as u64),
            thousands(m.changed as u64),
            thousands(m.requested),
            m.export_calls,
            m.elapsed.as_secs_f64()
        )
    };
    vec![
        Row::judged(&what, figure(&with), "≥ 95 %", with.share() >= TARGET),
        Row::context("  the same with today's planner (the export off)", figure(&without)),
    ]
}

/// A first scan, then `plan.days` days of changes, each with its run; what was stored each day.
async fn days_of_changes(plan: &Plan, export: bool) -> Measured {
    let days = plan.days;
    let first_day = Utc::now().duration_trunc(TimeDelta::hours(6)).expect("a 6-hour boundary")
        - TimeDelta::days(i64::from(days));
    let sim =
        SimConfig { seed: 15, now: Some(first_day), export_quota: None, ..fleet(plan.devices) };
    // The planner alone: `fill` would give the devices it leaves out their state from the export.
    let tenant = Tenant::named("bench").unpaced().concurrency(8).export(export).export_fill(false);
    let mut app = spawn_app(sim, Auth::TokenFile, tenant).await;
    let started = Instant::now();
    let first = app
        .scan_with_options(app.client(), &ScanOptions::default(), &CancellationToken::new())
        .await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    backdate_run(app.pool(), first.scan_run_id, days).await;
    let quota = &mut app.config.tenants[0].quota;
    (quota.per_minute, quota.per_hour) = (plan.budget, plan.budget);
    let per_day = (plan.devices as f64 * CHANGE_SHARE).round() as usize;
    let mut m =
        Measured { changed: 0, stored: 0, requested: 0, export_calls: 0, elapsed: Duration::ZERO };
    for day in 1..=days {
        let change = app.sim.evolve(Evolution { change_devices: per_day, ..Evolution::default() });
        // Within the hour, so that the budget is one hour's quota: the day's.
        let deadline = Some(tokio::time::Instant::now() + Duration::from_secs(1800));
        let options = ScanOptions { deadline, ..ScanOptions::default() };
        let before = app.sim.stats().kbs_requests_by_device;
        let run = app.scan_with_options(app.client(), &options, &CancellationToken::new()).await;
        assert_eq!(run.status, RunStatus::Completed, "day {day}: {run:?}");
        m.requested += (run.devices.ok + run.devices.not_found + run.devices.failed) as u64;
        // Requested by this run (a device that changed back to what was stored is not stored
        // by it), and stored as the simulator has it now.
        let after = app.sim.stats().kbs_requests_by_device;
        let requested = |id: &&String| after.get(*id) > before.get(*id);
        let changed: Vec<&String> = change.devices_changed.iter().filter(requested).collect();
        m.changed += change.devices_changed.len();
        m.stored += stored_as_true(&app, &changed).await;
        backdate_run(app.pool(), run.scan_run_id, days - day).await;
    }
    m.elapsed = started.elapsed();
    m.export_calls = app.sim.stats().export_changes_requests;
    finish(app).await;
    m
}

/// How many of `devices` the store has as missing what the simulator says they miss now.
async fn stored_as_true(app: &TestApp, devices: &[&String]) -> usize {
    let wanted: BTreeSet<&String> = devices.iter().copied().collect();
    let mut stored: BTreeMap<String, BTreeSet<(String, i64)>> = BTreeMap::new();
    for (machine, kb, cves) in app.current_missing().await {
        if wanted.contains(&machine) {
            stored.entry(machine).or_default().insert((kb, cves));
        }
    }
    let truth = app.sim.truth();
    let as_true = |id: &String| {
        let true_now: BTreeSet<(String, i64)> =
            truth[id].iter().map(|k| (k.id.clone(), k.cve_addressed)).collect();
        stored.get(id).cloned().unwrap_or_default() == true_now
    };
    wanted.iter().filter(|id| as_true(id)).count()
}
