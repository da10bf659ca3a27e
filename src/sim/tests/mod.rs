//! Tests of the simulator over real HTTP: a [`Sim`] started in-process, driven with reqwest.

mod api;
mod auth_quota;
mod evolve_faults;
mod export;
mod export_delta;

use serde_json::Value;

use super::{Sim, SimConfig};

/// A started simulator with a token already fetched.
struct TestSim {
    sim: Sim,
    client: reqwest::Client,
    token: String,
}

impl TestSim {
    async fn start(cfg: SimConfig) -> TestSim {
        let sim = Sim::start(cfg).await.expect("simulator starts");
        let client = reqwest::Client::new();
        let token = fetch_token(&client, &sim, "kbwatch-sim-secret").await.expect("token");
        TestSim { sim, client, token }
    }

    async fn with_devices(devices: usize) -> TestSim {
        TestSim::start(SimConfig { devices, ..SimConfig::default() }).await
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> url::Url {
        let mut url = self.sim.base_url().join(path).expect("valid path");
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> reqwest::Response {
        self.get_url(self.url(path, query)).await
    }

    async fn get_url(&self, url: url::Url) -> reqwest::Response {
        self.client.get(url).bearer_auth(&self.token).send().await.expect("request sent")
    }

    /// GET that must answer 200; returns the JSON body.
    async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self.get(path, query).await;
        assert_eq!(r.status(), 200, "{path} {query:?}");
        r.json().await.expect("JSON body")
    }

    /// The rows of an export `page` and of every page its `@odata.nextLink`s lead to (each must
    /// answer 200), and how many pages that was.
    async fn follow(&self, mut page: Value) -> (Vec<Value>, usize) {
        let (mut rows, mut pages) = (Vec::new(), 1);
        loop {
            rows.extend(page["value"].as_array().expect("value").iter().cloned());
            let Some(next) = page["@odata.nextLink"].as_str() else { return (rows, pages) };
            let r = self.get_url(next.parse().expect("next link is a URL")).await;
            assert_eq!(r.status(), 200, "{next}");
            page = r.json().await.expect("JSON body");
            pages += 1;
        }
    }

    async fn kbs(&self, id: &str) -> reqwest::Response {
        let mut url = self.sim.base_url();
        url.path_segments_mut().expect("base").extend(["api", "machines", id, "getmissingkbs"]);
        self.get_url(url).await
    }
}

/// Posts the client-credentials form; the access token when the answer is 200, else the status.
async fn fetch_token(client: &reqwest::Client, sim: &Sim, secret: &str) -> Result<String, u16> {
    let url = sim.authority().join("contoso/oauth2/v2.0/token").expect("token URL");
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "kbwatch-sim-client"),
        ("client_secret", secret),
        ("scope", "https://api.securitycenter.microsoft.com/.default"),
    ];
    let r = client.post(url).form(&form).send().await.expect("token request sent");
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("token body is JSON");
    if status != 200 {
        assert_eq!(body["error"], "invalid_client");
        return Err(status);
    }
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_u64());
    Ok(body["access_token"].as_str().expect("access_token").to_string())
}

fn ids(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .expect("value array")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}
