//! Listing, paging, filters, the machine shape and getmissingkbs.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{TestSim, ids};
use crate::sim::{Evolution, Sim, SimConfig};

fn fixed(seed: u64) -> SimConfig {
    let now = DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z").unwrap().with_timezone(&Utc);
    SimConfig { seed, devices: 300, now: Some(now), ..SimConfig::default() }
}

#[tokio::test]
async fn same_seed_gives_same_fleet_and_truth() {
    let (a, b, c) = (
        Sim::start(fixed(7)).await.unwrap(),
        Sim::start(fixed(7)).await.unwrap(),
        Sim::start(fixed(8)).await.unwrap(),
    );
    assert_eq!(a.truth(), b.truth());
    assert_eq!(a.device_ids(), b.device_ids());
    assert_ne!(a.truth(), c.truth());
    let truth = a.truth();
    assert_eq!(truth.len(), 300);
    assert!(truth.values().any(|kbs| kbs.is_empty()));
    assert!(truth.values().all(|kbs| kbs.len() <= 12 && kbs.windows(2).all(|w| w[0].id < w[1].id)));
    let windows: HashSet<String> = a.windows_device_ids().into_iter().collect();
    assert!(truth.iter().filter(|(id, _)| !windows.contains(*id)).all(|(_, kbs)| kbs.is_empty()));
    let step = Evolution {
        install_updates: 0.3,
        new_monthly_kb: true,
        add_devices: 4,
        ..Default::default()
    };
    assert_eq!(a.evolve(step.clone()).devices_added, b.evolve(step).devices_added);
    assert_eq!(a.truth(), b.truth());
}

#[tokio::test]
async fn pages_25000_devices_with_top_skip_and_next_link() {
    let t = TestSim::with_devices(25_000).await;
    let mut seen = HashSet::new();
    let mut sizes = Vec::new();
    let mut linux = 0;
    for skip in ["0", "10000", "20000", "30000"] {
        let page = t.get_json("api/machines", &[("$top", "20000"), ("$skip", skip)]).await;
        assert!(page.get("@odata.nextLink").is_none(), "no nextLink with $top");
        sizes.push(ids(&page).len());
        seen.extend(ids(&page));
        linux +=
            page["value"].as_array().unwrap().iter().filter(|m| m["osPlatform"] == "Linux").count();
    }
    assert_eq!(sizes, [10_000, 10_000, 5_000, 0]);
    assert_eq!(seen.len(), 25_000);

    // Without $top: follow the nextLink, which keeps the filter.
    let filter = "osPlatform ne 'Linux'";
    let mut page = t.get_json("api/machines", &[("$filter", filter)]).await;
    let mut followed = ids(&page);
    let mut links = 0;
    while let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) {
        let next = url::Url::parse(next).unwrap();
        assert!(next.query_pairs().any(|(k, v)| k == "$filter" && v == filter));
        page = t.get_url(next).await.json().await.unwrap();
        followed.extend(ids(&page));
        links += 1;
    }
    let expected = 25_000 - linux;
    assert_eq!(links, 2);
    assert_eq!(followed.len(), expected);
    assert_eq!(followed.iter().collect::<HashSet<_>>().len(), expected);
}

#[tokio::test]
async fn filters_select_what_they_say() {
    let t = TestSim::with_devices(500).await;
    let all = t.get_json("api/machines", &[]).await["value"].as_array().unwrap().clone();
    let mut seen: Vec<DateTime<Utc>> =
        all.iter().map(|m| m["lastSeen"].as_str().unwrap().parse().unwrap()).collect();
    seen.sort();
    let median = seen[seen.len() / 2];
    let cutoff = median.to_rfc3339();
    let later =
        move |m: &Value| m["lastSeen"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap() > median;
    type Pred = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        ("osPlatform eq 'Windows11'".into(), Box::new(|m| m["osPlatform"] == "Windows11")),
        ("healthStatus ne 'Active'".into(), Box::new(|m| m["healthStatus"] != "Active")),
        (
            "startswith(computerDnsName,'srv-')".into(),
            Box::new(|m| m["computerDnsName"].as_str().unwrap().starts_with("srv-")),
        ),
        (format!("lastSeen gt {cutoff}"), Box::new(later)),
        (
            "riskScore eq 'High' AND osplatform EQ 'windows10'".into(),
            Box::new(|m| m["riskScore"] == "High" && m["osPlatform"] == "Windows10"),
        ),
        ("rbacGroupId eq 140".into(), Box::new(|m| m["rbacGroupId"] == 140)),
    ];
    for (filter, pred) in cases {
        let expected: Vec<String> =
            all.iter().filter(|m| pred(m)).map(|m| m["id"].as_str().unwrap().into()).collect();
        assert!(!expected.is_empty() && expected.len() < all.len(), "{filter}");
        assert_eq!(
            ids(&t.get_json("api/machines", &[("$filter", &filter)]).await),
            expected,
            "{filter}"
        );
    }
    let far = t.get_json("api/machines", &[("$filter", "lastSeen gt 2099-01-01Z")]).await;
    assert_eq!(ids(&far).len(), 0);
    let bad = t.get("api/machines", &[("$filter", "riskScore eq")]).await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("filter"));
}

#[tokio::test]
async fn empty_fleet_is_404_until_a_device_is_listed() {
    let t = TestSim::with_devices(0).await;
    let r = t.get("api/machines", &[]).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ResourceNotFound");
    assert_eq!(body["error"]["message"], "No machines found");
    t.sim.push_raw_device(json!({"id": "../x", "computerDnsName": "hostile"}));
    let page = t.get_json("api/machines", &[]).await;
    assert_eq!(ids(&page), ["../x"]);
    assert!(t.sim.stats().kbs_requests_by_device.is_empty());
}

#[tokio::test]
async fn machines_have_the_full_recorded_shape() {
    let t = TestSim::with_devices(50).await;
    let r = t.get("api/machines", &[("$top", "50")]).await;
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json; odata.metadata=minimal"), "{ct}");
    let page: Value = r.json().await.unwrap();
    assert!(page["@odata.context"].as_str().unwrap().ends_with("api/$metadata#Machines"));
    let m = &page["value"][0];
    let keys = [
        "id",
        "mergedIntoMachineId",
        "isPotentialDuplication",
        "isExcluded",
        "exclusionReason",
        "computerDnsName",
        "firstSeen",
        "lastSeen",
        "osPlatform",
        "osVersion",
        "osProcessor",
        "version",
        "lastIpAddress",
        "lastExternalIpAddress",
        "agentVersion",
        "osBuild",
        "healthStatus",
        "deviceValue",
        "rbacGroupId",
        "rbacGroupName",
        "riskScore",
        "exposureLevel",
        "isAadJoined",
        "aadDeviceId",
        "machineTags",
        "defenderAvStatus",
        "onboardingStatus",
        "osArchitecture",
        "managedBy",
        "managedByStatus",
        "ipAddresses",
        "vmMetadata",
    ];
    assert_eq!(
        m.as_object().unwrap().keys().map(String::as_str).collect::<HashSet<_>>(),
        HashSet::from(keys)
    );
    for m in page["value"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap();
        assert!(
            id.len() == 40 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert!(
            m["rbacGroupId"].is_number()
                && m["machineTags"].is_array()
                && m["vmMetadata"].is_null()
        );
        assert!(m["ipAddresses"][0]["macAddress"].is_string());
        let windows = m["osPlatform"].as_str().unwrap().starts_with("Windows");
        assert_eq!(m["osBuild"].is_number(), windows);
    }
}

#[tokio::test]
async fn getmissingkbs_matches_truth() {
    let t = TestSim::with_devices(100).await;
    let truth = t.sim.truth();
    let (id, expected) = truth.iter().find(|(_, kbs)| kbs.len() >= 2).unwrap();
    let body: Value = t.kbs(id).await.json().await.unwrap();
    assert!(body["@odata.context"].as_str().unwrap().contains("PublicProductFixDto"));
    let items = body["value"].as_array().unwrap();
    assert_eq!(items.len(), expected.len());
    for (item, kb) in items.iter().zip(expected) {
        assert_eq!(item.as_object().unwrap().len(), 6);
        assert_eq!(item["id"], kb.id.as_str());
        assert_eq!(item["cveAddressed"], kb.cve_addressed);
        assert!(item["name"].as_str().unwrap().ends_with(" Security Updates"));
        assert!(item["url"].as_str().unwrap().ends_with(&format!("q=KB{}", kb.id)));
        assert!(item["productsNames"].as_array().unwrap().iter().all(Value::is_string));
        assert!(item["machineMissedOn"].as_u64().unwrap() >= 1);
    }
    let windows: HashSet<String> = t.sim.windows_device_ids().into_iter().collect();
    let other = truth.keys().find(|id| !windows.contains(*id)).unwrap();
    assert_eq!(t.kbs(other).await.json::<Value>().await.unwrap()["value"], json!([]));

    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let r = t.kbs(unknown).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], format!("Machine {unknown} was not found"));
    assert_eq!(t.sim.stats().kbs_requests_by_device[unknown], 1);
}

#[tokio::test]
async fn the_machine_list_is_deflated_when_the_client_accepts_it() {
    let t = TestSim::start(SimConfig { devices: 50, ..SimConfig::default() }).await;
    let raw = reqwest::Client::builder().no_gzip().no_deflate().build().expect("client");
    let r = raw
        .get(t.url("api/machines", &[]))
        .bearer_auth(&t.token)
        .header(reqwest::header::ACCEPT_ENCODING, "deflate")
        .send()
        .await
        .expect("request sent");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[reqwest::header::CONTENT_ENCODING], "deflate");
    let compressed = r.bytes().await.expect("body");
    assert!(serde_json::from_slice::<Value>(&compressed).is_err(), "the body is compressed");
    // The ordinary client (kbwatch's has gzip and deflate on) decodes it transparently.
    let page = t.get_json("api/machines", &[]).await;
    assert_eq!(page["value"].as_array().map(Vec::len), Some(50));
}
