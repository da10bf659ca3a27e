//! The typed Defender for Endpoint API client.
//!
//! Every call goes through one private `request` that paces it, authenticates it and classifies the
//! response the same way (DESIGN §3). Wire shapes stay here; callers get
//! [`Machine`](crate::model::Machine), [`MissingKb`](crate::model::MissingKb) and, from the
//! vulnerability exports, [`KbChanges`](crate::model::KbChanges) and
//! [`ExportStates`](crate::model::ExportStates).

mod auth;
mod azure;
mod body;
mod client;
mod error;
mod export;
mod export_states;
mod model;
mod pager;
mod token;

pub use auth::{build_http_client, token_source};
pub use azure::AzureToken;
pub use client::{Client, ClientOptions};
pub use error::ApiError;
pub use pager::MachinePager;
pub use token::{TokenFile, TokenSource};

use std::sync::Arc;

use crate::config::{TenantConfig, TlsConfig};
use crate::pacer::Pacer;

/// The paced, authenticated client a tenant's configuration describes.
pub fn client_for(tenant: &TenantConfig, tls: &TlsConfig) -> anyhow::Result<Client> {
    let http = build_http_client(tls, &tenant.http)?;
    let tokens = token_source(&tenant.auth, http.clone())?;
    let options = ClientOptions {
        page_size: tenant.page_size,
        max_attempts: tenant.http.max_attempts,
        max_page_bytes: tenant.http.max_page_bytes,
        max_kbs_bytes: tenant.http.max_kbs_bytes,
        retry_base: tenant.http.retry_base,
        ..ClientOptions::default()
    };
    Ok(Client::new(
        http,
        tenant.api_base.clone(),
        tokens,
        Arc::new(Pacer::new(tenant.name.as_str(), &tenant.quota)),
        options,
    ))
}
