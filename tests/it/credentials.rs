//! Every credential kind acquires a token from the TLS simulator through `azure_identity` and
//! scans with it. Kinds that read the process environment (managed identity, Azure CLI) run the
//! `kbwatch` binary with that environment.

use std::path::Path;
use std::sync::Arc;

use kbwatch::model::RunStatus;
use kbwatch::sim::{IDENTITY_HEADER, SimConfig};
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

use crate::kit::{Auth, Kbwatch, Tenant, TestApp, fleet as sim, spawn_app};

/// A self-signed RSA certificate and its PKCS#12 bundle under `password`.
fn certificate(password: &str) -> (Vec<u8>, Vec<u8>) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "kbwatch-test-client").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = cert.build();
    let pfx = Pkcs12::builder().name("kbwatch").pkey(&key).cert(&cert).build2(password).unwrap();
    (cert.to_der().unwrap(), pfx.to_der().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_signs_its_assertion_and_scans() {
    let files = tempfile::tempdir().unwrap();
    let (der, pfx) = certificate("pfx-pass");
    let (pfx_path, pass_path) = (files.path().join("client.pfx"), files.path().join("pass"));
    std::fs::write(&pfx_path, pfx).unwrap();
    std::fs::write(&pass_path, "pfx-pass\n").unwrap();
    let auth = Auth::ClientCertificate { certificate_file: pfx_path, password_file: pass_path };
    let app = spawn_app(sim(30), auth, Tenant::default()).await;

    let untrusted = app.scan().await;
    assert_eq!(untrusted.status, RunStatus::Failed, "an unregistered certificate is refused");

    app.sim.trust_client_certificate(&der).unwrap();
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_rereads_its_token_file_when_it_rotates() {
    let files = tempfile::tempdir().unwrap();
    let token_path = files.path().join("azure-identity-token");
    std::fs::write(&token_path, "federated-1").unwrap();
    let auth = Auth::WorkloadIdentity { federated_token_file: token_path.clone() };
    let app = spawn_app(sim(20), auth, Tenant::default()).await;
    app.sim.set_federated_token(Some("federated-1".into()));
    let client = app.client();
    let first = app.scan_with(Arc::clone(&client)).await;
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");

    // Kubelet rotates the projected token; Entra accepts only the new one; API tokens lapse.
    std::fs::write(&token_path, "federated-2").unwrap();
    app.sim.set_federated_token(Some("federated-2".into()));
    app.sim.expire_tokens();
    let second = app.scan_with(client).await;
    assert_eq!(second.status, RunStatus::Completed, "{second:?}");
    assert_eq!(second.devices.ok, 20);
}

/// Runs `kbwatch scan` on the app's config with `env` added; returns stdout, asserting success.
async fn scan_binary(app: &TestApp, env: &[(&str, String)]) -> String {
    let scan = Kbwatch::new(["scan"]).config(&app.config_file());
    let output = env.iter().fold(scan, |scan, (k, v)| scan.env(k, v)).output().await;
    assert!(output.success(), "scan failed:\n{}\n{}", output.stdout, output.stderr);
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_gets_its_token_from_the_identity_endpoint() {
    let app = spawn_app(sim(15), Auth::ManagedIdentity, Tenant::default()).await;
    let env = [
        ("IDENTITY_ENDPOINT", app.sim.managed_identity_endpoint().to_string()),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
    ];
    let stdout = scan_binary(&app, &env).await;
    assert!(stdout.contains("ok 15"), "{stdout}");
    assert!(app.sim.stats().token_requests >= 1, "the identity endpoint issued the token");
}

/// A stand-in for `az`: `az account get-access-token -o json --scope S` logs in to the simulator
/// with the client secret, as the real CLI would to Entra ID, and prints the CLI's JSON.
const FAKE_AZ: &str = r#"#!/usr/bin/env python3
import json, os, ssl, sys, time, urllib.parse, urllib.request
args = sys.argv[1:]
assert args[:3] == ["account", "get-access-token", "-o"], args
scope = args[args.index("--scope") + 1]
form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": scope,
    "client_id": os.environ["SIM_CLIENT_ID"], "client_secret": os.environ["SIM_CLIENT_SECRET"]})
ctx = ssl.create_default_context(cafile=os.environ["SIM_CA_FILE"])
url = os.environ["SIM_AUTHORITY"] + "cli-tenant/oauth2/v2.0/token"
with urllib.request.urlopen(url, form.encode(), context=ctx) as r:
    token = json.load(r)
print(json.dumps({"accessToken": token["access_token"], "tokenType": "Bearer",
    "expires_on": int(time.time()) + token["expires_in"], "tenant": "cli-tenant"}))
"#;

fn install_fake_az(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let az = dir.join("az");
    std::fs::write(&az, FAKE_AZ).unwrap();
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_cli_runs_az_for_its_token() {
    let config = SimConfig::default();
    let secret = config.client_secret.clone();
    let app = spawn_app(sim(12), Auth::AzureCli, Tenant::default()).await;
    let bin = app.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    install_fake_az(&bin);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let env = [
        ("PATH", path),
        ("SIM_AUTHORITY", app.sim.authority().to_string()),
        ("SIM_CA_FILE", app.dir.path().join("ca.pem").display().to_string()),
        ("SIM_CLIENT_ID", config.client_id.clone()),
        ("SIM_CLIENT_SECRET", secret),
    ];
    let stdout = scan_binary(&app, &env).await;
    assert!(stdout.contains("ok 12"), "{stdout}");
}

#[tokio::test]
async fn token_file_scans_over_tls() {
    let app = spawn_app(sim(12), Auth::TokenFileOverTls, Tenant::default()).await;
    assert!(app.sim.base_url().scheme() == "https", "the simulator serves TLS");
    let summary = app.scan().await;
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.devices.ok, 12);
}
