//! A tenant's HTTP client and its token source: Entra ID credentials through `azure_identity`
//! ([`super::azure`]), or a token file ([`super::token`]).

use std::sync::Arc;

use anyhow::Context as _;

use super::azure::AzureToken;
use super::token::{TokenFile, TokenSource};
use crate::config::{AuthConfig, AuthKind, HttpConfig, TlsConfig};

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
