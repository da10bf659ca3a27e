//! Rows 6 and 7 of DESIGN §9: the pace under 429s that the configured quota does not explain.
//!
//! - Stray 429s: Defender also throttles "by CPU", well under the call quota. 3,600 devices, the
//!   server and kbwatch at 1,200 calls a minute, and 10 devices (one in 360) whose first request
//!   is answered 429 with only "You can send requests again in 3 seconds" in its message. In
//!   the 180 s after the first request the windows admit 3,600 calls: the share of them the scan
//!   got stored is the figure. (A sequential loop with fixed sleeps at the same rate gets 80 %.)
//! - Another app spends half the quota: the server admits 600 a minute while kbwatch is told
//!   1,200; its 429s state the server's quota. The figure is the share of what the server admits
//!   in 180 s that kbwatch got, and the 429s it caused.
//!
//! Both count what the simulator served, as the quota row does ([`quota::spend`]).

use std::time::Duration;

use kbwatch::sim::{DeviceFault, SimQuota};

use crate::quota::{Spent, admissible_at, scan_until, spend};
use crate::setup::{Setup, finish, start};
use crate::table::{Row, thousands};

/// One configuration of the two rows; the smoke run uses a tiny one.
pub struct Plan {
    pub quota: SimQuota,
    pub devices: usize,
    /// Devices whose first request is a stray 429.
    pub stray: usize,
    pub window: Duration,
}

pub const FULL: Plan = Plan {
    quota: SimQuota { per_minute: 1200, per_hour: 18_000 },
    devices: 3600,
    stray: 10,
    window: Duration::from_secs(180),
};

const CONCURRENCY: u32 = 8;
const STRAY_DELAY_S: u32 = 3;

pub async fn run(plan: &Plan) -> Vec<Row> {
    let half =
        SimQuota { per_minute: plan.quota.per_minute / 2, per_hour: plan.quota.per_hour / 2 };
    let setup = |server| Setup {
        devices: plan.devices,
        server_quota: Some(server),
        client_quota: Some(plan.quota),
        concurrency: CONCURRENCY,
    };
    let (stray, shared) = (start(setup(plan.quota)).await, start(setup(half)).await);
    let ids = stray.sim.device_ids();
    for id in ids.iter().step_by((ids.len() / plan.stray.max(1)).max(1)).take(plan.stray) {
        stray.sim.set_device_fault(id, Some(DeviceFault::ThrottleOnce { seconds: STRAY_DELAY_S }));
    }
    let (stray_spent, shared_spent) = tokio::join!(
        spend(&stray.sim, plan.window, |stop| scan_until(&stray, stop)),
        spend(&shared.sim, plan.window, |stop| scan_until(&shared, stop)),
    );
    for bench in [stray, shared] {
        finish(bench).await;
    }
    rows(plan, half, &stray_spent, &shared_spent)
}

fn rows(plan: &Plan, half: SimQuota, stray: &Spent, shared: &Spent) -> Vec<Row> {
    let figure = |s: &Spent, max: u64| {
        let share = s.admitted as f64 / max as f64;
        let text = format!(
            "{:.1} % ({} of {}), {} × 429",
            share * 100.0,
            thousands(s.admitted),
            thousands(max),
            thousands(s.throttled)
        );
        (share, text)
    };
    let secs = plan.window.as_secs();
    let (stray_share, stray_text) = figure(stray, admissible_at(plan.quota, plan.window));
    let (shared_share, shared_text) = figure(shared, admissible_at(half, plan.window));
    vec![
        Row::judged(
            &format!(
                "stray 429s: {} message-only 429s over {} devices, server and kbwatch at {}/min, first {secs} s",
                plan.stray,
                thousands(plan.devices as u64),
                thousands(plan.quota.per_minute.into())
            ),
            stray_text,
            "≥ 90 % of what the window admits",
            stray_share >= 0.90,
        ),
        Row::judged(
            &format!(
                "server at half the quota ({}/min, kbwatch told {}/min), first {secs} s",
                thousands(half.per_minute.into()),
                thousands(plan.quota.per_minute.into())
            ),
            shared_text,
            "≥ 85 % of what the server admits, ≤ 40 × 429",
            shared_share >= 0.85 && shared.throttled <= 40,
        ),
    ]
}
