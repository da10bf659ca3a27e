//! [`Sim`]: starting the server and the typed handle tests use to steer and inspect it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use chrono::{DurationRound, TimeDelta, Utc};

use super::faults::FaultState;
use super::fleet::Fleet;
use super::quota::Quotas;
use super::state::Shared;
use super::tokens::random_token;
use super::{
    ChangeSummary, DeviceFault, Evolution, Faults, SimConfig, SimQuota, SimStats, TruthKb, lock,
    read, seeded_rng, write,
};

/// A running simulator. Dropping it (or calling [`Sim::shutdown`]) stops the server at once.
pub struct Sim {
    shared: Arc<Shared>,
    /// The address the server is bound to (`0.0.0.0:PORT` when asked for every interface).
    local_addr: std::net::SocketAddr,
    server: axum_server::Handle,
    ca_pem: Option<String>,
}

impl Sim {
    /// Builds the fleet, binds `cfg.listen` and serves on a spawned task of the current tokio runtime.
    /// A `listen` address that is not loopback is refused unless `cfg.allow_remote`, and a
    /// `max_cve_addressed` below 1.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<Sim> {
        check_listen(&cfg)?;
        if let Some(max) = cfg.max_cve_addressed.filter(|&max| max < 1) {
            anyhow::bail!("max_cve_addressed is {max}: a KB addresses at least 1 CVE");
        }
        let listener = std::net::TcpListener::bind(cfg.listen)
            .with_context(|| format!("binding the simulator to {}", cfg.listen))?;
        listener.set_nonblocking(true).context("making the simulator socket non-blocking")?;
        let local_addr = listener.local_addr().context("reading the simulator address")?;
        let mut addr = local_addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let scheme = if cfg.tls { "https" } else { "http" };
        let base_url =
            url::Url::parse(&format!("{scheme}://{addr}/")).context("building the base URL")?;

        let now = match cfg.now {
            Some(now) => now,
            None => Utc::now().duration_trunc(TimeDelta::hours(1)).context("rounding the clock")?,
        };
        let fleet = Fleet::new(cfg.seed, cfg.devices, now, cfg.max_cve_addressed);
        let shared = Arc::new(Shared {
            client_id: cfg.client_id,
            client_secret: cfg.client_secret,
            token_lifetime: cfg.token_lifetime,
            static_token: cfg.static_token,
            admin_token: random_token("sim-admin"),
            base_url,
            fleet: RwLock::new(Arc::new(fleet)),
            changes: Mutex::default(),
            snapshots: Mutex::default(),
            tokens: Mutex::default(),
            assertions: Mutex::default(),
            quotas: Mutex::new(Quotas::new(cfg.quota, cfg.export_quota)),
            faults: Mutex::new(FaultState::new(cfg.faults, seeded_rng(cfg.seed, 0xFA17, 0))),
            stats: Default::default(),
        });

        let app = super::routes::router(shared.clone()).into_make_service();
        let server = axum_server::Handle::new();
        let ca_pem = if cfg.tls {
            let tls =
                super::tls::generate().context("generating the simulator's test certificates")?;
            let serve = axum_server::from_tcp_rustls(listener, tls.config).handle(server.clone());
            tokio::spawn(async move {
                if let Err(e) = serve.serve(app).await {
                    tracing::error!(error = %e, "Simulator server stopped");
                }
            });
            Some(tls.ca_pem)
        } else {
            let serve = axum_server::from_tcp(listener).handle(server.clone());
            tokio::spawn(async move {
                if let Err(e) = serve.serve(app).await {
                    tracing::error!(error = %e, "Simulator server stopped");
                }
            });
            None
        };
        Ok(Sim { shared, local_addr, server, ca_pem })
    }

    /// The address the server listens on, as bound: the port is the real one when `listen` asked
    /// for port 0, and the IP is unspecified (`0.0.0.0`) when every interface was asked for.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// The bearer token the `/admin` routes require: random, made at start, shown to nobody else.
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// The API base, e.g. `http://127.0.0.1:PORT/` (`https` with TLS).
    pub fn base_url(&self) -> url::Url {
        self.shared.base_url.clone()
    }

    /// The token authority host: the same server (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn authority(&self) -> url::Url {
        self.shared.base_url.clone()
    }

    /// PEM of the test CA when serving TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// Machine id → KBs missing now (sorted by id), for every listed simulated device; non-Windows devices map
    /// to an empty list. Raw pushed entities are not included.
    pub fn truth(&self) -> BTreeMap<String, Vec<TruthKb>> {
        read(&self.shared.fleet).truth()
    }

    /// One deterministic step of the fleet (see [`Evolution`]).
    pub fn evolve(&self, e: Evolution) -> ChangeSummary {
        self.shared.evolve(&e)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats.snapshot()
    }

    /// A function that reads the counters later, for a task that samples them while the handle
    /// is used elsewhere.
    pub fn clone_stats_handle(&self) -> impl Fn() -> SimStats + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.stats.snapshot()
    }

    pub fn set_faults(&self, f: Faults) {
        lock(&self.shared.faults).faults = f;
    }

    /// Replaces the quota; the windows start empty.
    pub fn set_quota(&self, q: Option<SimQuota>) {
        lock(&self.shared.quotas).set(q);
    }

    /// Replaces the quota of the export endpoints; their windows start empty.
    pub fn set_export_quota(&self, q: Option<SimQuota>) {
        lock(&self.shared.quotas).set_export(q);
    }

    /// Every issued token answers 401 from now on (the static token stays valid).
    pub fn expire_tokens(&self) {
        lock(&self.shared.tokens).expire_all();
    }

    /// The federated (service-account) token accepted as a client assertion from now on; `None`
    /// accepts none. Rotating it makes the previous one fail, as Entra does once it expires.
    pub fn set_federated_token(&self, token: Option<String>) {
        lock(&self.shared.assertions).set_federated(token);
    }

    /// Registers a DER certificate whose RSA key may sign client assertions (`client_certificate`).
    pub fn trust_client_certificate(&self, der: &[u8]) -> anyhow::Result<()> {
        lock(&self.shared.assertions).trust_certificate(der).context("parsing the certificate")
    }

    /// The managed-identity endpoint to put in `IDENTITY_ENDPOINT` (with `IDENTITY_HEADER` set to
    /// [`super::IDENTITY_HEADER`]).
    pub fn managed_identity_endpoint(&self) -> url::Url {
        self.shared.base_url.join("msi/token").expect("a relative path joins")
    }

    /// Pins a fault on one device's getmissingkbs (`None` removes it).
    pub fn set_device_fault(&self, machine_id: &str, f: Option<DeviceFault>) {
        let mut faults = lock(&self.shared.faults);
        match f {
            Some(f) => faults.devices.insert(machine_id.to_string(), f),
            None => faults.devices.remove(machine_id),
        };
    }

    /// Appends an arbitrary entity (a hostile id, say) to the listing, after the simulated devices.
    pub fn push_raw_device(&self, machine: serde_json::Value) {
        Arc::make_mut(&mut *write(&self.shared.fleet)).raw.push(machine);
    }

    /// Ids of the listed simulated devices, in listing order.
    pub fn device_ids(&self) -> Vec<String> {
        read(&self.shared.fleet).listed_devices().map(|d| d.id.clone()).collect()
    }

    /// Ids of the listed Windows devices (the ones with KBs to miss).
    pub fn windows_device_ids(&self) -> Vec<String> {
        let fleet = read(&self.shared.fleet);
        fleet.listed_devices().filter(|d| d.os.is_windows()).map(|d| d.id.clone()).collect()
    }

    /// Stops the server now; dropping the handle does the same.
    pub fn shutdown(self) {}
}

/// Refuses a non-loopback `listen` address unless `allow_remote`; warns when it is allowed. The
/// simulator hands tokens to anyone who knows its published client secret.
fn check_listen(cfg: &SimConfig) -> anyhow::Result<()> {
    if cfg.listen.ip().is_loopback() {
        return Ok(());
    }
    if !cfg.allow_remote {
        anyhow::bail!(
            "refusing to serve the simulator on {}: that address is not loopback, and the simulator \
             gives tokens to anyone who knows its published client secret. Listen on 127.0.0.1 (or \
             [::1]), or pass --allow-remote to serve a lab network on purpose",
            cfg.listen
        );
    }
    tracing::warn!(
        listen = %cfg.listen,
        "The simulator is reachable from other machines: its client secret is public, and anyone \
         who can reach it can get a token"
    );
    Ok(())
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.server.shutdown();
    }
}
