//! How a tenant authenticates: [`Auth`], the kind a test asks for, and [`TenantAuth`], the
//! `[tenant.auth]` table it becomes once the simulator (its authority, its application) is known.

use std::path::{Path, PathBuf};

use toml::Table;

use super::config::{path, string};

/// The bearer token every simulator of the kit accepts (`token_file` auth).
pub const STATIC_TOKEN: &str = "kbwatch-test-static-token";

/// The Entra tenant id of the simulator's applications.
pub(super) const ENTRA_TENANT: &str = "00000000-0000-0000-0000-000000000001";

/// How the tenant authenticates. Every kind but [`Auth::TokenFile`] talks to the simulator over
/// TLS (azure_identity refuses a plain-HTTP authority), trusting the simulator's test CA.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A token file holding [`STATIC_TOKEN`], over plain HTTP.
    TokenFile,
    /// The same, over TLS.
    TokenFileOverTls,
    /// `client_secret` with the simulator's application.
    ClientSecret,
    /// `client_certificate` with this PKCS#12 bundle and the file holding its password.
    ClientCertificate {
        certificate_file: PathBuf,
        password_file: PathBuf,
    },
    /// `workload_identity` with this federated token file.
    WorkloadIdentity {
        federated_token_file: PathBuf,
    },
    ManagedIdentity,
    AzureCli,
}

/// An Entra ID application: who asks the authority for tokens.
#[derive(Debug, Clone)]
pub struct EntraApp {
    pub tenant_id: String,
    pub client_id: String,
    pub authority: url::Url,
}

/// `[tenant.auth]`, one variant per credential kind.
#[derive(Debug, Clone)]
pub enum TenantAuth {
    TokenFile { token_file: PathBuf },
    ClientSecret { app: EntraApp, client_secret_file: PathBuf },
    ClientCertificate { app: EntraApp, certificate_file: PathBuf, password_file: PathBuf },
    WorkloadIdentity { app: EntraApp, federated_token_file: PathBuf },
    ManagedIdentity { authority: url::Url },
    AzureCli { authority: url::Url },
}

/// The `[tenant.auth]` of `auth`, with the files it needs written into `dir`.
pub(super) fn tenant_auth(
    auth: Auth,
    app: EntraApp,
    client_secret: &str,
    dir: &Path,
) -> TenantAuth {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("a credential file is written");
        path
    };
    match auth {
        Auth::TokenFile | Auth::TokenFileOverTls => {
            // With the newline a sidecar's `echo` leaves, which kbwatch trims.
            TenantAuth::TokenFile { token_file: write("token", &format!("{STATIC_TOKEN}\n")) }
        }
        Auth::ClientSecret => {
            TenantAuth::ClientSecret { app, client_secret_file: write("secret", client_secret) }
        }
        Auth::ClientCertificate { certificate_file, password_file } => {
            TenantAuth::ClientCertificate { app, certificate_file, password_file }
        }
        Auth::WorkloadIdentity { federated_token_file } => {
            TenantAuth::WorkloadIdentity { app, federated_token_file }
        }
        Auth::ManagedIdentity => TenantAuth::ManagedIdentity { authority: app.authority },
        Auth::AzureCli => TenantAuth::AzureCli { authority: app.authority },
    }
}

impl TenantAuth {
    pub(super) fn to_table(&self) -> Table {
        let mut t = Table::new();
        match self {
            TenantAuth::TokenFile { token_file } => {
                t.insert("kind".into(), string("token_file"));
                t.insert("token_file".into(), path(token_file));
            }
            TenantAuth::ClientSecret { app: a, client_secret_file } => {
                entra(&mut t, "client_secret", a);
                t.insert("client_secret_file".into(), path(client_secret_file));
            }
            TenantAuth::ClientCertificate { app: a, certificate_file, password_file } => {
                entra(&mut t, "client_certificate", a);
                t.insert("certificate_file".into(), path(certificate_file));
                t.insert("certificate_password_file".into(), path(password_file));
            }
            TenantAuth::WorkloadIdentity { app: a, federated_token_file } => {
                entra(&mut t, "workload_identity", a);
                t.insert("federated_token_file".into(), path(federated_token_file));
            }
            TenantAuth::ManagedIdentity { authority } => {
                t.insert("kind".into(), string("managed_identity"));
                t.insert("authority".into(), string(authority));
            }
            TenantAuth::AzureCli { authority } => {
                t.insert("kind".into(), string("azure_cli"));
                t.insert("authority".into(), string(authority));
            }
        }
        t
    }
}

fn entra(t: &mut Table, kind: &str, app: &EntraApp) {
    t.insert("kind".into(), string(kind));
    t.insert("tenant_id".into(), string(&app.tenant_id));
    t.insert("client_id".into(), string(&app.client_id));
    t.insert("authority".into(), string(&app.authority));
}
