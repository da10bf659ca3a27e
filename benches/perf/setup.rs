//! What every row needs, from the test kit (`tests/kit/`): a [`TestApp`] (the private PostgreSQL
//! with a fresh database, a simulator over real HTTP, a one-tenant configuration pointing at both)
//! shaped by a [`Setup`], and its end.

use kbwatch::sim::{SimConfig, SimQuota};

use crate::kit::{Auth, Tenant, TestApp, fleet, spawn_app};

/// A row's fleet and quotas; `None` is "no quota" (limits far above what the machine can reach).
pub struct Setup {
    pub devices: usize,
    pub server_quota: Option<SimQuota>,
    pub client_quota: Option<SimQuota>,
    pub concurrency: u32,
}

/// Starts what `setup` describes. The tenant keeps kbwatch's defaults but for the quota and
/// `rescan_after` (0 s: every device at every scan).
pub async fn start(setup: Setup) -> TestApp {
    let sim = SimConfig { quota: setup.server_quota, ..fleet(setup.devices) };
    let tenant = Tenant::named("bench").concurrency(setup.concurrency);
    let tenant = match setup.client_quota {
        Some(quota) => tenant.quota(quota.per_minute, quota.per_hour),
        None => tenant.unpaced(),
    };
    spawn_app(sim, Auth::TokenFile, tenant).await
}

/// Drops a row's database so that repeated runs do not fill the disk; with `KBWATCH_BENCH_KEEP`
/// set it is kept (and named) for a look with psql.
pub async fn finish(bench: TestApp) {
    bench.close(std::env::var_os("KBWATCH_BENCH_KEEP").is_some()).await;
}
