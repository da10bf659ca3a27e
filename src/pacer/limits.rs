//! The limits one endpoint's windows admit calls within, and how 429s move them: within bounds that
//! no handful of 429s can push them past.
//! - a quota the 429's message states ("Maximum allowed 30 per 00:01:00") becomes the limit for
//!   an hour, and creeps back towards the configured one after that;
//! - 429s that state no quota (Defender also throttles "by CPU", well under the call quota) lower
//!   the per-minute limit by a quarter only when they keep coming: [`persistent`] of them within a
//!   minute, at most once a minute;
//! - no limit goes below a quarter of the configured one ([`floor`]), and each creeps back by a
//!   tenth of the configured one per quiet minute.
//!
//! The pause a 429 imposes, and the windows themselves, are `window`'s.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::QuotaConfig;

pub(super) const MINUTE: Duration = Duration::from_secs(60);
pub(super) const HOUR: Duration = Duration::from_secs(3600);

/// A quota the server stated in a 429's message ("Maximum allowed 30 per 00:01:00").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerQuota {
    pub calls: u32,
    pub window: Duration,
}

/// How long a quota the server stated holds before the limit creeps back above it.
const STATED_HOLDS: Duration = HOUR;

/// The lowest a limit is taken by throttling: a quarter of the configured one.
fn floor(configured: usize) -> usize {
    (configured / 4).max(1)
}

/// Unstated 429s within a minute that show the server really is at its limit: a twentieth of the
/// configured per-minute quota, at least three.
fn persistent(configured_minute: usize) -> usize {
    (configured_minute / 20).max(3)
}

pub(super) struct Limits {
    configured_minute: usize,
    configured_hour: usize,
    margin: Duration,
    /// The limits in force: the configured ones, or lower after throttling.
    pub(super) per_minute: usize,
    pub(super) per_hour: usize,
    /// The last 429 or the last raise: the limits creep up a minute after either.
    last_change: Instant,
    /// Until when a quota the server stated caps the limits' creeping back.
    stated_until: Option<Instant>,
    /// The unstated 429s since the per-minute limit was last lowered for them.
    unstated: VecDeque<Instant>,
    /// When unstated 429s last lowered the per-minute limit.
    lowered_at: Option<Instant>,
}

impl Limits {
    /// The configured limits (at least one call each).
    pub(super) fn new(quota: &QuotaConfig, now: Instant) -> Self {
        let (per_minute, per_hour) =
            (quota.per_minute.max(1) as usize, quota.per_hour.max(1) as usize);
        Self {
            configured_minute: per_minute,
            configured_hour: per_hour,
            margin: quota.margin,
            per_minute,
            per_hour,
            last_change: now,
            stated_until: None,
            unstated: VecDeque::new(),
            lowered_at: None,
        }
    }

    /// A quiet minute since the last change raises lowered limits by a tenth of the configured
    /// ones, unless a quota the server stated still holds.
    pub(super) fn creep_up(&mut self, now: Instant) {
        let lowered =
            self.per_minute < self.configured_minute || self.per_hour < self.configured_hour;
        if !lowered
            || now.duration_since(self.last_change) < MINUTE + self.margin
            || self.stated_until.is_some_and(|until| now < until)
        {
            return;
        }
        let raise =
            |limit: usize, configured: usize| (limit + (configured / 10).max(1)).min(configured);
        self.per_minute = raise(self.per_minute, self.configured_minute);
        self.per_hour = raise(self.per_hour, self.configured_hour);
        self.last_change = now;
        tracing::info!(
            per_minute = self.per_minute,
            per_hour = self.per_hour,
            "Raised the request rate after a quiet minute"
        );
    }

    /// After a 429 at `now`: lowers the limits as the module docs say; returns the per-minute
    /// limit before and after.
    pub(super) fn throttled(
        &mut self,
        now: Instant,
        server: Option<ServerQuota>,
    ) -> (usize, usize) {
        let before = self.per_minute;
        match server {
            Some(q) => {
                let stated = q.calls.max(1) as usize;
                if q.window <= MINUTE {
                    let lowest = floor(self.configured_minute);
                    self.per_minute = self.per_minute.min(stated.max(lowest));
                } else {
                    let lowest = floor(self.configured_hour);
                    self.per_hour = self.per_hour.min(stated.max(lowest));
                }
                self.stated_until = now.checked_add(STATED_HOLDS);
            }
            None => {
                self.unstated.push_back(now);
                while self.unstated.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
                    self.unstated.pop_front();
                }
                let quiet_since_lowered =
                    self.lowered_at.is_none_or(|t| now.duration_since(t) >= MINUTE);
                if self.unstated.len() >= persistent(self.configured_minute) && quiet_since_lowered
                {
                    let lowered = self.per_minute * 3 / 4;
                    self.per_minute = lowered.max(floor(self.configured_minute));
                    self.unstated.clear();
                    self.lowered_at = Some(now);
                }
            }
        }
        self.last_change = now;
        (before, self.per_minute)
    }
}
