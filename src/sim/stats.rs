//! Counters of what the simulator served, for tests and the `/admin/stats` route.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// A snapshot of the counters. Request counts include every request that reached the endpoint, whatever the
/// answer (401, 429, faults included).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SimStats {
    pub machines_requests: u64,
    pub kbs_requests: u64,
    /// Requests of the full vulnerability export (`SoftwareVulnerabilitiesByMachine`).
    pub export_requests: u64,
    /// Requests of the delta export (`SoftwareVulnerabilityChangesByMachine`).
    pub export_changes_requests: u64,
    pub token_requests: u64,
    /// 429s served, violations included.
    pub throttled: u64,
    /// Requests that arrived for an endpoint while a `Retry-After` given for that endpoint had not passed.
    pub retry_after_violations: u64,
    /// 401s served on `/api`.
    pub unauthorized: u64,
    /// getmissingkbs requests per machine id as it arrived in the path (percent-decoded), known or not.
    pub kbs_requests_by_device: HashMap<String, u64>,
}

#[derive(Default)]
pub(crate) struct Counters {
    machines: AtomicU64,
    kbs: AtomicU64,
    export: AtomicU64,
    export_changes: AtomicU64,
    token: AtomicU64,
    throttled: AtomicU64,
    violations: AtomicU64,
    unauthorized: AtomicU64,
    by_device: Mutex<HashMap<String, u64>>,
}

impl Counters {
    pub(crate) fn count_machines(&self) {
        self.machines.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_kbs(&self, id: &str) {
        self.kbs.fetch_add(1, Relaxed);
        let mut by_device = super::lock(&self.by_device);
        match by_device.get_mut(id) {
            Some(n) => *n += 1,
            None => {
                by_device.insert(id.to_string(), 1);
            }
        }
    }

    pub(crate) fn count_export(&self) {
        self.export.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_export_changes(&self) {
        self.export_changes.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_token(&self) {
        self.token.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_throttled(&self, violation: bool) {
        self.throttled.fetch_add(1, Relaxed);
        if violation {
            self.violations.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn count_unauthorized(&self) {
        self.unauthorized.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SimStats {
        SimStats {
            machines_requests: self.machines.load(Relaxed),
            kbs_requests: self.kbs.load(Relaxed),
            export_requests: self.export.load(Relaxed),
            export_changes_requests: self.export_changes.load(Relaxed),
            token_requests: self.token.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            retry_after_violations: self.violations.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
            kbs_requests_by_device: super::lock(&self.by_device).clone(),
        }
    }
}
