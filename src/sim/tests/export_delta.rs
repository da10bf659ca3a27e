//! The delta export: after an evolution step, its KB-bearing events are exactly the change in the truth.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, TimeDelta, TimeZone, Utc};
use serde_json::Value;

use super::TestSim;
use crate::sim::{Evolution, SimConfig, TruthKb};

const PATH: &str = "api/machines/SoftwareVulnerabilityChangesByMachine";
const FULL: &str = "api/machines/SoftwareVulnerabilitiesByMachine";

/// A simulator of `devices` whose present is 2026-11-20 09:00 UTC, without the export quota.
async fn start(devices: usize) -> (TestSim, DateTime<Utc>) {
    let now = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
    let cfg = SimConfig { devices, now: Some(now), export_quota: None, ..SimConfig::default() };
    (TestSim::start(cfg).await, now)
}

fn pairs(truth: &BTreeMap<String, Vec<TruthKb>>) -> BTreeSet<(String, String)> {
    truth.iter().flat_map(|(d, kbs)| kbs.iter().map(move |k| (d.clone(), k.id.clone()))).collect()
}

#[tokio::test]
async fn kb_events_equal_the_change_in_the_truth() {
    let (t, now) = start(60).await;
    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let empty = t.get_json(PATH, &[("sinceTime", &since)]).await;
    assert_eq!(empty["value"].as_array().unwrap().len(), 0);

    let before = t.sim.truth();
    let cves: BTreeMap<String, u64> =
        before.values().flatten().map(|k| (k.id.clone(), k.cve_addressed as u64)).collect();
    let evolution = Evolution {
        install_updates: 0.3,
        new_monthly_kb: true,
        add_devices: 2,
        offboard_devices: 2,
        ..Default::default()
    };
    t.sim.evolve(evolution);
    let after = t.sim.truth();
    let mut cves = cves;
    cves.extend(after.values().flatten().map(|k| (k.id.clone(), k.cve_addressed as u64)));
    let fixed_want: BTreeSet<_> = pairs(&before).difference(&pairs(&after)).cloned().collect();
    let new_want: BTreeSet<_> = pairs(&after).difference(&pairs(&before)).cloned().collect();
    assert!(!fixed_want.is_empty() && !new_want.is_empty());

    // Follow the pages; count the CVEs of each (status, device, KB).
    let mut got: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    let mut page = t.get_json(PATH, &[("sinceTime", &since), ("pageSize", "500")]).await;
    loop {
        for r in page["value"].as_array().unwrap() {
            let stamp: DateTime<Utc> = r["eventTimestamp"].as_str().unwrap().parse().unwrap();
            assert!(stamp > now && stamp <= now + TimeDelta::days(1), "{stamp}");
            let Some(kb) = r["recommendedSecurityUpdateId"].as_str() else { continue };
            let key = (
                r["status"].as_str().unwrap().into(),
                r["deviceId"].as_str().unwrap().into(),
                kb.into(),
            );
            got.entry(key).or_default().insert(r["cveId"].as_str().unwrap().into());
        }
        let Some(next) = page["@odata.nextLink"].as_str() else { break };
        page = t.get_url(next.parse().unwrap()).await.json::<Value>().await.unwrap();
    }
    let of = |status: &str| -> BTreeSet<(String, String)> {
        got.keys().filter(|k| k.0 == status).map(|k| (k.1.clone(), k.2.clone())).collect()
    };
    assert_eq!(of("Fixed"), fixed_want);
    assert_eq!(of("New"), new_want);
    for ((_, _, kb), set) in &got {
        assert_eq!(set.len() as u64, cves[kb], "KB {kb}");
    }

    // After the event, nothing; sinceTime is required and reaches at most 14 days back.
    let later = (now + TimeDelta::days(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let none = t.get_json(PATH, &[("sinceTime", &later)]).await;
    assert_eq!(none["value"].as_array().unwrap().len(), 0);
    assert_eq!(t.get(PATH, &[]).await.status(), 400);
    let old = (now - TimeDelta::days(15)).to_rfc3339_opts(SecondsFormat::Secs, true);
    assert_eq!(t.get(PATH, &[("sinceTime", &old)]).await.status(), 400);
}

#[tokio::test]
async fn an_rbac_move_gives_fixed_then_new_for_every_row() {
    let (t, now) = start(40).await;
    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let truth = t.sim.truth();
    let s = t.sim.evolve(Evolution { move_rbac_devices: 1, ..Default::default() });
    let moved = &s.devices_moved[0];
    let delta = t.get_json(PATH, &[("sinceTime", &since)]).await;
    let rows = delta["value"].as_array().unwrap();
    assert!(!rows.is_empty() && rows.iter().all(|r| r["deviceId"] == moved.as_str()));
    let group = |status: &str| -> BTreeSet<String> {
        let of = rows.iter().filter(|r| r["status"] == status);
        of.map(|r| r["rbacGroupName"].as_str().unwrap().to_string()).collect()
    };
    let (old, new) = (group("Fixed"), group("New"));
    assert_eq!((old.len(), new.len()), (1, 1));
    assert_ne!(old, new);
    let ids = |status: &str| -> Vec<String> {
        let of = rows.iter().filter(|r| r["status"] == status);
        of.map(|r| r["cveId"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids("Fixed"), ids("New"));
    let kbs: BTreeSet<&str> =
        rows.iter().filter_map(|r| r["recommendedSecurityUpdateId"].as_str()).collect();
    let want: BTreeSet<&str> = truth[moved].iter().map(|k| k.id.as_str()).collect();
    assert_eq!(kbs, want);
}

/// What names a row and what an upgrade moves: (id, software, version, CVE, KB, `osVersion`).
fn row_key(r: &Value) -> [String; 6] {
    ["id", "softwareName", "softwareVersion", "cveId", "recommendedSecurityUpdateId", "osVersion"]
        .map(|f| r[f].as_str().unwrap_or("-").to_string())
}

/// The rows of `device` among `rows` whose status is `status` (any, for `None`), keyed.
fn keys_of(rows: &[Value], device: &str, status: Option<&str>) -> Vec<[String; 6]> {
    let of = rows.iter().filter(|r| r["deviceId"] == device);
    of.filter(|r| status.is_none_or(|s| r["status"] == s)).map(row_key).collect()
}

#[tokio::test]
async fn a_software_upgrade_gives_fixed_at_the_old_versions_then_new_at_the_new_ones() {
    let (t, now) = start(40).await;
    let truth = t.sim.truth();
    let (full_before, _) = t.follow(t.get_json(FULL, &[]).await).await;
    let s = t.sim.evolve(Evolution { upgrade_software_devices: 3, ..Default::default() });
    assert_eq!(s.devices_upgraded.len(), 3, "{s:?}");
    assert_eq!(t.sim.truth(), truth, "nobody's missing KBs change");
    for d in &s.devices_upgraded {
        let kbs: Value = t.kbs(d).await.json().await.unwrap();
        let ids: BTreeSet<&str> =
            kbs["value"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
        assert_eq!(ids, truth[d].iter().map(|k| k.id.as_str()).collect(), "getmissingkbs of {d}");
    }
    let (full_after, _) = t.follow(t.get_json(FULL, &[]).await).await;

    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let (rows, _) = t.follow(t.get_json(PATH, &[("sinceTime", &since)]).await).await;
    // Each upgraded device that has rows (one missing nothing may have none), and no other.
    let devices: BTreeSet<&str> = rows.iter().map(|r| r["deviceId"].as_str().unwrap()).collect();
    let with_rows =
        s.devices_upgraded.iter().filter(|d| !keys_of(&full_before, d, None).is_empty());
    assert_eq!(devices, with_rows.map(String::as_str).collect());
    for r in &rows {
        let stamp: DateTime<Utc> = r["eventTimestamp"].as_str().unwrap().parse().unwrap();
        assert!(stamp > now && stamp <= now + TimeDelta::days(1), "{stamp}");
        assert_eq!(r["isOnboarded"], true);
    }
    let mut kb_rows = 0;
    for d in &s.devices_upgraded {
        // Every row of the device: Fixed as the full export had it, then New as it has it now.
        let (fixed, new) = (keys_of(&rows, d, Some("Fixed")), keys_of(&rows, d, Some("New")));
        assert_eq!(keys_of(&rows, d, None), [fixed.clone(), new.clone()].concat(), "{d}");
        assert_eq!(fixed, keys_of(&full_before, d, None), "{d}: the rows before");
        assert_eq!(new, keys_of(&full_after, d, None), "{d}: the rows after");
        // Row for row: the same software, CVE and KB at another version, under another id.
        for (old, new) in fixed.iter().zip(&new) {
            assert_eq!((&old[1], &old[3], &old[4]), (&new[1], &new[3], &new[4]));
            assert!(old[0] != new[0] && old[2] != new[2] && old[5] != new[5], "{old:?} {new:?}");
        }
        kb_rows += fixed.iter().filter(|k| k[4] != "-").count();
        let kbs: BTreeSet<&str> =
            fixed.iter().map(|k| k[4].as_str()).filter(|k| *k != "-").collect();
        assert_eq!(kbs, truth[d].iter().map(|k| k.id.as_str()).collect(), "{d}");
    }
    assert!(kb_rows > 0, "the pairs name KBs");
    // Every other device's rows are as they were, but for their lastSeen.
    let others = |rows: &[Value]| -> Vec<[String; 6]> {
        let of = rows.iter().filter(|r| !s.devices_upgraded.iter().any(|d| r["deviceId"] == **d));
        of.map(row_key).collect()
    };
    assert_eq!(others(&full_before), others(&full_after));
}

#[tokio::test]
async fn changed_devices_differ_by_one_kb_and_small_pages_give_the_delta_whole() {
    let (t, now) = start(200).await;
    let before = t.sim.truth();
    let s = t.sim.evolve(Evolution { change_devices: 10, ..Default::default() });
    assert_eq!((s.devices_changed.len(), s.kbs_fixed + s.kbs_added), (10, 10), "{s:?}");
    let after = t.sim.truth();
    let ids = |kbs: &Vec<TruthKb>| kbs.iter().map(|k| k.id.clone()).collect::<BTreeSet<_>>();
    let differ: BTreeSet<&String> = after.keys().filter(|d| before[*d] != after[*d]).collect();
    assert_eq!(differ, s.devices_changed.iter().collect());
    for d in differ {
        assert_eq!(ids(&before[d]).symmetric_difference(&ids(&after[d])).count(), 1, "{d}");
    }

    // Pages of 7 rows, each rendered alone, add up to the one page of everything.
    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let whole = t.get_json(PATH, &[("sinceTime", &since)]).await["value"].clone();
    let mut paged = Vec::new();
    let mut page = t.get_json(PATH, &[("sinceTime", &since), ("pageSize", "7")]).await;
    loop {
        paged.extend(page["value"].as_array().unwrap().iter().cloned());
        let Some(next) = page["@odata.nextLink"].as_str() else { break };
        page = t.get_url(next.parse().unwrap()).await.json::<Value>().await.unwrap();
    }
    assert_eq!(Value::Array(paged), whole);
    let devices: BTreeSet<&str> =
        whole.as_array().unwrap().iter().map(|r| r["deviceId"].as_str().unwrap()).collect();
    assert_eq!(devices, s.devices_changed.iter().map(String::as_str).collect());
    assert_eq!(
        t.sim.stats().export_changes_requests,
        1 + whole.as_array().unwrap().len().div_ceil(7) as u64
    );
}

/// `cvssScore` of every row of the full export, by (device, CVE).
async fn scores(t: &TestSim) -> BTreeMap<(String, String), Value> {
    let (rows, _) = t.follow(t.get_json(FULL, &[]).await).await;
    let key = |r: &Value| -> (String, String) {
        (r["deviceId"].as_str().unwrap().into(), r["cveId"].as_str().unwrap().into())
    };
    let scores: BTreeMap<_, _> = rows.iter().map(|r| (key(r), r["cvssScore"].clone())).collect();
    assert_eq!(scores.len(), rows.len(), "a device has a CVE once");
    scores
}

#[tokio::test]
async fn a_revised_kb_gives_updated_rows_with_its_new_scores_and_changes_no_missing_kb() {
    let (t, now) = start(60).await;
    let truth = t.sim.truth();
    let before = scores(&t).await;
    let s = t.sim.evolve(Evolution { revise_kbs: 2, ..Default::default() });
    assert_eq!(t.sim.truth(), truth, "nobody's missing KBs change");
    assert_eq!(s.kbs_revised.len(), 2, "{s:?}");

    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let (rows, _) = t.follow(t.get_json(PATH, &[("sinceTime", &since)]).await).await;
    assert!(rows.iter().all(|r| r["status"] == "Updated"));
    // A row per CVE of each revised KB, on each device that misses it.
    let want: BTreeSet<(String, String)> =
        pairs(&truth).into_iter().filter(|(_, kb)| s.kbs_revised.contains(kb)).collect();
    let got: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            let kb = r["recommendedSecurityUpdateId"].as_str().unwrap();
            (r["deviceId"].as_str().unwrap().into(), kb.into())
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
    let cves: BTreeMap<&str, i64> =
        truth.values().flatten().map(|k| (k.id.as_str(), k.cve_addressed)).collect();
    let rows_wanted: i64 = want.iter().map(|(_, kb)| cves[kb.as_str()]).sum();
    assert_eq!(rows.len() as i64, rows_wanted);

    // The full export has the new scores, the ones of the delta's rows, and no other changed.
    let after = scores(&t).await;
    let changed: BTreeSet<&(String, String)> =
        after.iter().filter(|(k, v)| before.get(*k) != Some(*v)).map(|(k, _)| k).collect();
    assert_eq!(changed.len(), rows.len());
    for r in &rows {
        let key: (String, String) =
            (r["deviceId"].as_str().unwrap().to_string(), r["cveId"].as_str().unwrap().into());
        assert!(changed.contains(&key), "{key:?}");
        assert_eq!(after[&key], r["cvssScore"]);
    }
}

#[tokio::test]
async fn a_step_between_pages_neither_adds_events_nor_shifts_rows() {
    let (t, now) = start(200).await;
    t.sim.evolve(Evolution { change_devices: 10, ..Default::default() });
    let since = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let whole = t.get_json(PATH, &[("sinceTime", &since)]).await["value"].clone();
    let first = t.get_json(PATH, &[("sinceTime", &since), ("pageSize", "7")]).await;
    // New events, offboarded devices (isOnboarded), moved lastSeen, new scores.
    t.sim.evolve(Evolution {
        change_devices: 10,
        offboard_devices: 20,
        revise_kbs: 3,
        ..Default::default()
    });
    let (paged, _) = t.follow(first).await;
    assert!(Value::Array(paged) == whole, "the pages of the first page's snapshot");
    let now_whole = t.get_json(PATH, &[("sinceTime", &since)]).await["value"].clone();
    assert!(now_whole.as_array().unwrap().len() > whole.as_array().unwrap().len());
}
