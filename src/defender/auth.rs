//! Bearer tokens: Entra ID credentials through `azure_identity` ([`super::azure`]), or a token file.
//!
//! Tokens are cached (by `azure_identity` for credentials, here for files) and refreshed before
//! expiry; [`TokenSource::refresh`] forces a new one after a 401.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::ApiError;
use super::azure::AzureToken;
use crate::config::{AuthConfig, AuthKind, HttpConfig, TlsConfig};

/// Where bearer tokens come from.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A valid token, from the cache when it has one.
    async fn token(&self) -> Result<SecretString, ApiError>;
    /// A new token, whatever the cache holds (after a 401).
    async fn refresh(&self) -> Result<SecretString, ApiError>;
}

/// The one HTTP client of a tenant: timeouts, user agent, compression, extra CA. It follows no
/// redirect: a 3xx from the token endpoint must not carry a client secret or an assertion to
/// another origin, nor a redirected API answer be stored as the tenant's.
pub fn build_http_client(tls: &TlsConfig, http: &HttpConfig) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kbwatch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(http.connect_timeout)
        .timeout(http.request_timeout)
        .gzip(true)
        .deflate(true)
        .pool_max_idle_per_host(64);
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading tls.ca_file {}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("parsing tls.ca_file {}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

/// The token source that `auth` configures, sharing `http` for its own requests.
pub fn token_source(
    auth: &AuthConfig,
    http: reqwest::Client,
) -> anyhow::Result<Arc<dyn TokenSource>> {
    match auth.kind {
        AuthKind::TokenFile => {
            let path = auth.token_file.clone().context("auth.token_file is required")?;
            Ok(Arc::new(TokenFile::new(path)))
        }
        _ => Ok(Arc::new(AzureToken::new(auth, http)?)),
    }
}

/// A secret file's text without its trailing newline.
pub(super) fn read_secret(path: &Path) -> anyhow::Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading secret file {}", path.display()))?;
    Ok(SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// A bearer token read from a file (a sidecar keeps it fresh); re-read at most every minute, and
/// on every forced refresh.
pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(SecretString, Instant)>>,
}

impl TokenFile {
    const MAX_AGE: Duration = Duration::from_secs(60);

    pub fn new(path: PathBuf) -> Self {
        Self { path, cached: Mutex::new(None) }
    }

    async fn read(&self) -> Result<SecretString, ApiError> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            ApiError::Unauthorized(format!("cannot read token file {}: {e}", self.path.display()))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ApiError::Unauthorized(format!(
                "token file {} is empty",
                self.path.display()
            )));
        }
        Ok(SecretString::from(token.to_owned()))
    }
}

#[async_trait::async_trait]
impl TokenSource for TokenFile {
    async fn token(&self) -> Result<SecretString, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < Self::MAX_AGE
        {
            return Ok(token.clone());
        }
        let token = self.read().await?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    async fn refresh(&self) -> Result<SecretString, ApiError> {
        let token = self.read().await?;
        *self.cached.lock().await = Some((token.clone(), Instant::now()));
        Ok(token)
    }
}
