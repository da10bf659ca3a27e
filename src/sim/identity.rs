//! Client assertions, the identity flows beyond client secrets: a federated workload-identity
//! token, or a JWT signed with a registered certificate. With the managed-identity endpoint of
//! `auth`, every `azure_identity` credential kbwatch supports runs against the simulator.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use openssl::x509::X509;

/// The client assertions the token endpoint accepts.
#[derive(Default)]
pub(crate) struct Assertions {
    /// The current federated (service-account) token; rotation replaces it.
    federated: Option<String>,
    /// DER certificates whose keys may sign client assertions, by base64 SHA-1 thumbprint (`x5t`).
    certificates: HashMap<String, X509>,
}

impl Assertions {
    pub(crate) fn set_federated(&mut self, token: Option<String>) {
        self.federated = token;
    }

    pub(crate) fn trust_certificate(&mut self, der: &[u8]) -> anyhow::Result<()> {
        let cert = X509::from_der(der)?;
        let thumbprint = STANDARD.encode(cert.digest(MessageDigest::sha1())?);
        self.certificates.insert(thumbprint, cert);
        Ok(())
    }

    /// `Ok` when `assertion` is the federated token or a valid JWT signed by a trusted
    /// certificate; else the AADSTS error text.
    pub(crate) fn check(&self, assertion: &str) -> Result<(), &'static str> {
        if self.federated.as_deref() == Some(assertion) {
            return Ok(());
        }
        let mut parts = assertion.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(
                "AADSTS70021: No matching federated identity record found for presented assertion.",
            );
        };
        let cert = self.signer(header).ok_or("AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.")?;
        let signed = &assertion[..header.len() + 1 + payload.len()];
        if !verify_rs256(&cert, signed, signature) {
            return Err("AADSTS700027: Client assertion failed signature validation.");
        }
        if !unexpired(payload) {
            return Err("AADSTS700024: Client assertion is not within its valid time range.");
        }
        Ok(())
    }

    fn signer(&self, header: &str) -> Option<X509> {
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != "RS256" {
            return None;
        }
        self.certificates.get(header.get("x5t")?.as_str()?).cloned()
    }
}

fn verify_rs256(cert: &X509, signed: &str, signature: &str) -> bool {
    let (Ok(key), Ok(signature)) = (cert.public_key(), URL_SAFE_NO_PAD.decode(signature)) else {
        return false;
    };
    Verifier::new(MessageDigest::sha256(), &key)
        .and_then(|mut v| {
            v.update(signed.as_bytes())?;
            v.verify(&signature)
        })
        .unwrap_or(false)
}

fn unexpired(payload: &str) -> bool {
    let claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let exp = claims.as_ref().and_then(|c| c.get("exp")).and_then(serde_json::Value::as_i64);
    exp.is_some_and(|exp| exp > chrono::Utc::now().timestamp())
}
