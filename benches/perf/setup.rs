//! What every row needs: the private PostgreSQL with a fresh database, a simulator over real HTTP,
//! and a kbwatch configuration pointing at both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kbwatch::config::{self, Config, TenantConfig};
use kbwatch::defender::{Client, client_for};
use kbwatch::embedded_pg::EmbeddedPg;
use kbwatch::scan::{Progress, ScanOptions, ScanSummary, scan_tenant};
use kbwatch::sim::{Sim, SimConfig, SimQuota};
use kbwatch::store::Store;
use secrecy::SecretString;
use sqlx::Connection as _;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// The bearer token every simulator of the benchmark accepts.
pub const TOKEN: &str = "kbwatch-bench-static-token";

/// A simulator, a fresh database and a one-tenant configuration of kbwatch using both.
pub struct Bench {
    pub sim: Sim,
    pub store: Store,
    pub config: Config,
    /// The configuration's text, for a `kbwatch` process of its own.
    pub config_toml: String,
    pub db_url: String,
    pub dir: tempfile::TempDir,
}

/// The tenant's quota as kbwatch is configured; `None` is "no quota" (limits far above what the
/// machine can reach).
pub struct Setup {
    pub devices: usize,
    pub server_quota: Option<SimQuota>,
    pub client_quota: Option<SimQuota>,
    pub concurrency: u32,
}

impl Bench {
    pub async fn start(setup: Setup) -> Bench {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let sim = Sim::start(SimConfig {
            devices: setup.devices,
            quota: setup.server_quota,
            static_token: Some(TOKEN.into()),
            ..SimConfig::default()
        })
        .await
        .expect("the simulator starts");
        let db_url = fresh_database().await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config_toml = tenant_config(&sim, &db_url, dir.path(), &setup);
        let config = config::load_str(&config_toml, std::iter::empty())
            .unwrap_or_else(|e| panic!("the bench configuration loads: {e}\n{config_toml}"));
        let store = Store::connect(&SecretString::from(db_url.clone()), 8)
            .await
            .expect("the bench database connects");
        store.migrate().await.expect("migrations apply");
        Bench { sim, store, config, config_toml, db_url, dir }
    }

    pub fn tenant(&self) -> &TenantConfig {
        &self.config.tenants[0]
    }

    pub fn client(&self) -> Arc<Client> {
        Arc::new(client_for(self.tenant(), &self.config.tls).expect("the client builds"))
    }

    /// One scan to its end (or until `cancel`), as `kbwatch scan` runs it.
    pub async fn scan(&self, client: Arc<Client>, cancel: &CancellationToken) -> ScanSummary {
        scan_tenant(
            &self.store,
            self.tenant(),
            client,
            &ScanOptions::default(),
            Arc::new(Progress::default()),
            cancel,
        )
        .await
        .expect("the scan runs")
        .expect("the tenant lock is free")
    }

    /// The configuration as a file, readable by its owner only: it holds the database password,
    /// and kbwatch refuses a secret in a file others can read.
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("kbwatch.toml");
        kbwatch::config::write_private(&path, self.config_toml.as_bytes())
            .expect("the config file is written");
        path
    }
}

fn tenant_config(sim: &Sim, db_url: &str, dir: &Path, setup: &Setup) -> String {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).expect("the token file is written");
    let quota =
        setup.client_quota.unwrap_or(SimQuota { per_minute: 100_000_000, per_hour: 1_000_000_000 });
    format!(
        "[database]\nurl = \"{db_url}\"\n\n[[tenant]]\nname = \"bench\"\napi_base = \"{}\"\n\
         rescan_after = \"0s\"\n\n[tenant.quota]\nper_minute = {}\nper_hour = {}\nconcurrency = {}\n\n\
         [tenant.auth]\nkind = \"token_file\"\ntoken_file = {token:?}\n",
        sim.base_url(),
        quota.per_minute,
        quota.per_hour,
        setup.concurrency,
    )
}

/// A new, empty database: in `DATABASE_URL`'s server when set, else in the private PostgreSQL the
/// benchmark keeps under the target directory (started once, left running for the next run).
pub async fn fresh_database() -> String {
    let name = format!("kbwatch_bench_{}", uuid::Uuid::new_v4().simple());
    match std::env::var("DATABASE_URL") {
        Ok(admin) => {
            let mut conn =
                sqlx::PgConnection::connect(&admin).await.expect("DATABASE_URL connects");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("the bench database is created");
            let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
            url.set_path(&name);
            url.to_string()
        }
        Err(_) => {
            let pg = cluster().await;
            pg.ensure_database(&name).await.expect("the bench database is created");
            pg.url(&name)
        }
    }
}

async fn cluster() -> &'static EmbeddedPg {
    static CLUSTER: OnceCell<EmbeddedPg> = OnceCell::const_new();
    CLUSTER
        .get_or_init(|| async {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kbwatch-bench-pg");
            EmbeddedPg::start_scratch(&dir).await.expect("the private PostgreSQL starts")
        })
        .await
}

/// Drops a bench database so that repeated runs do not fill the disk; with `KBWATCH_BENCH_KEEP`
/// set it is kept (and named) for a look with psql.
pub async fn drop_database(bench: Bench) {
    let Bench { sim, store, db_url, .. } = bench;
    store.pool().close().await;
    drop(sim);
    if std::env::var_os("KBWATCH_BENCH_KEEP").is_some() {
        eprintln!("bench: kept {db_url}");
        return;
    }
    let mut admin = url::Url::parse(&db_url).expect("the bench URL parses");
    let name = admin.path().trim_start_matches('/').to_owned();
    admin.set_path("postgres");
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin.as_str()).await {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
    }
}
