//! The `coverage` row (issue 15): of a fleet larger than a day of its quota, the share of listed
//! devices with a state after one day, with `[tenant.export] fill` (devices the budget does not
//! reach take their state from the full export) and without the export.
//!
//! A day is two runs twelve hours apart, each requesting its twelve hours of quota (1,500 calls an
//! hour: 18,000 a run), unpaced but capped as the `changes` row caps them. The simulator's KBs
//! address at most two CVEs each (`SimConfig::max_cve_addressed`): the export of 60,000 devices is
//! then 0.5 M rows (15 pages) instead of 8.2 M (251 pages, over 8 minutes at the export's quota of
//! 30 calls a minute). What the row measures, who has a state, does not depend on it; the export
//! calls it reports do.

use std::time::{Duration, Instant};

use kbwatch::model::RunStatus;
use kbwatch::sim::SimConfig;

use crate::kit::{Auth, Tenant, fleet, spawn_app};
use crate::setup::finish;
use crate::table::{Row, thousands};

/// The fleet, the quota and the runs of its day.
pub struct Plan {
    pub devices: usize,
    pub per_hour: u32,
    pub runs_a_day: u32,
}

/// Issue 15: 60,000 devices at 1,500 calls an hour, in two runs a day.
pub const FULL: Plan = Plan { devices: 60_000, per_hour: 1_500, runs_a_day: 2 };

/// After one day.
struct Measured {
    listed: i64,
    known: i64,
    requests: u64,
    export_calls: u64,
    elapsed: Duration,
}

pub async fn run(plan: &Plan) -> Vec<Row> {
    let without = one_day(plan, false).await;
    let with = one_day(plan, true).await;
    let what = format!(
        "with the export's fill: listed devices with a state after a day ({} devices, {} calls an \
         hour, {} runs)",
        thousands(plan.devices as u64),
        thousands(u64::from(plan.per_hour)),
        plan.runs_a_day
    );
    let figure = |m: &Measured| {
        format!(
            "{:.1} % ({} of {}; {} requests, {} export calls, {:.0} s)",
            m.known as f64 * 100.0 / m.listed.max(1) as f64,
            thousands(m.known as u64),
            thousands(m.listed as u64),
            thousands(m.requests),
            m.export_calls,
            m.elapsed.as_secs_f64()
        )
    };
    vec![
        Row::judged(&what, figure(&with), "100 %", with.listed > 0 && with.known == with.listed),
        Row::context("  the same without the export", figure(&without)),
    ]
}

async fn one_day(plan: &Plan, export: bool) -> Measured {
    let sim = SimConfig { seed: 16, max_cve_addressed: Some(2), ..fleet(plan.devices) };
    let tenant = Tenant::named("bench").unpaced().concurrency(8).export(export);
    let mut app = spawn_app(sim, Auth::TokenFile, tenant).await;
    let started = Instant::now();
    let budget = plan.per_hour * 24 / plan.runs_a_day;
    for run in 1..=plan.runs_a_day {
        let summary = app.scan_within(budget).await;
        assert_eq!(summary.status, RunStatus::Completed, "run {run}: {summary:?}");
    }
    let elapsed = started.elapsed();
    let (listed, known): (i64, i64) = sqlx::query_as(
        "SELECT devices_listed, devices_known FROM reporting.fleet_state_daily
         WHERE day = (now() AT TIME ZONE 'UTC')::date",
    )
    .fetch_one(app.pool())
    .await
    .expect("reporting.fleet_state_daily has today");
    let stats = app.sim.stats();
    let export_calls = stats.export_requests + stats.export_changes_requests;
    finish(app).await;
    Measured { listed, known, requests: stats.kbs_requests, export_calls, elapsed }
}
