//! One `[[tenant]]`: its API, credentials, quotas and HTTP limits.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::presets::Cloud;

/// One `[[tenant]]`.
#[derive(Debug, Clone, Deserialize)]
pub struct TenantConfig {
    /// Unique name, used in the database, metrics and logs.
    pub name: String,
    /// `public`, `usgov-gcc`, `usgov-high` or `usgov-dod`: presets `api_base`, `auth.authority` and
    /// `auth.scope` (each still overridable). Default: `public`.
    #[serde(default)]
    pub cloud: Cloud,
    /// API base URL. Default: the cloud's (`https://api.security.microsoft.com` for `public`),
    /// filled in by `presets.rs` before deserialization.
    #[serde(default = "default_api_base")]
    pub api_base: url::Url,
    /// Optional OData `$filter` for the device list. Default: none (every device).
    pub device_filter: Option<String>,
    /// Devices scanned more recently than this are skipped. Default: `"20h"`.
    #[serde(default = "TenantConfig::default_rescan_after", with = "humantime_serde")]
    pub rescan_after: Duration,
    /// Rows per device-list page (`$top`), at most 10,000. Default: 10,000.
    #[serde(default = "TenantConfig::default_page_size")]
    pub page_size: u32,
    /// Credentials.
    pub auth: AuthConfig,
    /// Quotas, applied to each endpoint separately.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// HTTP limits.
    #[serde(default)]
    pub http: HttpConfig,
    /// The vulnerability export (opt-in).
    #[serde(default)]
    pub export: ExportConfig,
}

/// `[tenant.auth]`
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// `client_secret`, `client_certificate`, `workload_identity`, `managed_identity`, `azure_cli`
    /// or `token_file`.
    pub kind: AuthKind,
    /// Entra ID tenant (directory) id. Required for `client_secret` and `client_certificate`;
    /// `workload_identity` defaults to `$AZURE_TENANT_ID`; optional for `azure_cli`.
    pub tenant_id: Option<String>,
    /// Application (client) id. Required for `client_secret` and `client_certificate`;
    /// `workload_identity` defaults to `$AZURE_CLIENT_ID`; for `managed_identity`, the client id of
    /// a user-assigned identity (unset: the system-assigned identity).
    pub client_id: Option<String>,
    /// Inline client secret; refused when the config file is readable by group or others.
    pub client_secret: Option<SecretString>,
    /// File holding the client secret (preferred over `client_secret`).
    pub client_secret_file: Option<PathBuf>,
    /// PKCS#12 (`.pfx`) file with the certificate and its RSA key; required for `client_certificate`.
    pub certificate_file: Option<PathBuf>,
    /// File holding the PKCS#12 password. Default: no password.
    pub certificate_password_file: Option<PathBuf>,
    /// The projected service-account token of `workload_identity`, re-read when it rotates.
    /// Default: `$AZURE_FEDERATED_TOKEN_FILE` (set by the workload identity webhook).
    pub federated_token_file: Option<PathBuf>,
    /// File holding a bearer token, re-read on every refresh; required for `token_file`.
    pub token_file: Option<PathBuf>,
    /// Authority host. Default: the cloud's (`https://login.microsoftonline.com` for `public`),
    /// filled in by `presets.rs` before deserialization.
    #[serde(default = "default_authority")]
    pub authority: url::Url,
    /// Token scope. Default: the cloud's (`https://api.securitycenter.microsoft.com/.default` for
    /// `public`, whatever host is called), filled in by `presets.rs` before deserialization.
    #[serde(default = "default_scope")]
    pub scope: String,
}

/// Credential kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    ClientSecret,
    ClientCertificate,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
    TokenFile,
}

impl AuthKind {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::ClientSecret => "client_secret",
            AuthKind::ClientCertificate => "client_certificate",
            AuthKind::WorkloadIdentity => "workload_identity",
            AuthKind::ManagedIdentity => "managed_identity",
            AuthKind::AzureCli => "azure_cli",
            AuthKind::TokenFile => "token_file",
        }
    }
}

/// `[tenant.quota]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct QuotaConfig {
    /// Calls admitted per sliding 60 s, per endpoint. Default: 100.
    pub per_minute: u32,
    /// Calls admitted per sliding 3,600 s, per endpoint. Default: 1,500.
    pub per_hour: u32,
    /// Requests in flight at once. Default: 8.
    pub concurrency: u32,
    /// Added to each window, to absorb clock and network skew. Default: `"500ms"`.
    #[serde(with = "humantime_serde")]
    pub margin: Duration,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self { per_minute: 100, per_hour: 1500, concurrency: 8, margin: Duration::from_millis(500) }
    }
}

/// `[tenant.http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Connect timeout. Default: `"10s"`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout. Default: `"60s"`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest page accepted, bytes: of the device list, and of the export (whose `pageSize` is
    /// this at 2 KB a row). Default: 64 MiB.
    pub max_page_bytes: u64,
    /// Largest getmissingkbs response accepted, bytes. Default: 4 MiB.
    pub max_kbs_bytes: u64,
    /// Attempts for a retryable failure (5xx, timeout, connection). Default: 4.
    pub max_attempts: u32,
    /// First retry backoff, doubled per attempt (jittered, capped at 30 s). Default: `"500ms"`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_page_bytes: 64 << 20,
            max_kbs_bytes: 4 << 20,
            max_attempts: 4,
            retry_base: Duration::from_millis(500),
        }
    }
}

/// `[tenant.export]`: Defender's vulnerability export
/// (`GET /api/machines/SoftwareVulnerabilitiesByMachine` and its delta,
/// `SoftwareVulnerabilityChangesByMachine`), which needs the app permission
/// `Vulnerability.Read.All`. When enabled, each scan reads the delta once (within the export's own
/// quota, 30 calls a minute and 1,000 an hour) and requests first the devices whose missing KBs
/// it says changed since their last good scan; `kbwatch validate --online` checks the permission.
/// With `fill`, a device the run does not request and whose last state is older than
/// `fill_after` takes its state from the full export, read at most every few hours.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ExportConfig {
    /// Whether the tenant may use the export. Default: `false`.
    pub enabled: bool,
    /// Whether devices the per-device budget does not reach take their state from the full export
    /// (only with `enabled`). Default: `true`.
    pub fill: bool,
    /// How old a device's last state may grow before the export fills it. Default: `"1d"`.
    #[serde(with = "humantime_serde")]
    pub fill_after: Duration,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig { enabled: false, fill: true, fill_after: Duration::from_secs(86_400) }
    }
}

impl TenantConfig {
    /// The tenant's part of [`Config::secrets`], with key paths below the tenant; also what the
    /// loader checks in `[tenant_defaults]`.
    pub(super) fn secrets(&self) -> impl Iterator<Item = (&'static str, &SecretString)> {
        self.auth.client_secret.iter().map(|s| ("auth.client_secret", s))
    }

    fn default_rescan_after() -> Duration {
        Duration::from_secs(20 * 3600)
    }

    fn default_page_size() -> u32 {
        10_000
    }
}

// The cloud-derived keys are filled in from the tenant's `cloud` before deserialization
// (`presets.rs`); these serde defaults, the default cloud's, only apply when a key with a type error
// was set aside so that the other keys can still be checked.
fn default_api_base() -> url::Url {
    Cloud::default().api_base()
}
fn default_authority() -> url::Url {
    Cloud::default().authority()
}
fn default_scope() -> String {
    Cloud::default().scope().to_owned()
}
