//! `kbwatch sim` as an operator runs it: what its start-up lines say is where it listens and how
//! to reach its admin routes, and an address other machines can reach needs `--allow-remote`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::kit::{Daemon, Kbwatch};

/// `kbwatch sim --devices 3 ARGS…`.
fn sim(args: &[&str]) -> Kbwatch {
    Kbwatch::new(["sim", "--devices", "3"].iter().chain(args))
}

/// The start-up lines, up to and including the admin line.
async fn start_up_lines(sim: &Daemon) -> Vec<String> {
    let printed = || sim.stdout().lines().any(|l| l.starts_with("admin:"));
    sim.wait_for("the start-up lines", Duration::from_secs(60), || async { printed() }).await;
    let mut seen = Vec::new();
    for line in sim.stdout().lines() {
        seen.push(line.to_owned());
        if line.starts_with("admin:") {
            return seen;
        }
    }
    unreachable!("the admin line was printed")
}

/// The word after `marker` in `lines`.
fn word_after<'a>(lines: &'a [String], marker: &str) -> &'a str {
    let line = lines.iter().find(|l| l.contains(marker)).unwrap_or_else(|| panic!("{lines:?}"));
    let rest = &line[line.find(marker).expect("found") + marker.len()..];
    rest.split_whitespace().next().expect("a word follows")
}

#[tokio::test]
async fn the_start_up_lines_name_the_bound_address_and_the_admin_token() {
    let child = sim(&["--listen", "127.0.0.1:0"]).start();
    let lines = start_up_lines(&child).await;
    let addr: std::net::SocketAddr =
        word_after(&lines, "listening on ").parse().expect("an address is printed");
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{lines:?}");
    let token = word_after(&lines, "Authorization: Bearer ");

    let stats = format!("http://{addr}/admin/stats");
    let client = reqwest::Client::new();
    let r =
        client.get(&stats).bearer_auth(token).send().await.expect("the printed address answers");
    assert_eq!(r.status(), 200, "{lines:?}");
    let r = client.get(&stats).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_unless_allowed_and_then_warned_about() {
    let out = sim(&["--listen", "0.0.0.0:0"]).output().await;
    let stderr = &out.stderr;
    assert!(!out.success(), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0") && stderr.contains("--allow-remote"), "{stderr}");

    let child = sim(&["--listen", "0.0.0.0:0", "--allow-remote"]).start();
    let lines = start_up_lines(&child).await;
    let addr: std::net::SocketAddr = word_after(&lines, "listening on ").parse().unwrap();
    assert!(addr.ip().is_unspecified() && addr.port() != 0, "{lines:?}");
    child.kill().await;
    let stderr = child.stderr();
    assert!(stderr.contains("reachable from other machines"), "{stderr}");
}

/// The (device, KB) pairs of export rows that carry a KB and have `status` (any when `None`).
fn kb_pairs(rows: &serde_json::Value, status: Option<&str>) -> BTreeSet<(String, String)> {
    let rows = rows["value"].as_array().expect("value");
    let wanted = |r: &&serde_json::Value| status.is_none_or(|s| r["status"] == s);
    rows.iter()
        .filter(wanted)
        .filter_map(|r| {
            Some((
                r["deviceId"].as_str()?.into(),
                r["recommendedSecurityUpdateId"].as_str()?.into(),
            ))
        })
        .collect()
}

fn truth_pairs(truth: &serde_json::Value) -> BTreeSet<(String, String)> {
    let devices = truth.as_object().expect("truth is an object");
    let kbs = |(d, kbs): (&String, &serde_json::Value)| {
        kbs.as_array()
            .unwrap()
            .iter()
            .map(|k| (d.clone(), k["id"].as_str().unwrap().into()))
            .collect::<Vec<_>>()
    };
    devices.iter().flat_map(kbs).collect()
}

#[tokio::test]
async fn kbwatch_sim_serves_the_vulnerability_exports_consistent_with_its_truth() {
    let child = Kbwatch::new(["sim", "--devices", "30", "--listen", "127.0.0.1:0"]).start();
    let lines = start_up_lines(&child).await;
    let addr: std::net::SocketAddr = word_after(&lines, "listening on ").parse().unwrap();
    let admin = word_after(&lines, "Authorization: Bearer ").to_owned();
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "kbwatch-sim-client"),
        ("client_secret", "kbwatch-sim-secret"),
    ];
    let token: serde_json::Value = client
        .post(format!("{base}contoso/oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().expect("a token").to_owned();
    let get = |path: String| client.get(format!("{base}{path}")).bearer_auth(&token).send();
    let admin_get = |path: &str| client.get(format!("{base}{path}")).bearer_auth(&admin).send();

    let truth: serde_json::Value = admin_get("admin/truth").await.unwrap().json().await.unwrap();
    let full = get("api/machines/SoftwareVulnerabilitiesByMachine".into()).await.unwrap();
    assert_eq!(full.status(), 200);
    let full: serde_json::Value = full.json().await.unwrap();
    assert!(full.get("@odata.nextLink").is_none(), "30 devices fit one page");
    assert_eq!(kb_pairs(&full, None), truth_pairs(&truth));

    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let evolve = client.post(format!("{base}admin/evolve")).bearer_auth(&admin);
    let r = evolve.json(&serde_json::json!({"install_updates": 0.5})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let after: serde_json::Value = admin_get("admin/truth").await.unwrap().json().await.unwrap();
    let path = format!("api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime={before}");
    let delta: serde_json::Value = get(path).await.unwrap().json().await.unwrap();
    let fixed: BTreeSet<_> =
        truth_pairs(&truth).difference(&truth_pairs(&after)).cloned().collect();
    assert!(!fixed.is_empty());
    assert_eq!(kb_pairs(&delta, Some("Fixed")), fixed);
    assert!(kb_pairs(&delta, Some("New")).is_empty());
    child.kill().await;
}
