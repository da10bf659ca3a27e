//! kbwatch's configuration as typed values: a [`ConfigBuilder`] of the file and a [`Tenant`] per
//! `[[tenant]]`, each setting set by a method. The builder renders the TOML file the binary reads
//! (`--config`) and loads it with kbwatch's own loader, so tests and the binary see one config.
//! The `[tenant.auth]` table is [`TenantAuth`], in `auth.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kbwatch::config::{self, Config};
use toml::{Table, Value};

use super::auth::TenantAuth;

/// A quota far above what the machine can reach: "no quota" (the simulator enforces none unless
/// told to).
const UNREACHABLE: (u32, u32) = (100_000_000, 1_000_000_000);

/// The whole configuration file.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    database_url: String,
    max_connections: Option<u32>,
    cron: Option<String>,
    max_concurrent_scans: Option<u32>,
    listen: Option<SocketAddr>,
    ca_file: Option<PathBuf>,
    tenants: Vec<Tenant>,
}

/// One `[[tenant]]`. Unset settings keep kbwatch's defaults.
#[derive(Debug, Clone)]
pub struct Tenant {
    name: String,
    api_base: Option<url::Url>,
    rescan_after: Duration,
    page_size: Option<u32>,
    auth: Option<TenantAuth>,
    per_minute: Option<u32>,
    per_hour: Option<u32>,
    concurrency: Option<u32>,
    request_timeout: Option<Duration>,
    max_kbs_bytes: Option<u64>,
    max_attempts: Option<u32>,
    retry_base: Option<Duration>,
    export: Option<bool>,
    fill: Option<bool>,
    fill_after: Option<Duration>,
}

impl ConfigBuilder {
    pub fn new(database_url: impl Into<String>) -> Self {
        ConfigBuilder {
            database_url: database_url.into(),
            max_connections: None,
            cron: None,
            max_concurrent_scans: None,
            listen: None,
            ca_file: None,
            tenants: Vec::new(),
        }
    }

    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenants.push(tenant);
        self
    }

    /// Changes the first tenant (the only one in most tests).
    pub fn edit_tenant(mut self, change: impl FnOnce(Tenant) -> Tenant) -> Self {
        let first = self.tenants.remove(0);
        self.tenants.insert(0, change(first));
        self
    }

    /// `count` tenants in all: the first and copies of it named `{first}-2`, `{first}-3`, …, all
    /// on the same simulator (each with its own rows, pacer and lock).
    pub fn copies_of_first_tenant(mut self, count: usize) -> Self {
        let first = self.tenants[0].clone();
        for n in 2..=count {
            let name = format!("{}-{n}", first.name);
            self.tenants.push(Tenant { name, ..first.clone() });
        }
        self
    }

    /// `database.url`: another database (a replica of this one, say).
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database_url = url.into();
        self
    }

    /// `database.max_connections`.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// `schedule.max_concurrent_scans`.
    pub fn max_concurrent_scans(mut self, n: u32) -> Self {
        self.max_concurrent_scans = Some(n);
        self
    }

    /// `schedule.cron`, for `kbwatch run`.
    pub fn cron(mut self, cron: impl Into<String>) -> Self {
        self.cron = Some(cron.into());
        self
    }

    /// `serve.listen` on a free port of 127.0.0.1, so that daemons side by side do not clash.
    pub fn serve_on_free_port(mut self) -> Self {
        self.listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }

    /// `tls.ca_file`: the CA that signed a TLS simulator's certificate.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The TOML text of the file.
    pub fn to_toml(&self) -> String {
        let mut root = Table::new();
        let mut database = Table::from_iter([("url".to_owned(), string(&self.database_url))]);
        insert(&mut database, "max_connections", self.max_connections.map(integer));
        insert_table(&mut root, "database", database);
        let mut schedule = Table::new();
        insert(&mut schedule, "cron", self.cron.as_deref().map(string));
        insert(&mut schedule, "max_concurrent_scans", self.max_concurrent_scans.map(integer));
        insert_table(&mut root, "schedule", schedule);
        if let Some(listen) = self.listen {
            root.insert("serve".into(), table([("listen", string(listen))]));
        }
        if let Some(ca) = &self.ca_file {
            root.insert("tls".into(), table([("ca_file", path(ca))]));
        }
        let tenants = self.tenants.iter().map(|t| Value::Table(t.to_table())).collect();
        root.insert("tenant".into(), Value::Array(tenants));
        toml::to_string(&root).expect("a TOML table renders")
    }

    /// The configuration as `kbwatch` loads it from [`to_toml`](Self::to_toml).
    pub fn load(&self) -> Config {
        let text = self.to_toml();
        config::load_str(&text, std::iter::empty())
            .unwrap_or_else(|e| panic!("the kit's configuration loads: {e}\n{text}"))
    }

    /// Writes the file readable by its owner only: the database URL in it may carry the private
    /// PostgreSQL's password, which kbwatch refuses in a group- or world-readable file.
    pub fn write(&self, path: &Path) {
        config::write_private(path, self.to_toml().as_bytes()).expect("the config file is written");
    }
}

impl Default for Tenant {
    /// The tests' tenant `t1`: every device scanned at each scan, retries after 10 ms.
    fn default() -> Self {
        Tenant::named("t1").retry_base(Duration::from_millis(10))
    }
}

impl Tenant {
    /// A tenant whose devices are all scanned at each scan (`rescan_after` 0 s), kbwatch's
    /// defaults otherwise.
    pub fn named(name: &str) -> Self {
        Tenant {
            name: name.to_owned(),
            api_base: None,
            rescan_after: Duration::ZERO,
            page_size: None,
            auth: None,
            per_minute: None,
            per_hour: None,
            concurrency: None,
            request_timeout: None,
            max_kbs_bytes: None,
            max_attempts: None,
            retry_base: None,
            export: None,
            fill: None,
            fill_after: None,
        }
    }

    pub fn api_base(mut self, url: url::Url) -> Self {
        self.api_base = Some(url);
        self
    }

    pub fn auth(mut self, auth: TenantAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn rescan_after(mut self, after: Duration) -> Self {
        self.rescan_after = after;
        self
    }

    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// `[tenant.quota]` per minute and per hour.
    pub fn quota(mut self, per_minute: u32, per_hour: u32) -> Self {
        (self.per_minute, self.per_hour) = (Some(per_minute), Some(per_hour));
        self
    }

    /// A quota far above what the machine can reach.
    pub fn unpaced(self) -> Self {
        self.quota(UNREACHABLE.0, UNREACHABLE.1)
    }

    /// Requests in flight at once.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    pub fn max_kbs_bytes(mut self, bytes: u64) -> Self {
        self.max_kbs_bytes = Some(bytes);
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    pub fn retry_base(mut self, base: Duration) -> Self {
        self.retry_base = Some(base);
        self
    }

    /// `[tenant.export] enabled`.
    pub fn export(mut self, enabled: bool) -> Self {
        self.export = Some(enabled);
        self
    }

    /// `[tenant.export] fill`.
    pub fn export_fill(mut self, fill: bool) -> Self {
        self.fill = Some(fill);
        self
    }

    /// `[tenant.export] fill_after`.
    pub fn fill_after(mut self, after: Duration) -> Self {
        self.fill_after = Some(after);
        self
    }

    fn to_table(&self) -> Table {
        let mut t = Table::new();
        t.insert("name".into(), string(&self.name));
        let api_base = self.api_base.as_ref().expect("the tenant has an api_base");
        t.insert("api_base".into(), string(api_base));
        t.insert("rescan_after".into(), duration(self.rescan_after));
        insert(&mut t, "page_size", self.page_size.map(integer));
        let mut quota = Table::new();
        insert(&mut quota, "per_minute", self.per_minute.map(integer));
        insert(&mut quota, "per_hour", self.per_hour.map(integer));
        insert(&mut quota, "concurrency", self.concurrency.map(integer));
        insert_table(&mut t, "quota", quota);
        let mut http = Table::new();
        insert(&mut http, "request_timeout", self.request_timeout.map(duration));
        insert(&mut http, "max_kbs_bytes", self.max_kbs_bytes.map(integer));
        insert(&mut http, "max_attempts", self.max_attempts.map(integer));
        insert(&mut http, "retry_base", self.retry_base.map(duration));
        insert_table(&mut t, "http", http);
        let mut export = Table::new();
        insert(&mut export, "enabled", self.export.map(Value::Boolean));
        insert(&mut export, "fill", self.fill.map(Value::Boolean));
        insert(&mut export, "fill_after", self.fill_after.map(duration));
        insert_table(&mut t, "export", export);
        let auth = self.auth.as_ref().expect("the tenant has an auth");
        t.insert("auth".into(), Value::Table(auth.to_table()));
        t
    }
}

pub(super) fn string(value: impl ToString) -> Value {
    Value::String(value.to_string())
}

pub(super) fn path(path: &Path) -> Value {
    Value::String(path.to_str().expect("a UTF-8 path").to_owned())
}

fn integer(value: impl Into<u64>) -> Value {
    Value::Integer(i64::try_from(value.into()).expect("a TOML integer"))
}

/// A humantime string, as the config's durations are written (`"10ms"`, `"1h"`).
fn duration(value: Duration) -> Value {
    Value::String(humantime::format_duration(value).to_string())
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn insert(table: &mut Table, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        table.insert(key.to_owned(), value);
    }
}

fn insert_table(parent: &mut Table, key: &str, child: Table) {
    if !child.is_empty() {
        parent.insert(key.to_owned(), Value::Table(child));
    }
}
