//! Entra ID credentials through `azure_identity`, one [`TokenSource`] for every kind.
//!
//! `azure_identity` caches tokens inside each credential and has no "force refresh": after a 401,
//! [`AzureToken::refresh`] builds a fresh credential, which also re-reads every file it uses (a
//! rotated federated token, a renewed certificate).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, SecretBytes, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::headers::HeaderName;
use azure_core::http::{AsyncRawResponse, ClientOptions, HttpClient, Request, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions,
    ClientCertificateCredential, ClientCertificateCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use futures::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::ApiError;
use super::error::{cut_text, error_chain};
use super::token::{TokenSource, read_secret};
use crate::config::{AuthConfig, AuthKind};

/// A token source over an `azure_identity` credential, rebuilt on [`TokenSource::refresh`].
pub struct AzureToken {
    scope: String,
    recipe: Recipe,
    options: ClientOptions,
    credential: Mutex<Arc<dyn TokenCredential>>,
}

impl AzureToken {
    /// The credential `auth` configures; its own requests go through `http` (timeouts, extra CA).
    pub fn new(auth: &AuthConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let options = client_options(&auth.authority, http);
        let recipe = Recipe::from_config(auth)?;
        let credential = Mutex::new(recipe.build(&options)?);
        Ok(Self { scope: auth.scope.clone(), recipe, options, credential })
    }

    async fn get(&self, credential: Arc<dyn TokenCredential>) -> Result<SecretString, ApiError> {
        let token = credential.get_token(&[self.scope.as_str()], None).await.map_err(|e| {
            ApiError::Unauthorized(cut_text(&format!("token request failed: {}", error_chain(&e))))
        })?;
        Ok(SecretString::from(token.token.secret().to_owned()))
    }
}

#[async_trait::async_trait]
impl TokenSource for AzureToken {
    async fn token(&self) -> Result<SecretString, ApiError> {
        let credential = self.credential.lock().await.clone();
        self.get(credential).await
    }

    async fn refresh(&self) -> Result<SecretString, ApiError> {
        let fresh = self
            .recipe
            .build(&self.options)
            .map_err(|e| ApiError::Unauthorized(format!("{e:#}")))?;
        *self.credential.lock().await = fresh.clone();
        self.get(fresh).await
    }
}

fn client_options(authority: &url::Url, http: reqwest::Client) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = authority.as_str().trim_end_matches('/').to_owned();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(TokenTransport { http }))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..Default::default()
    }
}

/// The largest token (or managed-identity) response read; real ones are a few kilobytes.
const MAX_TOKEN_RESPONSE: usize = 256 << 10;

/// The transport of the credentials' own requests: the tenant's client (which follows no
/// redirect), with a redirect named as such and the body read up to [`MAX_TOKEN_RESPONSE`].
#[derive(Debug)]
struct TokenTransport {
    http: reqwest::Client,
}

#[async_trait::async_trait]
impl HttpClient for TokenTransport {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let response = self.http.execute_request(request).await?;
        let (status, headers, mut body) = response.deconstruct();
        let code = u16::from(status);
        if (300..400).contains(&code) {
            let location = headers.get_optional_str(&HeaderName::from_static("location"));
            let message = format!(
                "the token endpoint redirected ({code}) to {}; kbwatch follows no redirects: check auth.authority",
                cut_text(location.unwrap_or_default())
            );
            return Err(azure_core::Error::with_message(ErrorKind::Other, message));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE {
                let message = format!("token response over {MAX_TOKEN_RESPONSE} bytes");
                return Err(azure_core::Error::with_message(ErrorKind::Other, message));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(AsyncRawResponse::from_bytes(status, headers, bytes))
    }
}

/// What a credential kind needs, read from the config once; files are read on every build.
enum Recipe {
    Secret { tenant: String, client: String, secret: SecretString },
    Certificate { tenant: String, client: String, file: PathBuf, password: Option<PathBuf> },
    Workload { tenant: Option<String>, client: Option<String>, file: Option<PathBuf> },
    Managed { client: Option<String> },
    Cli { tenant: Option<String> },
}

impl Recipe {
    fn from_config(auth: &AuthConfig) -> anyhow::Result<Recipe> {
        let required = |value: &Option<String>, key: &str| {
            let kind = auth.kind.as_str();
            value.clone().with_context(|| format!("auth.{key} is required for {kind}"))
        };
        let (tenant, client) = (auth.tenant_id.clone(), auth.client_id.clone());
        Ok(match auth.kind {
            AuthKind::ClientSecret => Recipe::Secret {
                tenant: required(&tenant, "tenant_id")?,
                client: required(&client, "client_id")?,
                secret: client_secret(auth)?,
            },
            AuthKind::ClientCertificate => Recipe::Certificate {
                tenant: required(&tenant, "tenant_id")?,
                client: required(&client, "client_id")?,
                file: auth.certificate_file.clone().context("auth.certificate_file is required")?,
                password: auth.certificate_password_file.clone(),
            },
            AuthKind::WorkloadIdentity => {
                Recipe::Workload { tenant, client, file: auth.federated_token_file.clone() }
            }
            AuthKind::ManagedIdentity => Recipe::Managed { client },
            AuthKind::AzureCli => Recipe::Cli { tenant },
            AuthKind::TokenFile => anyhow::bail!("token_file is not an Entra ID credential"),
        })
    }

    fn build(&self, options: &ClientOptions) -> anyhow::Result<Arc<dyn TokenCredential>> {
        let client_options = options.clone();
        Ok(match self {
            Recipe::Secret { tenant, client, secret } => {
                let secret = Secret::new(secret.expose_secret().to_owned());
                let options = ClientSecretCredentialOptions { client_options };
                ClientSecretCredential::new(tenant, client.clone(), secret, Some(options))
                    .context("building the client-secret credential")?
            }
            Recipe::Certificate { tenant, client, file, password } => {
                certificate(tenant, client, file, password.as_deref(), client_options)?
            }
            Recipe::Workload { tenant, client, file } => {
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions { client_options },
                    client_id: client.clone(),
                    tenant_id: tenant.clone(),
                    token_file_path: file.clone(),
                };
                WorkloadIdentityCredential::new(Some(options))
                    .context("building the workload-identity credential")?
            }
            Recipe::Managed { client } => {
                let user_assigned_id = client.clone().map(UserAssignedId::ClientId);
                let options = ManagedIdentityCredentialOptions { user_assigned_id, client_options };
                ManagedIdentityCredential::new(Some(options))
                    .context("building the managed-identity credential")?
            }
            Recipe::Cli { tenant } => {
                let options =
                    AzureCliCredentialOptions { tenant_id: tenant.clone(), ..Default::default() };
                AzureCliCredential::new(Some(options))
                    .context("building the Azure CLI credential")?
            }
        })
    }
}

fn client_secret(auth: &AuthConfig) -> anyhow::Result<SecretString> {
    match (&auth.client_secret, &auth.client_secret_file) {
        (_, Some(path)) => read_secret(path),
        (Some(secret), None) => Ok(secret.clone()),
        (None, None) => anyhow::bail!("auth.client_secret or auth.client_secret_file is required"),
    }
}

/// Reads the PKCS#12 file (and its password) on every build, so a renewed certificate is used
/// from the next refresh on.
fn certificate(
    tenant: &str,
    client: &str,
    file: &Path,
    password: Option<&Path>,
    client_options: ClientOptions,
) -> anyhow::Result<Arc<dyn TokenCredential>> {
    let der = std::fs::read(file)
        .with_context(|| format!("reading certificate_file {}", file.display()))?;
    let password = match password {
        Some(path) => Some(Secret::new(read_secret(path)?.expose_secret().to_owned())),
        None => None,
    };
    let options = ClientCertificateCredentialOptions { client_options, password };
    let credential = ClientCertificateCredential::new(
        tenant.to_owned(),
        client.to_owned(),
        SecretBytes::new(der),
        Some(options),
    )
    .with_context(|| format!("loading the PKCS#12 certificate {}", file.display()))?;
    Ok(credential)
}
