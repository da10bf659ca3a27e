//! Where bearer tokens come from ([`TokenSource`]), a token file, and secret files.
//!
//! Tokens are cached (by `azure_identity` for credentials, here for files) and refreshed before
//! expiry; [`TokenSource::refresh`] forces a new one after a 401.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::ApiError;

/// Where bearer tokens come from.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// A valid token, from the cache when it has one.
    async fn token(&self) -> Result<SecretString, ApiError>;
    /// A new token, whatever the cache holds (after a 401).
    async fn refresh(&self) -> Result<SecretString, ApiError>;
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
