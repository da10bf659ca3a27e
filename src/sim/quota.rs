//! Sliding-window quota enforcement per endpoint, with 429 answers and recording of `Retry-After` violations.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::SimQuota;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The endpoints that have a quota of their own (the token endpoint has none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/machines`
    Machines = 0,
    /// `GET /api/machines/{id}/getmissingkbs`
    MissingKbs = 1,
    /// The full vulnerability export; limited by the export quota, not by the one of the two above.
    Export = 2,
    /// The delta export: the export quota, in a window of its own.
    ExportChanges = 3,
}

/// What the quota says about one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    Throttle {
        /// Whole seconds of the `Retry-After` header, at least 1.
        retry_after: u64,
        /// The limit that was hit and its window as the message spells it (`00:01:00` or `01:00:00`).
        limit: u32,
        window: &'static str,
        /// The request came while an earlier `Retry-After` for this endpoint had not passed.
        violation: bool,
    },
}

#[derive(Default)]
struct Window {
    /// Arrival instants of the admitted requests of the last hour, oldest first.
    admitted: VecDeque<Instant>,
    /// When the last `Retry-After` given for this endpoint expires.
    retry_until: Option<Instant>,
    /// When that 429 was answered: requests that arrived just after it were already on the wire.
    throttled_at: Option<Instant>,
    /// The limit and window named in that last 429, repeated while it lasts.
    last: Option<(u32, &'static str)>,
}

/// A request that arrives within this time after a 429 was answered was sent before its client
/// could have read it (it was in flight on another connection): throttled, but not a violation.
pub(crate) const IN_FLIGHT_GRACE: Duration = Duration::from_millis(100);

/// Quota state of every endpoint.
///
/// The rule, the same as the server's: a request arriving at `t` is admitted if fewer than `per_minute`
/// admitted requests arrived in `(t - 60 s, t]` and fewer than `per_hour` in `(t - 3600 s, t]`; only admitted
/// requests count. Otherwise the answer is 429 with `Retry-After` = the whole seconds (rounded up, at least 1)
/// until the oldest request that fills the exceeded window leaves it. The instant that `Retry-After` expires is
/// recorded; a request for the same endpoint arriving before it is answered 429 (with the seconds left) even if
/// the windows would admit it, and is a violation unless it arrived within [`IN_FLIGHT_GRACE`] of that 429.
///
/// The export endpoints follow the same rule with limits of their own (`export`).
///
/// Changing a quota ([`Quotas::set`], [`Quotas::set_export`]) forgets every recorded request; with no quota
/// nothing is recorded.
#[derive(Default)]
pub(crate) struct Quotas {
    limits: Option<SimQuota>,
    export: Option<SimQuota>,
    windows: [Window; 4],
}

impl Quotas {
    pub(crate) fn new(limits: Option<SimQuota>, export: Option<SimQuota>) -> Self {
        Quotas { limits, export, windows: Default::default() }
    }

    pub(crate) fn set(&mut self, limits: Option<SimQuota>) {
        *self = Quotas::new(limits, self.export);
    }

    pub(crate) fn set_export(&mut self, export: Option<SimQuota>) {
        *self = Quotas::new(self.limits, export);
    }

    /// Decides on a request for `ep` checked at `now` (it reached the server at `arrived`, before any
    /// injected latency), and records it if admitted.
    pub(crate) fn check(&mut self, ep: Endpoint, arrived: Instant, now: Instant) -> Verdict {
        let limits = if matches!(ep, Endpoint::Export | Endpoint::ExportChanges) {
            self.export
        } else {
            self.limits
        };
        let Some(q) = limits else { return Verdict::Admit };
        let w = &mut self.windows[ep as usize];
        while w.admitted.front().is_some_and(|&t| now.duration_since(t) >= HOUR) {
            w.admitted.pop_front();
        }
        if let Some(until) = w.retry_until.filter(|&u| now < u) {
            let (limit, window) = w.last.unwrap_or((q.per_minute, "00:01:00"));
            let retry_after = ceil_secs(until - now);
            let violation = w.throttled_at.is_none_or(|t| arrived > t + IN_FLIGHT_GRACE);
            return Verdict::Throttle { retry_after, limit, window, violation };
        }
        let in_minute =
            w.admitted.iter().rev().take_while(|&&t| now.duration_since(t) < MINUTE).count();
        let mut wait = None;
        if in_minute >= q.per_minute as usize {
            // The request that must leave the minute window: the per_minute-th newest.
            let oldest = w.admitted[w.admitted.len() - q.per_minute as usize];
            wait = Some((oldest + MINUTE - now, q.per_minute, "00:01:00"));
        }
        if w.admitted.len() >= q.per_hour as usize {
            let oldest = w.admitted[w.admitted.len() - q.per_hour as usize];
            let hour_wait = oldest + HOUR - now;
            if wait.is_none_or(|(d, _, _)| hour_wait > d) {
                wait = Some((hour_wait, q.per_hour, "01:00:00"));
            }
        }
        match wait {
            None => {
                w.admitted.push_back(now);
                Verdict::Admit
            }
            Some((d, limit, window)) => {
                let retry_after = ceil_secs(d);
                w.retry_until = Some(now + Duration::from_secs(retry_after));
                w.throttled_at = Some(now);
                w.last = Some((limit, window));
                Verdict::Throttle { retry_after, limit, window, violation: false }
            }
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_minute_and_hour_windows() {
        let mut q = Quotas::new(Some(SimQuota { per_minute: 2, per_hour: 3 }), None);
        let t0 = Instant::now();
        let ep = Endpoint::Machines;
        assert_eq!(q.check(ep, t0, t0), Verdict::Admit);
        assert_eq!(
            q.check(ep, t0 + Duration::from_secs(10), t0 + Duration::from_secs(10)),
            Verdict::Admit
        );
        let v = q.check(ep, t0 + Duration::from_millis(20_500), t0 + Duration::from_millis(20_500));
        assert_eq!(
            v,
            Verdict::Throttle { retry_after: 40, limit: 2, window: "00:01:00", violation: false }
        );
        // Sent before the 429 could be read (in flight): throttled, not a violation.
        assert!(matches!(
            q.check(ep, t0 + Duration::from_millis(20_550), t0 + Duration::from_millis(20_550)),
            Verdict::Throttle { violation: false, .. }
        ));
        // Before the Retry-After passed: a violation, even for the other endpoint no.
        assert!(matches!(
            q.check(ep, t0 + Duration::from_secs(30), t0 + Duration::from_secs(30)),
            Verdict::Throttle { violation: true, .. }
        ));
        assert_eq!(
            q.check(
                Endpoint::MissingKbs,
                t0 + Duration::from_secs(30),
                t0 + Duration::from_secs(30)
            ),
            Verdict::Admit
        );
        assert_eq!(
            q.check(ep, t0 + Duration::from_millis(60_500), t0 + Duration::from_millis(60_500)),
            Verdict::Admit
        );
        let v = q.check(ep, t0 + Duration::from_secs(200), t0 + Duration::from_secs(200));
        assert_eq!(
            v,
            Verdict::Throttle { retry_after: 3400, limit: 3, window: "01:00:00", violation: false }
        );
    }
}
