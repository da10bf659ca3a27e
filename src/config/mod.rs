//! Configuration: typed sections of the TOML file, loaded by [`load`] with env overrides.
//!
//! Every field documents its default. Durations are humantime strings (`"20h"`); secrets are
//! [`SecretString`] and are exposed only where a request is built.

mod load;
mod presets;
mod private_file;
mod problem;
mod tenant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

pub use load::{
    ConfigError, Purpose, load, load_for, load_str, load_str_for, load_with_env, parse_cron,
};
pub use presets::Cloud;
pub use private_file::write_private;
pub use problem::Problem;
pub use tenant::{AuthConfig, AuthKind, ExportConfig, HttpConfig, QuotaConfig, TenantConfig};

/// The whole configuration file. Every section but `[[tenant]]` may be left out. The keys of
/// `[tenant_defaults]` are inherited by the tenants as the file is loaded (`defaults.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Where results are stored. Default: the private PostgreSQL under the state directory.
    pub database: DatabaseConfig,
    /// When scans run. Default: every hour on the hour (UTC).
    pub schedule: ScheduleConfig,
    /// The metrics and health listener. Default: `127.0.0.1:9464`.
    pub serve: ServeConfig,
    /// Logging. Default: text on a terminal, JSON lines otherwise.
    pub log: LogConfig,
    /// Extra trust for TLS (a private CA, for tests and proxies). Default: the OS store only.
    pub tls: TlsConfig,
    /// How long history is kept. Default: all of it.
    pub retention: RetentionConfig,
    /// The tenants to scan; at least one.
    #[serde(rename = "tenant")]
    pub tenants: Vec<TenantConfig>,
}

impl Config {
    /// Every secret that is set, with its key path: the one list of the [`SecretString`] keys, so a
    /// new one is added here too. The loader refuses one written in a config file that group or
    /// others can read; no message ever shows a value (of any key that takes a string).
    fn secrets(&self) -> Vec<(String, &SecretString)> {
        let mut out: Vec<_> =
            self.database.url.iter().map(|url| ("database.url".to_owned(), url)).collect();
        for (i, tenant) in self.tenants.iter().enumerate() {
            out.extend(tenant.secrets().map(|(key, s)| (format!("tenant[{i}].{key}"), s)));
        }
        out
    }
}

/// `[database]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// PostgreSQL URL. Default: none, which starts the private PostgreSQL (DESIGN §7).
    pub url: Option<SecretString>,
    /// Maximum pool connections. Default: 8.
    pub max_connections: u32,
    /// Directory of the private PostgreSQL and other state. Default: `$STATE_DIRECTORY`, else
    /// `$XDG_STATE_HOME/kbwatch`, else `./.kbwatch`.
    pub state_dir: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: None, max_connections: 8, state_dir: None }
    }
}

/// `[schedule]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ScheduleConfig {
    /// Cron expression with 6 fields, seconds first, in UTC. Default: `"0 0 * * * *"`.
    pub cron: String,
    /// How long a shutdown waits for in-flight requests and the final flush. Default: `"25s"`.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Tenants scanned at once, by the daemon at a tick and by `kbwatch scan`; the others wait
    /// their turn. Default: 32.
    pub max_concurrent_scans: u32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            cron: "0 0 * * * *".into(),
            drain_timeout: Duration::from_secs(25),
            max_concurrent_scans: 32,
        }
    }
}

/// `[serve]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServeConfig {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`. Default: `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 9464)) }
    }
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `"text"`, `"json"`, or unset for text on a terminal and JSON otherwise.
    pub format: Option<LogFormat>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[tls]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM file of extra CA certificates trusted for the API and the authority. Default: none.
    pub ca_file: Option<PathBuf>,
}

/// `[retention]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Days of history kept: once a day, what is older than UTC midnight `keep_days` days ago is
    /// dropped (`store::retention`), and every `reporting` view stays exact for the days kept.
    /// 1 to 36500. Default: unset, which keeps all history.
    pub keep_days: Option<u32>,
}
