//! Fleet evolution, the admin surface, faults and TLS.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{TestSim, fetch_token, ids};
use crate::sim::{DeviceFault, Evolution, Faults, Sim, SimConfig};

fn total(truth: &std::collections::BTreeMap<String, Vec<crate::sim::TruthKb>>) -> usize {
    truth.values().map(Vec::len).sum()
}

#[tokio::test]
async fn evolution_changes_kbs_and_devices() {
    let t = TestSim::with_devices(200).await;
    let before = t.sim.truth();
    let s = t.sim.evolve(Evolution { new_monthly_kb: true, ..Default::default() });
    let after = t.sim.truth();
    assert_eq!(total(&after), total(&before) + s.kbs_added);
    let old_ids: HashSet<&String> = before.values().flatten().map(|k| &k.id).collect();
    let windows = t.sim.windows_device_ids();
    let with_new =
        windows.iter().filter(|id| after[*id].iter().any(|k| !old_ids.contains(&k.id))).count();
    assert!(with_new * 10 >= windows.len() * 8, "{with_new} of {}", windows.len());

    let s = t.sim.evolve(Evolution { install_updates: 0.5, ..Default::default() });
    assert!(s.kbs_fixed > 0);
    assert_eq!(total(&t.sim.truth()), total(&after) - s.kbs_fixed);

    let s = t.sim.evolve(Evolution { offboard_devices: 5, add_devices: 3, ..Default::default() });
    assert_eq!((s.devices_offboarded.len(), s.devices_added.len()), (5, 3));
    let listed: HashSet<String> = ids(&t.get_json("api/machines", &[]).await).into_iter().collect();
    assert_eq!(listed.len(), 198);
    let truth = t.sim.truth();
    for gone in &s.devices_offboarded {
        assert!(!listed.contains(gone) && !truth.contains_key(gone));
        assert_eq!(t.kbs(gone).await.status(), 404);
    }
    assert!(s.devices_added.iter().all(|id| listed.contains(id) && truth.contains_key(id)));

    let s = t.sim.evolve(Evolution { duplicate_devices: 1, ..Default::default() });
    let page = t.get_json("api/machines", &[]).await;
    let new =
        page["value"].as_array().unwrap().iter().find(|m| m["id"] == s.devices_added[0]).unwrap();
    let twins: Vec<&Value> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["computerDnsName"] == new["computerDnsName"])
        .collect();
    assert_eq!(twins.len(), 2);
    assert!(twins.iter().any(|m| m["healthStatus"] == "Inactive" && m["id"] != new["id"]));
}

#[tokio::test]
async fn admin_routes_serve_truth_stats_and_evolve() {
    let t = TestSim::with_devices(20).await;
    let base = t.sim.base_url();
    let admin = t.sim.admin_token();
    let get = |path: &str| t.client.get(base.join(path).unwrap()).bearer_auth(admin).send();
    let truth: Value = get("admin/truth").await.unwrap().json().await.unwrap();
    assert_eq!(truth.as_object().unwrap().len(), 20);
    let r = t
        .client
        .post(base.join("admin/evolve").unwrap())
        .bearer_auth(admin)
        .json(&json!({"add_devices": 2}))
        .send()
        .await;
    let summary: Value = r.unwrap().json().await.unwrap();
    assert_eq!(summary["devices_added"].as_array().unwrap().len(), 2);
    assert_eq!(t.sim.truth().len(), 22);
    let stats: Value = get("admin/stats").await.unwrap().json().await.unwrap();
    assert_eq!(stats["token_requests"], 1);
}

#[tokio::test]
async fn admin_routes_refuse_a_request_without_the_admin_token() {
    let t = TestSim::with_devices(5).await;
    let base = t.sim.base_url();
    // Each admin token is the simulator's own, made at start.
    let other = Sim::start(SimConfig { devices: 1, ..SimConfig::default() }).await.unwrap();
    assert_ne!(t.sim.admin_token(), other.admin_token());
    assert!(t.sim.admin_token().len() >= 64, "{}", t.sim.admin_token());
    let wrong = [None, Some(t.token.as_str()), Some(other.admin_token()), Some("")];
    for token in wrong {
        for (method, path) in
            [("GET", "admin/truth"), ("GET", "admin/stats"), ("POST", "admin/evolve")]
        {
            let mut request = t
                .client
                .request(method.parse().unwrap(), base.join(path).unwrap())
                .json(&json!({"add_devices": 1}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
    }
    assert_eq!(t.sim.truth().len(), 5, "no refused evolve changed the fleet");
    // The admin token opens no API route either.
    let r =
        t.client.get(base.join("api/machines").unwrap()).bearer_auth(t.sim.admin_token()).send();
    assert_eq!(r.await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_listen_address_that_is_not_loopback_needs_allow_remote() {
    let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    let refused = Sim::start(SimConfig { listen: any, ..SimConfig::default() }).await;
    let error = format!("{:#}", refused.err().expect("0.0.0.0 is refused"));
    assert!(error.contains("0.0.0.0:0") && error.contains("--allow-remote"), "{error}");

    let sim = Sim::start(SimConfig { listen: any, allow_remote: true, ..SimConfig::default() })
        .await
        .expect("allowed on purpose");
    let bound = sim.local_addr();
    assert!(bound.ip().is_unspecified() && bound.port() != 0, "{bound}");
    // Clients on this machine still reach it at the base URL, on the bound port.
    assert_eq!(sim.base_url().port(), Some(bound.port()));
    let r = reqwest::get(sim.base_url().join("admin/stats").unwrap()).await.unwrap();
    assert_eq!(r.status(), 401);

    let local = Sim::start(SimConfig::default()).await.unwrap();
    assert!(local.local_addr().ip().is_loopback() && local.local_addr().port() != 0);
}

/// The list and both exports (the delta with its `sinceTime`): the rates apply to each.
const PAGED_ROUTES: [(&str, &[(&str, &str)]); 3] = [
    ("api/machines", &[]),
    ("api/machines/SoftwareVulnerabilitiesByMachine", &[]),
    ("api/machines/SoftwareVulnerabilityChangesByMachine", &[("sinceTime", SINCE)]),
];
const SINCE: &str = "2026-01-01T00:00:00Z";

#[tokio::test]
async fn faults_answer_as_configured() {
    let t = TestSim::with_devices(20).await;
    let id = t.sim.windows_device_ids()[0].clone();
    let set = |f: Faults| t.sim.set_faults(f);

    set(Faults { server_error_rate: 1.0, ..Default::default() });
    assert!(t.kbs(&id).await.status().is_server_error());
    for (path, query) in PAGED_ROUTES {
        assert!(t.get(path, query).await.status().is_server_error(), "{path}");
    }

    set(Faults { not_found_rate: 1.0, ..Default::default() });
    let body: Value = t.kbs(&id).await.json().await.unwrap();
    assert_eq!(body["error"]["message"], format!("Machine {id} was not found"));

    set(Faults { malformed_rate: 1.0, ..Default::default() });
    let r = t.kbs(&id).await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());

    set(Faults { drop_rate: 1.0, ..Default::default() });
    for (path, query) in PAGED_ROUTES {
        let url = t.url(path, query);
        let outcome = match t.client.get(url).bearer_auth(&t.token).send().await {
            Ok(r) => r.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(outcome.is_err(), "a dropped connection is a transport error: {path}");
    }

    set(Faults { forbidden: Some("Missing application roles.".into()), ..Default::default() });
    let r = t.kbs(&id).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["message"], "Missing application roles.");

    set(Faults { latency: Duration::from_millis(200), ..Default::default() });
    let started = Instant::now();
    assert_eq!(t.kbs(&id).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    set(Faults::default());
    t.sim.set_device_fault(&id, Some(DeviceFault::AlwaysNotFound));
    assert_eq!(t.kbs(&id).await.status(), 404);
    assert_eq!(t.kbs(&t.sim.device_ids()[1]).await.status(), 200);
    t.sim.set_device_fault(&id, None);
    assert_eq!(t.kbs(&id).await.status(), 200);
}

#[tokio::test]
async fn tls_is_served_with_the_test_ca() {
    let sim =
        Sim::start(SimConfig { devices: 3, tls: true, ..SimConfig::default() }).await.unwrap();
    assert_eq!(sim.base_url().scheme(), "https");
    let ca = reqwest::Certificate::from_pem(sim.ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca]).build().unwrap();
    let token = fetch_token(&client, &sim, "kbwatch-sim-secret").await.unwrap();
    let r = client
        .get(sim.base_url().join("api/machines").unwrap())
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plain = reqwest::Client::builder().tls_certs_only([]).build().unwrap();
    assert!(plain.get(sim.base_url().join("api/machines").unwrap()).send().await.is_err());
}
