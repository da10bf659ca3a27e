//! The full vulnerability export: consistent with getmissingkbs, paged without loss, throttled as documented.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use serde_json::Value;

use super::TestSim;
use crate::sim::{Evolution, Faults, Route, SimConfig, SimQuota, Throttle};

const PATH: &str = "api/machines/SoftwareVulnerabilitiesByMachine";
const DELTA: &str = "api/machines/SoftwareVulnerabilityChangesByMachine";

/// Every row of the export, following `@odata.nextLink` from a first page of `page_size`.
async fn all_rows(t: &TestSim, page_size: &str) -> (Vec<Value>, usize) {
    t.follow(t.get_json(PATH, &[("pageSize", page_size)]).await).await
}

/// (device, KB) of every row that carries a KB.
fn kb_pairs(rows: &[Value]) -> BTreeSet<(String, String)> {
    let kb = |r: &Value| -> Option<(String, String)> {
        Some((r["deviceId"].as_str()?.into(), r["recommendedSecurityUpdateId"].as_str()?.into()))
    };
    rows.iter().filter_map(kb).collect()
}

#[tokio::test]
async fn rows_match_getmissingkbs_and_pages_hold_every_row_once() {
    // More pages than the documented 30 calls a minute allow: no export quota here.
    let t =
        TestSim::start(SimConfig { devices: 40, export_quota: None, ..SimConfig::default() }).await;
    let (rows, pages) = all_rows(&t, "50000").await;
    assert_eq!(pages, 1);
    let ids: HashSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), rows.len(), "row ids are unique");

    // Per device: KB id -> its distinct CVEs, from the rows that carry a KB.
    let mut by_device: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let (mut without_kb, mut tvm, mut numeric_update) = (0, 0, 0);
    for r in &rows {
        let device = r["deviceId"].as_str().unwrap().to_string();
        let cve = r["cveId"].as_str().unwrap().to_string();
        match r["recommendedSecurityUpdateId"].as_str() {
            Some(kb) => {
                assert!(kb.bytes().all(|b| b.is_ascii_digit()), "{kb}: a number, no KB prefix");
                assert_eq!(r["softwareVendor"], "microsoft");
                assert!(cve.starts_with("CVE-"));
                by_device.entry(device).or_default().entry(kb.into()).or_default().insert(cve);
            }
            None => {
                without_kb += 1;
                tvm += usize::from(cve.starts_with("TVM-"));
                numeric_update += usize::from(
                    r["recommendedSecurityUpdate"]
                        .as_str()
                        .is_some_and(|u| u.parse::<u64>().is_ok()),
                );
            }
        }
        for field in
            ["deviceName", "osPlatform", "softwareName", "softwareVersion", "rbacGroupName"]
        {
            assert!(r[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {r}");
        }
    }
    assert!(without_kb > 0 && tvm > 0 && numeric_update > 0, "{without_kb} {tvm} {numeric_update}");

    for id in t.sim.device_ids() {
        let kbs: Value = t.kbs(&id).await.json().await.unwrap();
        let want: BTreeMap<String, usize> = kbs["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (k["id"].as_str().unwrap().into(), k["cveAddressed"].as_u64().unwrap() as usize)
            })
            .collect();
        let got: BTreeMap<String, usize> = by_device
            .get(&id)
            .map(|m| m.iter().map(|(kb, cves)| (kb.clone(), cves.len())).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "device {id}");
    }

    // Small pages: the same rows, each once, in the same order.
    let (paged, pages) = all_rows(&t, "97").await;
    assert_eq!(pages, rows.len().div_ceil(97));
    assert_eq!(paged, rows);

    // $top: that many rows and no next link.
    let top = t.get_json(PATH, &[("$top", "10")]).await;
    assert_eq!(top["value"].as_array().unwrap().len(), 10);
    assert!(top.get("@odata.nextLink").is_none());
    assert_eq!(t.get(PATH, &[("$skiptoken", "bogus")]).await.status(), 400);
}

#[tokio::test]
async fn the_export_quota_answers_429_apart_from_the_other_routes() {
    let quota = SimQuota { per_minute: 3, per_hour: 100 };
    let t =
        TestSim::start(SimConfig { devices: 3, export_quota: Some(quota), ..SimConfig::default() })
            .await;
    for _ in 0..3 {
        assert_eq!(t.get(PATH, &[]).await.status(), 200);
    }
    let r = t.get(PATH, &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "{retry}");
    assert_eq!(t.get("api/machines", &[]).await.status(), 200);

    // The default is the documented 30 a minute.
    let t = TestSim::with_devices(2).await;
    for _ in 0..30 {
        assert_eq!(t.get(PATH, &[("$top", "1")]).await.status(), 200);
    }
    assert_eq!(t.get(PATH, &[("$top", "1")]).await.status(), 429);
}

#[tokio::test]
async fn pages_read_the_snapshot_of_their_first_page_while_the_fleet_evolves() {
    let t =
        TestSim::start(SimConfig { devices: 40, export_quota: None, ..SimConfig::default() }).await;
    let (before, _) = all_rows(&t, "50000").await;
    let first = t.get_json(PATH, &[("pageSize", "97")]).await;
    // Every kind of change, and every device's lastSeen moves: rows would shift and differ.
    t.sim.evolve(Evolution {
        install_updates: 0.3,
        new_monthly_kb: true,
        add_devices: 3,
        offboard_devices: 3,
        move_rbac_devices: 3,
        change_devices: 5,
        revise_kbs: 2,
        ..Default::default()
    });
    let (paged, pages) = t.follow(first.clone()).await;
    assert_eq!(pages, before.len().div_ceil(97));
    assert!(paged == before, "the pages after the step are those of the first page's snapshot");

    // A first page now reads the new snapshot: the truth after the step.
    let (after, _) = all_rows(&t, "50000").await;
    assert!(after != before);
    let truth = t.sim.truth();
    let want = truth.iter().flat_map(|(d, kbs)| kbs.iter().map(|k| (d.clone(), k.id.clone())));
    assert_eq!(kb_pairs(&after), want.collect());

    // A next link outlives one step, not two.
    let next: url::Url = first["@odata.nextLink"].as_str().unwrap().parse().unwrap();
    assert_eq!(t.get_url(next.clone()).await.status(), 200);
    t.sim.evolve(Evolution::default());
    assert_eq!(t.get_url(next).await.status(), 400);
}

#[tokio::test]
async fn export_routes_answer_the_429s_and_5xx_asked_for() {
    let t =
        TestSim::start(SimConfig { devices: 3, export_quota: None, ..SimConfig::default() }).await;
    let throttle = Throttle { seconds: 7, retry_after: true };
    t.sim.set_faults(Faults {
        throttled_on: vec![(Route::ExportChanges, throttle)],
        server_error_on: vec![Route::Export],
        ..Faults::default()
    });
    let r = t.get(DELTA, &[]).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("send requests again in 7 seconds"), "{message}");
    // Past the grace for requests already on their way, before the 7 s: a violation.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.get(DELTA, &[]).await.status(), 429);
    let stats = t.sim.stats();
    assert_eq!((stats.throttled, stats.retry_after_violations), (2, 1));

    for _ in 0..4 {
        let status = t.get(PATH, &[]).await.status();
        assert!(status == 500 || status == 503, "{status}");
    }
    assert_eq!(t.get("api/machines", &[]).await.status(), 200, "other routes are untouched");

    // Without Retry-After: the wait is in the message only.
    let throttle = Throttle { seconds: 2, retry_after: false };
    t.sim.set_faults(Faults { throttled_on: vec![(Route::Export, throttle)], ..Faults::default() });
    let r = t.get(PATH, &[]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("again in 2 seconds"));
    assert_eq!(t.get(DELTA, &[("sinceTime", "2000-01-01")]).await.status(), 400, "not throttled");
}
