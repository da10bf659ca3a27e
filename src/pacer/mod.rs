//! Per-tenant pacing: sliding minute and hour windows per endpoint, a concurrency cap, and a pause
//! of the whole endpoint after a 429.
//!
//! The server counts the calls of the last 60 s and of the last 3,600 s; so does the pacer. A call
//! is admitted as soon as both windows (each widened by a small margin for skew) have room: it
//! spends what the quota allows, unlike a steady rate, and never exceeds a window, unlike a token
//! bucket whose burst equals the quota.

mod limits;
mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use limits::ServerQuota;
use window::Window;

use crate::config::QuotaConfig;

/// The endpoints that have their own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/machines`
    Machines,
    /// `GET /api/machines/{id}/getmissingkbs`
    MissingKbs,
    /// The vulnerability export: `GET /api/machines/SoftwareVulnerabilitiesByMachine` and its
    /// delta, `SoftwareVulnerabilityChangesByMachine` (one quota, 30 a minute and 1,000 an hour).
    Export,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Machines => "machines",
            Endpoint::MissingKbs => "getmissingkbs",
            Endpoint::Export => "export",
        }
    }
}

/// The pacer of one tenant.
pub struct Pacer {
    /// The tenant's name: the `tenant` label of the metrics of its calls.
    tenant: Arc<str>,
    machines: Window,
    missing_kbs: Window,
    export: Window,
    in_flight: Arc<Semaphore>,
    waited_micros: AtomicU64,
}

/// Held while a request is in flight; dropping it frees the concurrency slot.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
    waited: Duration,
}

impl Admission {
    /// How long the call waited for its slot and for room in the windows (for the metrics).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Pacer {
    pub fn new(tenant: impl Into<Arc<str>>, quota: &QuotaConfig) -> Self {
        Self {
            tenant: tenant.into(),
            machines: Window::new(quota),
            missing_kbs: Window::new(quota),
            export: Window::new(&export_quota(quota)),
            in_flight: Arc::new(Semaphore::new(quota.concurrency.max(1) as usize)),
            waited_micros: AtomicU64::new(0),
        }
    }

    /// Waits for a concurrency slot and for room in both windows of `endpoint`, then counts the call.
    pub async fn admit(&self, endpoint: Endpoint) -> Admission {
        let started = Instant::now();
        let permit =
            self.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        self.window(endpoint).admit().await;
        let waited = started.elapsed();
        self.waited_micros.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        Admission { _permit: permit, waited }
    }

    /// After a 429: stops every call to `endpoint` for `delay` (its `Retry-After`, at most an
    /// hour) and adapts the endpoint's limits to what the server said (see [`limits`]).
    pub async fn throttled(
        &self,
        endpoint: Endpoint,
        delay: Duration,
        server: Option<ServerQuota>,
    ) {
        let (before, after) = self.window(endpoint).throttled(delay, server).await;
        if after < before {
            tracing::warn!(
                tenant = %self.tenant,
                endpoint = endpoint.as_str(),
                per_minute = after,
                was = before,
                "Lowered the request rate after throttling"
            );
        }
    }

    /// An upper bound of the calls `endpoint` can make within `horizon` (see [`Window::budget`]).
    pub async fn budget(&self, endpoint: Endpoint, horizon: Duration) -> usize {
        self.window(endpoint).budget(horizon).await
    }

    /// When the pause a 429 put on `endpoint` ends, if one is in force.
    pub async fn paused_until(&self, endpoint: Endpoint) -> Option<Instant> {
        self.window(endpoint).paused_until().await
    }

    /// The per-minute quota `endpoint` is paced at now: the configured one, or lower after 429s.
    pub async fn effective_per_minute(&self, endpoint: Endpoint) -> u32 {
        self.window(endpoint).effective_per_minute().await
    }

    /// The tenant this pacer paces.
    pub fn tenant(&self) -> &Arc<str> {
        &self.tenant
    }

    /// Total time callers spent waiting for admission.
    pub fn waited(&self) -> Duration {
        Duration::from_micros(self.waited_micros.load(Ordering::Relaxed))
    }

    fn window(&self, endpoint: Endpoint) -> &Window {
        match endpoint {
            Endpoint::Machines => &self.machines,
            Endpoint::MissingKbs => &self.missing_kbs,
            Endpoint::Export => &self.export,
        }
    }
}

/// The export's documented limits (30 calls a minute, 1,000 an hour), or the tenant's quota where
/// that is lower.
fn export_quota(quota: &QuotaConfig) -> QuotaConfig {
    QuotaConfig {
        per_minute: quota.per_minute.min(30),
        per_hour: quota.per_hour.min(1000),
        ..quota.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::limits::{HOUR, MINUTE};
    use super::*;

    fn quota(per_minute: u32, per_hour: u32) -> QuotaConfig {
        QuotaConfig { per_minute, per_hour, concurrency: 64, margin: Duration::ZERO }
    }

    /// Admission instants of `n` calls, on tokio's paused clock.
    async fn admit_times(pacer: &Pacer, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            let _a = pacer.admit(Endpoint::MissingKbs).await;
            out.push(start.elapsed());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn spends_the_minute_window_at_once_then_waits_for_it_to_slide() {
        let pacer = Pacer::new("t", &quota(10, 1000));
        let times = admit_times(&pacer, 25).await;
        assert!(times[..10].iter().all(|t| *t < Duration::from_millis(1)), "{times:?}");
        assert!(times[10] >= MINUTE && times[10] < MINUTE + Duration::from_millis(5));
        assert!(times[20] >= 2 * MINUTE);
        // No 60 s span holds more than 10 admissions.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..].iter().filter(|u| **u < *t + MINUTE).count();
            assert!(in_window <= 10, "{in_window} calls within 60 s of call {i}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_hour_window_caps_total_calls() {
        let pacer = Pacer::new("t", &quota(100, 150));
        let times = admit_times(&pacer, 151).await;
        assert!(times[149] < 2 * MINUTE);
        assert!(times[150] >= HOUR, "151st call at {:?}", times[150]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_of_the_endpoint() {
        let pacer = Pacer::new("t", &quota(100, 1000));
        pacer.throttled(Endpoint::MissingKbs, Duration::from_secs(7), None).await;
        let start = Instant::now();
        let _a = pacer.admit(Endpoint::MissingKbs).await;
        assert!(start.elapsed() >= Duration::from_secs(7));
        let start = Instant::now();
        let _b = pacer.admit(Endpoint::Machines).await;
        assert!(start.elapsed() < Duration::from_millis(1), "other endpoints are not paused");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let pacer = Arc::new(Pacer::new("t", &QuotaConfig { concurrency: 2, ..quota(100, 1000) }));
        let a = pacer.admit(Endpoint::Machines).await;
        let _b = pacer.admit(Endpoint::Machines).await;
        let p = pacer.clone();
        let third = tokio::spawn(async move {
            let _c = p.admit(Endpoint::Machines).await;
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap();
    }
}
