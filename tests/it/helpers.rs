//! `TestApp`: a fresh database, a simulator and a tenant configuration pointing at it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use kbwatch::config::{self, Config};
use kbwatch::defender::{Client, client_for};
use kbwatch::embedded_pg::EmbeddedPg;
use kbwatch::scan::{Progress, ScanOptions, ScanSummary, scan_tenant};
use kbwatch::sim::{Sim, SimConfig};
use kbwatch::store::Store;
use secrecy::SecretString;
use sqlx::Connection as _;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The bearer token the simulator always accepts in tests that use `token_file`.
pub const STATIC_TOKEN: &str = "kbwatch-test-static-token";

pub struct TestApp {
    pub sim: Sim,
    pub store: Store,
    pub config: Config,
    /// The configuration file's text (the tests that run the binary write it out).
    pub config_toml: String,
    pub dir: tempfile::TempDir,
}

/// How the tenant authenticates.
pub enum Auth {
    /// A token file holding [`STATIC_TOKEN`].
    TokenFile,
    /// `client_secret` through azure_identity, against the simulator's TLS token endpoint.
    ClientSecret,
    /// The simulator with TLS and this `[tenant.auth]` body, in which `{authority}` and
    /// `{client_id}` are replaced by the simulator's.
    Tls(String),
}

/// Starts the simulator and a fresh database; `tenant_toml` is appended to the tenant table
/// (e.g. `[tenant.quota]` lines).
pub async fn spawn_app(sim: SimConfig, auth: Auth, tenant_toml: &str) -> TestApp {
    spawn_app_on(fresh_database().await, sim, auth, tenant_toml).await
}

/// [`spawn_app`] on a database of the caller's (e.g. a PostgreSQL the test stops and starts).
pub async fn spawn_app_on(
    db_url: String,
    sim: SimConfig,
    auth: Auth,
    tenant_toml: &str,
) -> TestApp {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tls = matches!(auth, Auth::ClientSecret | Auth::Tls(_));
    let credentials = (sim.client_id.clone(), sim.client_secret.clone());
    let sim = Sim::start(SimConfig { tls, static_token: Some(STATIC_TOKEN.into()), ..sim })
        .await
        .expect("simulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let config_toml = tenant_config(&sim, &auth, &credentials, &db_url, dir.path(), tenant_toml);
    let config = config::load_str(&config_toml, std::iter::empty())
        .unwrap_or_else(|e| panic!("test config loads: {e}\n{config_toml}"));
    let store =
        Store::connect(&SecretString::from(db_url.clone()), 8).await.expect("database connects");
    store.migrate().await.expect("migrations apply");
    TestApp { sim, store, config, config_toml, dir }
}

fn tenant_config(
    sim: &Sim,
    auth: &Auth,
    (client_id, client_secret): &(String, String),
    db_url: &str,
    dir: &std::path::Path,
    extra: &str,
) -> String {
    let auth_toml = match auth {
        Auth::TokenFile => {
            let token = dir.join("token");
            std::fs::write(&token, STATIC_TOKEN).unwrap();
            format!("kind = \"token_file\"\ntoken_file = {token:?}\n")
        }
        Auth::ClientSecret => {
            let ca = dir.join("ca.pem");
            std::fs::write(&ca, sim.ca_pem().expect("TLS simulator has a CA")).unwrap();
            let secret = dir.join("secret");
            std::fs::write(&secret, client_secret).unwrap();
            format!(
                "kind = \"client_secret\"\ntenant_id = \"00000000-0000-0000-0000-000000000001\"\n\
                 client_id = \"{}\"\nclient_secret_file = {secret:?}\nauthority = \"{}\"\n\
                 [tls]\nca_file = {ca:?}\n",
                client_id,
                sim.authority()
            )
        }
        Auth::Tls(body) => {
            let ca = dir.join("ca.pem");
            std::fs::write(&ca, sim.ca_pem().expect("TLS simulator has a CA")).unwrap();
            let body = body
                .replace("{authority}", sim.authority().as_str())
                .replace("{client_id}", client_id);
            format!("{body}\n[tls]\nca_file = {ca:?}\n")
        }
    };
    // [tls] must not land inside [tenant.auth]: put the auth table last and move [tls] to the top.
    let (auth_only, tls) = match auth_toml.split_once("[tls]\n") {
        Some((a, t)) => (a.to_owned(), format!("[tls]\n{t}")),
        None => (auth_toml, String::new()),
    };
    format!(
        "[database]\nurl = \"{db_url}\"\n{tls}\n[[tenant]]\nname = \"t1\"\napi_base = \"{}\"\n\
         rescan_after = \"0s\"\n\n[tenant.http]\nretry_base = \"10ms\"\n\n{extra}\n\n[tenant.auth]\n{auth_only}",
        sim.base_url()
    )
}

/// A migrated, empty database holding one tenant named `tenant`, for fixtures of the store.
pub async fn fixture_store(tenant: &str) -> (Store, i32) {
    let store = Store::connect(&SecretString::from(fresh_database().await), 4).await.unwrap();
    store.migrate().await.unwrap();
    let tenant = store.ensure_tenant(tenant).await.unwrap();
    (store, tenant)
}

/// A new, empty database: in `DATABASE_URL`'s server when set, else in the private PostgreSQL
/// that the test run shares (started once, left running for the next run).
pub async fn fresh_database() -> String {
    let name = format!("kbwatch_test_{}", uuid::Uuid::new_v4().simple());
    match std::env::var("DATABASE_URL") {
        Ok(admin) => {
            let mut conn =
                sqlx::PgConnection::connect(&admin).await.expect("DATABASE_URL connects");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("test database is created");
            let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
            url.set_path(&name);
            url.to_string()
        }
        Err(_) => {
            let pg = cluster().await;
            pg.ensure_database(&name).await.expect("test database is created");
            pg.url(&name)
        }
    }
}

async fn cluster() -> &'static EmbeddedPg {
    static CLUSTER: OnceCell<EmbeddedPg> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kbwatch-test-pg");
            EmbeddedPg::start_scratch(&dir).await.expect("the private PostgreSQL starts")
        })
        .await
}

impl TestApp {
    pub fn tenant(&self) -> &kbwatch::config::TenantConfig {
        &self.config.tenants[0]
    }

    pub fn client(&self) -> Arc<Client> {
        Arc::new(client_for(self.tenant(), &self.config.tls).expect("client builds"))
    }

    /// One scan to completion with `client` (reuse it to keep its token cache and pacer).
    pub async fn scan_with(&self, client: Arc<Client>) -> ScanSummary {
        let options = ScanOptions { batch_size: 200, ..ScanOptions::default() };
        scan_tenant(
            &self.store,
            self.tenant(),
            client,
            &options,
            Arc::new(Progress::default()),
            &CancellationToken::new(),
        )
        .await
        .expect("scan runs")
        .expect("tenant lock is free")
    }

    pub async fn scan(&self) -> ScanSummary {
        self.scan_with(self.client()).await
    }

    /// (machine id, KB id, cveAddressed) of `reporting.current_missing_kbs`.
    pub async fn current_missing(&self) -> BTreeSet<(String, String, i64)> {
        let rows: Vec<(String, String, Option<i32>)> = sqlx::query_as(
            "SELECT machine_id, kb_id, cve_addressed FROM reporting.current_missing_kbs",
        )
        .fetch_all(self.store.pool())
        .await
        .unwrap();
        rows.into_iter().map(|(m, k, c)| (m, k, i64::from(c.unwrap_or(0)))).collect()
    }

    /// The same triples for one scan, from `reporting.missing_kb_snapshots`.
    pub async fn snapshot(&self, run_id: i64) -> BTreeSet<(String, String, i64)> {
        let rows: Vec<(String, String, Option<i32>)> = sqlx::query_as(
            "SELECT machine_id, kb_id, cve_addressed FROM reporting.missing_kb_snapshots WHERE scan_run_id = $1",
        )
        .bind(run_id)
        .fetch_all(self.store.pool())
        .await
        .unwrap();
        rows.into_iter().map(|(m, k, c)| (m, k, i64::from(c.unwrap_or(0)))).collect()
    }
}

/// (outcome, error) of the one stored scan of device `machine_id`.
pub async fn device_outcome(app: &TestApp, machine_id: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT s.outcome, s.error FROM kbwatch.device_scan s JOIN kbwatch.device d USING (device_id)
         WHERE d.machine_id = $1",
    )
    .bind(machine_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap()
}

pub fn triples(
    truth: &BTreeMap<String, Vec<kbwatch::sim::TruthKb>>,
) -> BTreeSet<(String, String, i64)> {
    truth
        .iter()
        .flat_map(|(m, kbs)| kbs.iter().map(move |k| (m.clone(), k.id.clone(), k.cve_addressed)))
        .collect()
}

/// A database filled by two scans of a 300-device fleet that changed between them (updates
/// installed, a new monthly KB, a device added and one offboarded), for the reporting tests.
pub async fn app_with_two_scans() -> TestApp {
    let quota = "[tenant.quota]\nper_minute = 1000000\nper_hour = 10000000\nconcurrency = 16\n";
    let app = spawn_app(
        SimConfig { devices: 300, seed: 23, ..SimConfig::default() },
        Auth::TokenFile,
        quota,
    )
    .await;
    let client = app.client();
    let first = app.scan_with(client.clone()).await;
    assert_eq!(first.status, kbwatch::model::RunStatus::Completed, "{first:?}");
    app.sim.evolve(kbwatch::sim::Evolution {
        install_updates: 0.3,
        new_monthly_kb: true,
        add_devices: 1,
        offboard_devices: 1,
        ..kbwatch::sim::Evolution::default()
    });
    let second = app.scan_with(client).await;
    assert_eq!(second.status, kbwatch::model::RunStatus::Completed, "{second:?}");
    app
}

/// Writes a config file readable by its owner only: the database URL in it may carry the private
/// PostgreSQL's password, which kbwatch refuses in a group- or world-readable file.
pub fn write_private(path: &std::path::Path, text: &str) {
    kbwatch::config::write_private(path, text.as_bytes()).expect("config file is written");
}
