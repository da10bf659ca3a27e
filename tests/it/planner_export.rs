//! With `[tenant.export]` on, a run requests first the devices whose missing KBs the delta export
//! says changed since their last good scan (`Updated` rows say no such thing, nor the `Fixed` +
//! `New` pairs of an RBAC move or a software upgrade); with it off, refused, or throttled or
//! failing past its retries, the plan is the one without it. The simulator over real HTTP and a
//! real PostgreSQL; the first scan is moved a day into the past (`kbwatch.device_scan` and
//! `device_state`, which no view writes), so that it comes before the simulated day's changes as
//! it would in a real day.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound as _, TimeDelta, Utc};
use kbwatch::defender::{Client, ClientOptions, build_http_client, token_source};
use kbwatch::model::{KbChangeKind, RunStatus};
use kbwatch::pacer::Pacer;
use kbwatch::scan::ScanOptions;
use kbwatch::sim::{ChangeSummary, Evolution, Faults, Route, SimConfig, SimStats, Throttle};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::kit::auth::STATIC_TOKEN;
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
    let (app, day) = a_day_with(export, rescan_after, Evolution::default()).await;
    (app, day.devices_changed)
}

/// The same day, in which what `also` asks for happened too (KBs revised, software upgraded);
/// returns what the day changed.
async fn a_day_with(
    export: bool,
    rescan_after: Duration,
    also: Evolution,
) -> (TestApp, ChangeSummary) {
    let yesterday = Utc::now().duration_trunc(TimeDelta::hours(6)).unwrap() - TimeDelta::days(1);
    let sim = SimConfig { now: Some(yesterday), ..fleet(DEVICES) };
    // Without `fill`: the devices the plan leaves out would take the day's changes from the
    // export (`fill.rs` tests that), and these tests are about what the plan requests.
    let tenant =
        Tenant::default().unpaced().export(export).export_fill(false).rescan_after(rescan_after);
    let app = spawn_app(sim, Auth::TokenFile, tenant).await;
    let first = app.scan().await;
    assert_eq!(first.devices.ok, DEVICES as i32, "{first:?}");
    assert_eq!(app.sim.stats().export_changes_requests, 0, "nothing scanned yet: not called");
    backdate_run(app.pool(), first.scan_run_id, 1).await;
    let day = app.sim.evolve(Evolution { change_devices: CHANGED, move_rbac_devices: 2, ..also });
    assert_eq!(day.devices_changed.len(), CHANGED, "{day:?}");
    (app, day)
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

/// The delta's rows since two days ago, read from the simulator directly (one page).
async fn delta_rows(app: &TestApp) -> Vec<Value> {
    let mut url =
        app.sim.base_url().join("api/machines/SoftwareVulnerabilityChangesByMachine").unwrap();
    let since = (Utc::now() - TimeDelta::days(2)).to_rfc3339();
    url.query_pairs_mut().append_pair("sinceTime", &since);
    let response = reqwest::Client::new().get(url).bearer_auth(STATIC_TOKEN).send().await.unwrap();
    let page: Value = response.json().await.expect("a page of the delta");
    assert!(page.get("@odata.nextLink").is_none(), "one page");
    page["value"].as_array().expect("rows").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_whose_rows_were_only_updated_are_not_planned_first() {
    // `Evolution::revise_kbs`: every device that misses a revised KB has `Updated` rows for it.
    let (app, day) =
        a_day_with(true, TWO_DAYS, Evolution { revise_kbs: 2, ..Evolution::default() }).await;
    let changed: BTreeSet<String> = day.devices_changed.iter().cloned().collect();
    let updated: Vec<Value> =
        delta_rows(&app).await.into_iter().filter(|r| r["status"] == "Updated").collect();
    let only_updated: BTreeSet<String> = updated
        .iter()
        .map(|r| r["deviceId"].as_str().unwrap().to_owned())
        .filter(|d| !changed.contains(d))
        .collect();
    assert!(!only_updated.is_empty(), "{day:?}");

    // kbwatch's reader takes them for no change of missing KBs.
    let changes = app.client().kb_changes_since(Utc::now() - TimeDelta::days(2)).await.unwrap();
    assert!(changes.ignored >= updated.len() as u64, "{} ignored", changes.ignored);
    let said: BTreeSet<String> = changes.devices.keys().map(|m| m.as_str().to_owned()).collect();
    assert!(said.is_disjoint(&only_updated), "{said:?}");

    // Nothing is due before two days: the changed devices are requested, none only updated.
    let before = app.sim.stats();
    let run = app.scan().await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(requested_since(&app, &before), changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_whose_software_was_only_upgraded_are_not_planned_first() {
    // `Evolution::upgrade_software_devices`: every row of an upgraded device moves to a new
    // version, so the delta has its KBs `Fixed` at the old one and `New` at the new one.
    let also = Evolution { upgrade_software_devices: 6, ..Evolution::default() };
    let (app, day) = a_day_with(true, TWO_DAYS, also).await;
    let changed: BTreeSet<String> = day.devices_changed.iter().cloned().collect();
    let only_upgraded: BTreeSet<&str> = day
        .devices_upgraded
        .iter()
        .filter(|d| !changed.contains(*d) && !day.devices_moved.contains(d))
        .map(String::as_str)
        .collect();
    let rows = delta_rows(&app).await;
    let kbs_of = |status: &str| -> BTreeSet<(&str, &str)> {
        let of = rows.iter().filter(|r| r["status"] == status);
        let of = of.filter_map(|r| {
            Some((r["deviceId"].as_str()?, r["recommendedSecurityUpdateId"].as_str()?))
        });
        of.filter(|(d, _)| only_upgraded.contains(d)).collect()
    };
    let (fixed, new) = (kbs_of("Fixed"), kbs_of("New"));
    assert!(!fixed.is_empty(), "{day:?}");
    assert_eq!(fixed, new, "each KB of theirs both Fixed and New");

    // kbwatch's reader keeps both events of each of their KBs...
    let changes = app.client().kb_changes_since(Utc::now() - TimeDelta::days(2)).await.unwrap();
    let kinds = |device: &str, kb: &str| -> BTreeSet<KbChangeKind> {
        let of = changes.devices.iter().filter(|(m, _)| m.as_str() == device);
        let of = of.flat_map(|(_, c)| c).filter(|c| c.kb.to_string() == kb);
        of.map(|c| c.kind).collect()
    };
    for (device, kb) in &fixed {
        let both = BTreeSet::from([KbChangeKind::New, KbChangeKind::Fixed]);
        assert_eq!(kinds(device, kb), both, "{device} {kb}");
    }

    // ...and the plan takes them for no change: nothing is due before two days, and the changed
    // devices are requested, none only upgraded.
    let before = app.sim.stats();
    let run = app.scan().await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(requested_since(&app, &before), changed);
}

/// The app's client, as configured but for a budget of `budget` 429s per call instead of
/// kbwatch's 30: on a delta throttled at every call, spending 30 would take a minute even with a
/// `Retry-After` of 1 s, since the pacer keeps to the export's 30 calls a minute.
fn client_with_throttle_budget(app: &TestApp, budget: u32) -> Arc<Client> {
    let tenant = app.tenant();
    let http = build_http_client(&app.config.tls, &tenant.http).expect("the HTTP client builds");
    let tokens = token_source(&tenant.auth, http.clone()).expect("the token source builds");
    let options = ClientOptions {
        max_attempts: tenant.http.max_attempts,
        retry_base: tenant.http.retry_base,
        max_throttled: budget,
        ..ClientOptions::default()
    };
    let pacer = Arc::new(Pacer::new(tenant.name.as_str(), &tenant.quota));
    Arc::new(Client::new(http, tenant.api_base.clone(), tokens, pacer, options))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_throttled_or_failing_on_every_call_is_given_up_unhammered() {
    const BUDGET: u32 = 3;
    let (app, changed) = a_day_after_the_first_scan(true, TWO_DAYS).await;
    let throttled = |retry_after| Faults {
        throttled_on: vec![(Route::ExportChanges, Throttle { seconds: 1, retry_after })],
        ..Faults::default()
    };
    let failing = Faults { server_error_on: vec![Route::ExportChanges], ..Faults::default() };
    let attempts = u64::from(app.tenant().http.max_attempts);
    let cases = [
        ("429 with Retry-After", throttled(true), u64::from(BUDGET) + 1),
        ("429 without Retry-After", throttled(false), u64::from(BUDGET) + 1),
        ("500 or 503", failing, attempts),
    ];
    // One client for every run, as the daemon keeps one per tenant: its pacer keeps the last wait.
    let client = client_with_throttle_budget(&app, BUDGET);
    for (what, faults, calls) in cases {
        app.sim.set_faults(faults);
        let before = app.sim.stats();
        let run = app.scan_with(client.clone()).await;
        // Nothing is due before two days: the plan without the export is empty.
        assert_eq!((run.status, run.planned), (RunStatus::Completed, 0), "{what}: {run:?}");
        let after = app.sim.stats();
        let delta_calls = after.export_changes_requests - before.export_changes_requests;
        assert_eq!(delta_calls, calls, "{what}: the budget, then no more");
        assert_eq!(after.retry_after_violations, 0, "{what}: every wait was kept");
        assert!(requested_since(&app, &before).is_empty(), "{what}");
    }

    // The fault gone, the same client plans the changed devices: the plans above were those
    // without the export.
    app.sim.set_faults(Faults::default());
    let before = app.sim.stats();
    let run = app.scan_with(client).await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(requested_since(&app, &before), changed.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_throttled_for_an_hour_is_given_up_at_once_and_not_called_while_paused() {
    let (app, changed) = a_day_after_the_first_scan(true, TWO_DAYS).await;
    let hour = Throttle { seconds: 3600, retry_after: true };
    app.sim.set_faults(Faults {
        throttled_on: vec![(Route::ExportChanges, hour)],
        ..Faults::default()
    });
    let client = app.client();
    for run in ["throttled", "still paused"] {
        let before = app.sim.stats();
        let started = std::time::Instant::now();
        let summary = app.scan_with(client.clone()).await;
        // Not the 120 s the read may take: the pause says at once that it would take longer.
        assert!(started.elapsed() < Duration::from_secs(30), "{run}: {:?}", started.elapsed());
        assert_eq!((summary.status, summary.planned), (RunStatus::Completed, 0), "{run}");
        let calls = app.sim.stats().export_changes_requests - before.export_changes_requests;
        assert_eq!(calls, u64::from(run == "throttled"), "{run}: called only before the pause");
    }
    // A client of its own (a restarted daemon) reads it again, the fault gone.
    app.sim.set_faults(Faults::default());
    let before = app.sim.stats();
    let run = app.scan().await;
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(requested_since(&app, &before), changed.into_iter().collect());
}
