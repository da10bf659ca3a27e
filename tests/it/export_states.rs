//! The full vulnerability export read into each device's missing KBs (`Client::export_states`),
//! against the simulator over real HTTP: every device's KBs and `cveAddressed` are getmissingkbs'
//! truth, over several pages, and through pages that fail and are asked for again; a next link
//! to another origin and a page over `max_page_bytes` fail the read.

use std::collections::BTreeMap;

use axum::Router;
use axum::routing::get;
use kbwatch::defender::{ApiError, Client, client_for};
use kbwatch::model::{ExportKb, ExportState, ExportStates, validate_machine_id};
use kbwatch::sim::{Faults, SimConfig};
use serde_json::json;

use crate::hostile_server::{Hostile, MACHINE, app_against};
use crate::kit::{Auth, Tenant, TestApp, fleet, spawn_app};

const EXPORT: &str = "/api/machines/SoftwareVulnerabilitiesByMachine";

/// A client of the app's tenant whose pages hold at most `bytes`.
fn client_with_page_bytes(app: &TestApp, bytes: u64) -> Client {
    let mut tenant = app.tenant().clone();
    tenant.http.max_page_bytes = bytes;
    client_for(&tenant, &app.config.tls).expect("the client builds")
}

/// What getmissingkbs says each simulated device misses, as the export's KBs.
fn export_truth(app: &TestApp) -> BTreeMap<String, Vec<ExportKb>> {
    (app.sim.truth().into_iter())
        .map(|(id, kbs)| {
            let kb = |k: &kbwatch::sim::TruthKb| ExportKb {
                id: k.id.parse().expect("a KB number"),
                cve_addressed: u32::try_from(k.cve_addressed).expect("a count"),
            };
            (id, kbs.iter().map(kb).collect())
        })
        .collect()
}

/// A client whose pages hold about an eighth of the export's KB rows each (a row per KB and
/// CVE): about eight pages, within the export's 30 calls a minute. Its KB rows too.
fn client_of_eight_pages(app: &TestApp, truth: &BTreeMap<String, Vec<ExportKb>>) -> (Client, u64) {
    let kb_rows: u64 = truth.values().flatten().map(|k| u64::from(k.cve_addressed)).sum();
    (client_with_page_bytes(app, kb_rows / 8 * 2048), kb_rows)
}

/// Every device's state in `states` is its truth, or unknown when it misses nothing; returns how
/// many are known to miss nothing and how many are unknown.
fn assert_states_are_truth(
    states: &ExportStates,
    truth: &BTreeMap<String, Vec<ExportKb>>,
) -> (usize, usize) {
    let (mut known_empty, mut unknown) = (0, 0);
    for (id, want) in truth {
        match states.state(&validate_machine_id(id).expect("a simulated id")) {
            ExportState::Missing(kbs) => {
                assert_eq!(kbs, want.as_slice(), "{id}");
                known_empty += usize::from(kbs.is_empty());
            }
            ExportState::Unknown => {
                assert!(want.is_empty(), "{id} misses {want:?} but the export has no row of it");
                unknown += 1;
            }
        }
    }
    assert_eq!(states.len() + unknown, truth.len(), "the export names only listed devices");
    (known_empty, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_devices_export_kbs_are_its_missing_kbs_over_several_pages() {
    let app = spawn_app(fleet(2500), Auth::TokenFile, Tenant::default()).await;
    let truth = export_truth(&app);
    let (client, kb_rows) = client_of_eight_pages(&app, &truth);
    let states = client.export_states().await.expect("the export is read");

    let counts = states.counts;
    assert_eq!(counts.kb_rows, kb_rows, "{counts:?}");
    assert!(counts.rows > kb_rows, "rows without a KB are read too: {counts:?}");
    assert_eq!((counts.rejected, counts.malformed), (0, 0));
    assert!((7..=10).contains(&counts.pages), "{counts:?}");
    assert_eq!(app.sim.stats().export_requests, u64::from(counts.pages));
    // Devices with only other software's rows (or `TVM-` ids) miss nothing; devices with no
    // vulnerable software at all are not in the export, and stay unknown.
    let (known_empty, unknown) = assert_states_are_truth(&states, &truth);
    assert!(known_empty > 50 && unknown > 50, "{known_empty} known empty, {unknown} unknown");
    let (some, _) = truth.iter().find(|(_, kbs)| !kbs.is_empty()).expect("a device misses a KB");
    let kbs = states.missing_kbs(&validate_machine_id(some).unwrap()).expect("it is known");
    for kb in kbs {
        assert!(kb.name.is_some() && kb.url.is_some() && kb.machine_missed_on >= Some(1), "{kb:?}");
    }
}

/// A page that fails (a 5xx, a connection dropped before the body) is asked for again: the read
/// neither stops nor counts a page twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_that_fail_are_read_again_and_counted_once() {
    let faults = Faults { server_error_rate: 0.25, drop_rate: 0.15, ..Faults::default() };
    let sim = SimConfig { faults, ..fleet(2500) };
    // An attempt fails 36 times in 100; all 12 of a page, once in 20,000 reads of 10 pages.
    let app = spawn_app(sim, Auth::TokenFile, Tenant::default().max_attempts(12)).await;
    let truth = export_truth(&app);
    let (client, kb_rows) = client_of_eight_pages(&app, &truth);
    let states = client.export_states().await.expect("the export is read through the faults");

    let counts = states.counts;
    assert_eq!((counts.kb_rows, counts.rejected, counts.malformed), (kb_rows, 0, 0), "{counts:?}");
    assert!((7..=10).contains(&counts.pages), "{counts:?}");
    let requests = app.sim.stats().export_requests;
    assert!(requests > u64::from(counts.pages), "faults met and retried: {requests} requests");
    assert_states_are_truth(&states, &truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_max_page_bytes_fails_the_read() {
    let app = spawn_app(fleet(200), Auth::TokenFile, Tenant::default()).await;
    // 1,000 rows a page at least, about 1 KB each.
    let client = client_with_page_bytes(&app, 64 << 10);
    let err = client.export_states().await.expect_err("a page is too large");
    assert!(matches!(err, ApiError::TooLarge { limit: 65_536 }), "{err}");
    assert_eq!(app.sim.stats().export_requests, 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_fails_the_read_and_is_not_followed() {
    let elsewhere = Hostile::start(Router::new().route(EXPORT, get(page_of(None))), None).await;
    let next = elsewhere.url.join(&EXPORT[1..]).expect("a URL").to_string();
    let api = Hostile::start(Router::new().route(EXPORT, get(page_of(Some(next)))), None).await;
    let app = app_against(&api).await;
    let err = app.client().export_states().await.expect_err("the next page is elsewhere");
    assert!(err.to_string().contains("the export's next page is elsewhere"), "{err}");
    assert_eq!(api.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "{:?}", elsewhere.received());
}

/// A handler answering one row of [`MACHINE`] and `next` as the next link.
fn page_of(
    next: Option<String>,
) -> impl Fn() -> std::future::Ready<axum::Json<serde_json::Value>> + Clone + Send + Sync + 'static
{
    move || {
        let row = json!({ "deviceId": MACHINE, "recommendedSecurityUpdateId": "5020123",
                          "cveId": "CVE-2026-1" });
        std::future::ready(axum::Json(json!({ "value": [row], "@odata.nextLink": next })))
    }
}
