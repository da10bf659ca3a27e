//! [`TestApp`]: a simulator over real HTTP, a fresh migrated database and a configuration of
//! kbwatch pointing at both; the fixture of every integration test and benchmark row.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use kbwatch::config::{Config, ScheduleConfig, TenantConfig};
use kbwatch::defender::{Client, client_for};
use kbwatch::model::RunStatus;
use kbwatch::scan::{Progress, ScanOptions, ScanSummary, scan_tenant};
use kbwatch::schedule::{self, ScheduledTenant};
use kbwatch::sim::{Evolution, Faults, Sim, SimConfig};
use kbwatch::store::Store;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::auth::{Auth, ENTRA_TENANT, EntraApp, STATIC_TOKEN, tenant_auth};
use super::binary::{Daemon, Kbwatch};
use super::config::{ConfigBuilder, Tenant};
use super::db::{drop_database, fresh_database};
use super::reporting::{self, Triple};

/// What a test or a benchmark row runs against; the simulator stops and the files go when it is
/// dropped (the database stays, unless [`TestApp::close`] drops it).
pub struct TestApp {
    pub sim: Sim,
    pub store: Store,
    /// The configuration as kbwatch loaded it; tests may change it (it is theirs).
    pub config: Config,
    /// The typed settings `config` was loaded from, for files the binary reads.
    pub settings: ConfigBuilder,
    pub db_url: String,
    pub dir: tempfile::TempDir,
}

/// A simulated fleet of `devices`, the simulator's defaults otherwise.
pub fn fleet(devices: usize) -> SimConfig {
    SimConfig { devices, ..SimConfig::default() }
}

/// The same, each response delayed by `latency`: slow enough to stop or watch mid-scan.
pub fn slow_fleet(devices: usize, latency: std::time::Duration) -> SimConfig {
    SimConfig { faults: Faults { latency, ..Faults::default() }, ..fleet(devices) }
}

/// Starts the simulator and a fresh database, with `tenant`'s settings.
pub async fn spawn_app(sim: SimConfig, auth: Auth, tenant: Tenant) -> TestApp {
    spawn_app_on(fresh_database().await, sim, auth, tenant).await
}

/// [`spawn_app`] on a database of the caller's (e.g. a PostgreSQL the test stops and starts).
pub async fn spawn_app_on(db_url: String, sim: SimConfig, auth: Auth, tenant: Tenant) -> TestApp {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tls = !matches!(auth, Auth::TokenFile);
    let (client_id, client_secret) = (sim.client_id.clone(), sim.client_secret.clone());
    let sim = Sim::start(SimConfig { tls, static_token: Some(STATIC_TOKEN.into()), ..sim })
        .await
        .expect("the simulator starts");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = ConfigBuilder::new(&db_url);
    if tls {
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, sim.ca_pem().expect("a TLS simulator has a CA")).expect("CA written");
        settings = settings.ca_file(ca);
    }
    let app = EntraApp { tenant_id: ENTRA_TENANT.into(), client_id, authority: sim.authority() };
    let auth = tenant_auth(auth, app, &client_secret, dir.path());
    let settings = settings.tenant(tenant.api_base(sim.base_url()).auth(auth));
    let config = settings.load();
    let store = Store::connect(&SecretString::from(db_url.clone()), 8)
        .await
        .expect("the database connects");
    store.migrate().await.expect("migrations apply");
    TestApp { sim, store, config, settings, db_url, dir }
}

impl TestApp {
    pub fn tenant(&self) -> &TenantConfig {
        &self.config.tenants[0]
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        self.store.pool()
    }

    pub fn client(&self) -> Arc<Client> {
        Arc::new(client_for(self.tenant(), &self.config.tls).expect("the client builds"))
    }

    /// One scan to its end (or until `cancel`) with `options`, as `kbwatch scan` runs it.
    pub async fn scan_with_options(
        &self,
        client: Arc<Client>,
        options: &ScanOptions,
        cancel: &CancellationToken,
    ) -> ScanSummary {
        scan_tenant(
            &self.store,
            self.tenant(),
            client,
            options,
            Arc::new(Progress::default()),
            cancel,
        )
        .await
        .expect("the scan runs")
        .expect("the tenant lock is free")
    }

    /// One scan to completion with `client` (reuse it to keep its token cache and pacer), in
    /// batches of 200 so that small fleets still write several.
    pub async fn scan_with(&self, client: Arc<Client>) -> ScanSummary {
        let options = ScanOptions { batch_size: 200, ..ScanOptions::default() };
        self.scan_with_options(client, &options, &CancellationToken::new()).await
    }

    pub async fn scan(&self) -> ScanSummary {
        self.scan_with(self.client()).await
    }

    /// One run that may request `budget` devices, unpaced: the tenant's quota is `budget` a
    /// minute and an hour, with a fresh client, and the next tick within the hour.
    pub async fn scan_within(&mut self, budget: u32) -> ScanSummary {
        let quota = &mut self.config.tenants[0].quota;
        (quota.per_minute, quota.per_hour) = (budget, budget);
        let deadline = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(1800));
        let options = ScanOptions { deadline, ..ScanOptions::default() };
        self.scan_with_options(self.client(), &options, &CancellationToken::new()).await
    }

    /// `settings` written as `name` in the app's directory, for the binary's `--config`.
    pub fn write_config(&self, name: &str, settings: &ConfigBuilder) -> PathBuf {
        let path = self.dir.path().join(name);
        settings.write(&path);
        path
    }

    /// The app's own settings as `kbwatch.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.write_config("kbwatch.toml", &self.settings)
    }

    /// `reporting.current_missing_kbs` as (machine, KB, cveAddressed).
    pub async fn current_missing(&self) -> BTreeSet<Triple> {
        reporting::current_missing(self.pool()).await
    }

    /// `reporting.missing_kb_snapshots` of one scan, the same way.
    pub async fn snapshot(&self, run_id: i64) -> BTreeSet<Triple> {
        reporting::snapshot(self.pool(), run_id).await
    }

    /// A connection as a new role granted `kbwatch_reader`.
    pub async fn reader(&self) -> sqlx::PgConnection {
        super::db::reader_connection(self.pool(), &self.db_url).await
    }

    /// `kbwatch run` on the app's settings with `cron`, serving on a free port.
    pub fn start_daemon(&self, cron: &str) -> Daemon {
        let settings = self.settings.clone().cron(cron).serve_on_free_port();
        let config = self.write_config("kbwatch-run.toml", &settings);
        Kbwatch::new(["run"]).config(&config).start()
    }

    /// The scheduler of `kbwatch run` in this process, on `cron`.
    pub fn start_scheduler(&self, cron: &str) -> Scheduler {
        let tenants =
            vec![ScheduledTenant { config: self.tenant().clone(), client: self.client() }];
        let schedule = ScheduleConfig {
            cron: cron.into(),
            drain_timeout: std::time::Duration::from_secs(10),
            ..ScheduleConfig::default()
        };
        self.start_scheduler_of(schedule, tenants)
    }

    /// The scheduler of `kbwatch run` in this process, with `schedule`, for `tenants` (which may
    /// be copies of the app's tenant under other names, on the same simulator).
    pub fn start_scheduler_of(
        &self,
        schedule: ScheduleConfig,
        tenants: Vec<ScheduledTenant>,
    ) -> Scheduler {
        let cancel = CancellationToken::new();
        let store = self.store.clone();
        let task = tokio::spawn(schedule::run(
            schedule,
            self.config.retention.clone(),
            tenants,
            store,
            Default::default(),
            cancel.clone(),
        ));
        Scheduler { task, cancel }
    }

    /// Stops the simulator and drops the database (unless `keep`, for a look with psql).
    pub async fn close(self, keep: bool) {
        let TestApp { sim, store, db_url, .. } = self;
        store.pool().close().await;
        drop(sim);
        if keep {
            eprintln!("kit: kept {db_url}");
        } else {
            drop_database(&db_url).await;
        }
    }
}

/// A scheduler started by [`TestApp::start_scheduler`].
pub struct Scheduler {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    cancel: CancellationToken,
}

impl Scheduler {
    /// Cancels it and waits for it to end cleanly.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.expect("the scheduler task ends").expect("the scheduler stops cleanly");
    }
}

/// A database filled by two scans of a 300-device fleet that changed between them (updates
/// installed, a new monthly KB, a device added and one offboarded), for the reporting tests.
pub async fn app_with_two_scans() -> TestApp {
    app_with_two_scans_on(fresh_database().await).await
}

/// [`app_with_two_scans`] on a database of the caller's.
pub async fn app_with_two_scans_on(db_url: String) -> TestApp {
    let sim = SimConfig { seed: 23, ..fleet(300) };
    let tenant = Tenant::default().unpaced().concurrency(16);
    let app = spawn_app_on(db_url, sim, Auth::TokenFile, tenant).await;
    let client = app.client();
    let first = app.scan_with(client.clone()).await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    app.sim.evolve(Evolution {
        install_updates: 0.3,
        new_monthly_kb: true,
        add_devices: 1,
        offboard_devices: 1,
        ..Evolution::default()
    });
    let second = app.scan_with(client).await;
    assert_eq!(second.status, RunStatus::Completed, "{second:?}");
    app
}
