//! The full vulnerability export: consistent with getmissingkbs, paged without loss, throttled as documented.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::Value;

use super::TestSim;
use crate::sim::{Evolution, Faults, Route, Sim, SimConfig, SimQuota, Throttle, TruthKb};

const PATH: &str = "api/machines/SoftwareVulnerabilitiesByMachine";
const DELTA: &str = "api/machines/SoftwareVulnerabilityChangesByMachine";

/// Every row of the export, following `@odata.nextLink` from a first page of `page_size`.
async fn all_rows(t: &TestSim, page_size: &str) -> (Vec<Value>, usize) {
    t.follow(t.get_json(PATH, &[("pageSize", page_size)]).await).await
}

/// (device, KB) of a row that carries a KB.
fn kb_pair(r: &Value) -> Option<(String, String)> {
    Some((r["deviceId"].as_str()?.into(), r["recommendedSecurityUpdateId"].as_str()?.into()))
}

/// (device, KB) of every row that carries a KB.
fn kb_pairs(rows: &[Value]) -> BTreeSet<(String, String)> {
    rows.iter().filter_map(kb_pair).collect()
}

/// How many distinct CVEs the rows give each (device, KB).
fn cves_per_kb(rows: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut cves: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for r in rows {
        if let Some(pair) = kb_pair(r) {
            cves.entry(pair).or_default().insert(r["cveId"].as_str().expect("a CVE id"));
        }
    }
    cves.into_iter().map(|(pair, cves)| (pair, cves.len())).collect()
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
        upgrade_software_devices: 3,
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

#[tokio::test]
async fn max_cve_addressed_caps_every_kb_in_the_truth_getmissingkbs_and_the_export() {
    const MAX: i64 = 3;
    let now = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
    let cfg = SimConfig { devices: 60, now: Some(now), export_quota: None, ..SimConfig::default() };
    let full = TestSim::start(cfg.clone()).await;
    let capped = TestSim::start(SimConfig { max_cve_addressed: Some(MAX), ..cfg.clone() }).await;
    let before: BTreeSet<String> = full.sim.truth().into_values().flatten().map(|k| k.id).collect();
    // A new month's KBs are capped too.
    let step = Evolution { new_monthly_kb: true, install_updates: 0.1, ..Default::default() };
    let (full_step, capped_step) = (full.sim.evolve(step.clone()), capped.sim.evolve(step));
    assert_eq!(full_step.kbs_added, capped_step.kbs_added);

    // The same devices miss the same KBs; only the counts over the cap are cut to it.
    let (full_truth, truth) = (full.sim.truth(), capped.sim.truth());
    let cut = |kbs: &Vec<TruthKb>| -> Vec<TruthKb> {
        let cut = |k: &TruthKb| TruthKb { cve_addressed: k.cve_addressed.min(MAX), ..k.clone() };
        kbs.iter().map(cut).collect()
    };
    let want: BTreeMap<String, Vec<TruthKb>> =
        full_truth.iter().map(|(d, kbs)| (d.clone(), cut(kbs))).collect();
    assert_eq!(truth, want);
    let over = |k: &&TruthKb| k.cve_addressed > MAX;
    let new_over = full_truth.values().flatten().filter(over).filter(|k| !before.contains(&k.id));
    assert!(new_over.count() > 0, "the new month has KBs the cap cuts");
    assert!(truth.values().flatten().all(|k| (1..=MAX).contains(&k.cve_addressed)));

    // getmissingkbs says the same.
    for (id, kbs) in &truth {
        let body: Value = capped.kbs(id).await.json().await.expect("JSON body");
        let got: Vec<(String, i64)> = (body["value"].as_array().expect("value").iter())
            .map(|k| (k["id"].as_str().unwrap().into(), k["cveAddressed"].as_i64().unwrap()))
            .collect();
        let want: Vec<(String, i64)> =
            kbs.iter().map(|k| (k.id.clone(), k.cve_addressed)).collect();
        assert_eq!(got, want, "device {id}");
    }

    // The export gives each (device, KB) exactly `cveAddressed` distinct CVEs.
    let (rows, _) = all_rows(&capped, "50000").await;
    let per_kb = truth.iter().flat_map(|(d, kbs)| {
        kbs.iter().map(|k| ((d.clone(), k.id.clone()), k.cve_addressed as usize))
    });
    assert_eq!(cves_per_kb(&rows), per_kb.collect());
    let (full_rows, _) = all_rows(&full, "50000").await;
    assert!(rows.len() < full_rows.len(), "{} rows capped, {} not", rows.len(), full_rows.len());

    let refused = Sim::start(SimConfig { max_cve_addressed: Some(0), ..cfg }).await;
    assert!(refused.is_err(), "a KB addresses at least one CVE");
}
