//! Entra ID credentials through `azure_identity`, one [`TokenSource`] for every kind.
//!
//! `azure_identity` caches tokens inside each credential and has no "force refresh": after a 401,
//! [`AzureToken::refresh`] builds a fresh credential, which also re-reads every file it uses (a
//! rotated federated token, a renewed certificate).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, SecretBytes, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredentialOptions,
    ClientCertificateCredential, ClientCertificateCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::ApiError;
use super::auth::{TokenSource, read_secret};
use crate::config::{AuthConfig, AuthKind};

type Build = Box<dyn Fn() -> anyhow::Result<Arc<dyn TokenCredential>> + Send + Sync>;

/// A token source over an `azure_identity` credential, rebuilt on [`TokenSource::refresh`].
pub struct AzureToken {
    scope: String,
    build: Build,
    credential: Mutex<Arc<dyn TokenCredential>>,
}

impl AzureToken {
    /// The credential `auth` configures; its own requests go through `http` (timeouts, extra CA).
    pub fn new(auth: &AuthConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let options = client_options(&auth.authority, http);
        let build = builder(auth, options)?;
        let credential = build()?;
        Ok(Self { scope: auth.scope.clone(), build, credential: Mutex::new(credential) })
    }

    async fn get(&self, credential: Arc<dyn TokenCredential>) -> Result<SecretString, ApiError> {
        let token = credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| ApiError::Unauthorized(format!("token request failed: {e}")))?;
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
        let fresh = (self.build)().map_err(|e| ApiError::Unauthorized(format!("{e:#}")))?;
        *self.credential.lock().await = fresh.clone();
        self.get(fresh).await
    }
}

fn client_options(authority: &url::Url, http: reqwest::Client) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = authority.as_str().trim_end_matches('/').to_owned();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..Default::default()
    }
}

fn builder(auth: &AuthConfig, options: ClientOptions) -> anyhow::Result<Build> {
    let tenant_id = auth.tenant_id.clone();
    let client_id = auth.client_id.clone();
    let required = |value: &Option<String>, key: &str| {
        value.clone().with_context(|| format!("auth.{key} is required for {}", auth.kind.as_str()))
    };
    Ok(match auth.kind {
        AuthKind::ClientSecret => {
            let (tenant, client) =
                (required(&tenant_id, "tenant_id")?, required(&client_id, "client_id")?);
            let secret = client_secret(auth)?;
            Box::new(move || {
                let options = ClientSecretCredentialOptions { client_options: options.clone() };
                let secret = Secret::new(secret.expose_secret().to_owned());
                let credential =
                    ClientSecretCredential::new(&tenant, client.clone(), secret, Some(options))
                        .context("building the client-secret credential")?;
                Ok(credential as Arc<dyn TokenCredential>)
            })
        }
        AuthKind::ClientCertificate => {
            let (tenant, client) =
                (required(&tenant_id, "tenant_id")?, required(&client_id, "client_id")?);
            let file =
                auth.certificate_file.clone().context("auth.certificate_file is required")?;
            let password = auth.certificate_password_file.clone();
            Box::new(move || certificate(&tenant, &client, &file, password.as_deref(), &options))
        }
        AuthKind::WorkloadIdentity => {
            let file = auth.federated_token_file.clone();
            Box::new(move || {
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: options.clone(),
                    },
                    client_id: client_id.clone(),
                    tenant_id: tenant_id.clone(),
                    token_file_path: file.clone(),
                };
                let credential = WorkloadIdentityCredential::new(Some(options))
                    .context("building the workload-identity credential")?;
                Ok(credential as Arc<dyn TokenCredential>)
            })
        }
        AuthKind::ManagedIdentity => Box::new(move || {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options.clone(),
            };
            let credential = ManagedIdentityCredential::new(Some(options))
                .context("building the managed-identity credential")?;
            Ok(credential as Arc<dyn TokenCredential>)
        }),
        AuthKind::AzureCli => Box::new(move || {
            let options =
                AzureCliCredentialOptions { tenant_id: tenant_id.clone(), ..Default::default() };
            let credential = AzureCliCredential::new(Some(options))
                .context("building the Azure CLI credential")?;
            Ok(credential as Arc<dyn TokenCredential>)
        }),
        AuthKind::TokenFile => anyhow::bail!("token_file is not an Entra ID credential"),
    })
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
    options: &ClientOptions,
) -> anyhow::Result<Arc<dyn TokenCredential>> {
    let der = std::fs::read(file)
        .with_context(|| format!("reading certificate_file {}", file.display()))?;
    let password = match password {
        Some(path) => Some(Secret::new(read_secret(path)?.expose_secret().to_owned())),
        None => None,
    };
    let options = ClientCertificateCredentialOptions { client_options: options.clone(), password };
    let credential = ClientCertificateCredential::new(
        tenant.to_owned(),
        client.to_owned(),
        SecretBytes::new(der),
        Some(options),
    )
    .with_context(|| format!("loading the PKCS#12 certificate {}", file.display()))?;
    Ok(credential)
}
