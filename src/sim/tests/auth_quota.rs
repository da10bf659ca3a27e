//! Token flow, 401s and the per-endpoint quota with its 429s.

use std::time::Duration;

use serde_json::Value;

use super::{TestSim, fetch_token};
use crate::sim::{SimConfig, SimQuota};

#[tokio::test]
async fn tokens_are_issued_checked_and_expired() {
    let cfg = SimConfig {
        devices: 5,
        static_token: Some("static-test-token".into()),
        ..SimConfig::default()
    };
    let t = TestSim::start(cfg).await;
    assert_eq!(fetch_token(&t.client, &t.sim, "wrong").await, Err(401));
    assert_eq!(t.get("api/machines", &[]).await.status(), 200);

    let url = t.url("api/machines", &[]);
    let none = t.client.get(url.clone()).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Unauthorized");
    let bogus = t.client.get(url.clone()).bearer_auth("sim.bogus").send().await.unwrap();
    assert_eq!(bogus.status(), 401);

    t.sim.expire_tokens();
    assert_eq!(t.get("api/machines", &[]).await.status(), 401);
    let fixed = t.client.get(url.clone()).bearer_auth("static-test-token").send().await.unwrap();
    assert_eq!(fixed.status(), 200);
    let fresh = fetch_token(&t.client, &t.sim, "kbwatch-sim-secret").await.unwrap();
    assert_eq!(t.client.get(url).bearer_auth(fresh).send().await.unwrap().status(), 200);

    let stats = t.sim.stats();
    assert_eq!(stats.unauthorized, 3);
    assert_eq!(stats.token_requests, 3);
    assert_eq!(stats.machines_requests, 6);
}

#[tokio::test]
async fn tokens_expire_after_their_lifetime() {
    let cfg = SimConfig {
        devices: 5,
        token_lifetime: Duration::from_millis(300),
        ..SimConfig::default()
    };
    let t = TestSim::start(cfg).await;
    assert_eq!(t.get("api/machines", &[]).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(t.get("api/machines", &[]).await.status(), 401);
}

#[tokio::test]
async fn minute_quota_answers_429_and_counts_violations() {
    let quota = SimQuota { per_minute: 3, per_hour: 100 };
    let t =
        TestSim::start(SimConfig { devices: 5, quota: Some(quota), ..SimConfig::default() }).await;
    for _ in 0..3 {
        assert_eq!(t.get("api/machines", &[]).await.status(), 200);
    }
    let r = t.get("api/machines", &[]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "429");
    assert_eq!(body["error"]["target"], "contoso");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("API calls quota exceeded! Maximum allowed 3 per 00:01:00"), "{msg}");
    assert!(msg.ends_with(&format!("You can send requests again in {retry} seconds.")), "{msg}");
    assert_eq!(t.sim.stats().retry_after_violations, 0);

    // Too early again (past the in-flight grace): a violation, still 429. The other endpoint has
    // its own quota.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(t.get("api/machines", &[]).await.status(), 429);
    let id = t.sim.device_ids()[0].clone();
    assert_eq!(t.kbs(&id).await.status(), 200);
    let stats = t.sim.stats();
    assert_eq!((stats.throttled, stats.retry_after_violations), (2, 1));

    // set_quota starts fresh windows.
    t.sim.set_quota(None);
    assert_eq!(t.get("api/machines", &[]).await.status(), 200);
}

#[tokio::test]
async fn hour_quota_names_the_hour_window() {
    let quota = SimQuota { per_minute: 100, per_hour: 2 };
    let t =
        TestSim::start(SimConfig { devices: 5, quota: Some(quota), ..SimConfig::default() }).await;
    let id = t.sim.device_ids()[0].clone();
    assert_eq!(t.kbs(&id).await.status(), 200);
    assert_eq!(t.kbs(&id).await.status(), 200);
    let r = t.kbs(&id).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("Maximum allowed 2 per 01:00:00"));
    // Tokens are never limited.
    assert!(fetch_token(&t.client, &t.sim, "kbwatch-sim-secret").await.is_ok());
}
