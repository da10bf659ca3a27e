//! The bearer tokens the simulator has issued, and how a new random one is made.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

/// Issued tokens and the tenant (path segment) each was issued for.
#[derive(Default)]
pub(crate) struct Tokens {
    issued: HashMap<String, (Instant, String)>,
}

impl Tokens {
    /// A new token for `tenant`, accepted for `lifetime`.
    pub(crate) fn issue(&mut self, tenant: &str, lifetime: Duration) -> String {
        let token = random_token("sim");
        self.issued.insert(token.clone(), (Instant::now() + lifetime, tenant.to_owned()));
        token
    }

    /// The tenant `token` was issued for, while it has not expired.
    pub(crate) fn tenant_of(&self, token: &str) -> Option<String> {
        let (expires, tenant) = self.issued.get(token)?;
        (Instant::now() < *expires).then(|| tenant.clone())
    }

    /// Forgets every issued token: each one answers 401 from now on.
    pub(crate) fn expire_all(&mut self) {
        self.issued.clear();
    }
}

/// `{prefix}.` and 64 random hex digits (256 bits).
pub(crate) fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}.{hex}")
}

/// Compares a presented secret with the expected one in time that does not depend on where they
/// first differ.
pub(crate) fn same_secret(presented: &str, expected: &str) -> bool {
    presented.len() == expected.len()
        && presented.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}
