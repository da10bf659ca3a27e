//! A throw-away test CA and a server certificate for `localhost`, `127.0.0.1` and `::1`, made with rcgen.

use std::sync::Arc;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The server side of TLS and the PEM of the CA that clients must trust.
pub struct TestTls {
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    /// The server's side, for `axum_server::bind_rustls`.
    pub config: RustlsConfig,
}

/// Generates a fresh CA and server certificate (valid from yesterday for a year).
pub fn generate() -> anyhow::Result<TestTls> {
    // rustls needs a process-wide provider for some builders; installing twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let now = time::OffsetDateTime::now_utc();
    let (not_before, not_after) = (now - time::Duration::days(1), now + time::Duration::days(365));

    let mut ca_params = CertificateParams::new(Vec::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "kbwatch simulator test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate().context("CA key")?;
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let mut params = CertificateParams::new(names).context("server certificate parameters")?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().context("server key")?;
    let cert = params.signed_by(&key, &issuer).context("signing the server certificate")?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .context("server TLS configuration")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TestTls { ca_pem: ca_cert.pem(), config: RustlsConfig::from_config(Arc::new(server)) })
}
