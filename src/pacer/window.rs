//! Sliding minute and hour windows over the admission times of one endpoint, with limits that
//! adapt to what the server says, within bounds that no handful of 429s can push them past:
//! - a 429 pauses the endpoint for its delay, at most [`MAX_PAUSE`];
//! - a quota the 429's message states ("Maximum allowed 30 per 00:01:00") becomes the limit for
//!   an hour, and creeps back towards the configured one after that;
//! - 429s that state no quota (Defender also throttles "by CPU", well under the call quota) lower
//!   the per-minute limit by a quarter only when they keep coming: [`persistent`] of them within a
//!   minute, at most once a minute;
//! - no limit goes below a quarter of the configured one ([`floor`]), and each creeps back by a
//!   tenth of the configured one per quiet minute.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
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

/// The longest pause a 429 can impose, whatever it asked for.
pub(super) const MAX_PAUSE: Duration = HOUR;
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

pub(super) struct Window {
    configured_minute: usize,
    configured_hour: usize,
    margin: Duration,
    state: Mutex<State>,
}

struct State {
    /// Admission times of the last hour (plus margin), oldest first.
    admitted: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// The limits in force: the configured ones, or lower after throttling.
    per_minute: usize,
    per_hour: usize,
    /// The last 429 or the last raise: the limits creep up a minute after either.
    last_change: Instant,
    /// Until when a quota the server stated caps the limits' creeping back.
    stated_until: Option<Instant>,
    /// The unstated 429s since the per-minute limit was last lowered for them.
    unstated: VecDeque<Instant>,
    /// When unstated 429s last lowered the per-minute limit.
    lowered_at: Option<Instant>,
}

impl Window {
    pub(super) fn new(quota: &QuotaConfig) -> Self {
        let (per_minute, per_hour) =
            (quota.per_minute.max(1) as usize, quota.per_hour.max(1) as usize);
        Self {
            configured_minute: per_minute,
            configured_hour: per_hour,
            margin: quota.margin,
            state: Mutex::new(State {
                admitted: VecDeque::new(),
                paused_until: None,
                per_minute,
                per_hour,
                last_change: Instant::now(),
                stated_until: None,
                unstated: VecDeque::new(),
                lowered_at: None,
            }),
        }
    }

    pub(super) async fn admit(&self) {
        loop {
            let wait_until = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                self.creep_up(&mut state, now);
                let at = self.earliest(&mut state, now);
                if at <= now {
                    state.admitted.push_back(now);
                    return;
                }
                at
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// The earliest instant at which one more call fits both windows and no pause is in force.
    fn earliest(&self, state: &mut State, now: Instant) -> Instant {
        let hour = HOUR + self.margin;
        while state.admitted.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            state.admitted.pop_front();
        }
        let n = state.admitted.len();
        let mut at = now;
        if n >= state.per_minute {
            at = at.max(state.admitted[n - state.per_minute] + MINUTE + self.margin);
        }
        if n >= state.per_hour {
            at = at.max(state.admitted[n - state.per_hour] + hour);
        }
        if let Some(until) = state.paused_until {
            at = at.max(until);
        }
        at
    }

    /// A quiet minute since the last change raises lowered limits by a tenth of the configured
    /// ones, unless a quota the server stated still holds.
    fn creep_up(&self, state: &mut State, now: Instant) {
        let lowered =
            state.per_minute < self.configured_minute || state.per_hour < self.configured_hour;
        if !lowered
            || now.duration_since(state.last_change) < MINUTE + self.margin
            || state.stated_until.is_some_and(|until| now < until)
        {
            return;
        }
        let raise =
            |limit: usize, configured: usize| (limit + (configured / 10).max(1)).min(configured);
        state.per_minute = raise(state.per_minute, self.configured_minute);
        state.per_hour = raise(state.per_hour, self.configured_hour);
        state.last_change = now;
        tracing::info!(
            per_minute = state.per_minute,
            per_hour = state.per_hour,
            "Raised the request rate after a quiet minute"
        );
    }

    /// Pauses for `delay` (at most [`MAX_PAUSE`]) and lowers the limits as the module docs say;
    /// returns the per-minute limit before and after.
    pub(super) async fn throttled(
        &self,
        delay: Duration,
        server: Option<ServerQuota>,
    ) -> (usize, usize) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let until = now.checked_add(delay.min(MAX_PAUSE)).unwrap_or(now);
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        let before = state.per_minute;
        match server {
            Some(q) => {
                let stated = q.calls.max(1) as usize;
                if q.window <= MINUTE {
                    let lowest = floor(self.configured_minute);
                    state.per_minute = state.per_minute.min(stated.max(lowest));
                } else {
                    let lowest = floor(self.configured_hour);
                    state.per_hour = state.per_hour.min(stated.max(lowest));
                }
                state.stated_until = now.checked_add(STATED_HOLDS);
            }
            None => {
                state.unstated.push_back(now);
                while state.unstated.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
                    state.unstated.pop_front();
                }
                let quiet_since_lowered =
                    state.lowered_at.is_none_or(|t| now.duration_since(t) >= MINUTE);
                if state.unstated.len() >= persistent(self.configured_minute) && quiet_since_lowered
                {
                    let lowered = state.per_minute * 3 / 4;
                    state.per_minute = lowered.max(floor(self.configured_minute));
                    state.unstated.clear();
                    state.lowered_at = Some(now);
                }
            }
        }
        state.last_change = now;
        (before, state.per_minute)
    }

    /// How many calls the windows can admit within `horizon` from now: a full minute quota per
    /// started minute, capped by what the hour window leaves once the calls older than
    /// `horizon` - 1 h have expired. An upper bound: it assumes calls take no time.
    pub(super) async fn budget(&self, horizon: Duration) -> usize {
        let state = self.state.lock().await;
        let now = Instant::now();
        let minutes = horizon.as_secs_f64() / MINUTE.as_secs_f64();
        let by_minute = state.per_minute.saturating_mul(minutes.ceil().max(1.0) as usize);
        let still_counted = match (now + horizon).checked_sub(HOUR + self.margin) {
            Some(expired_before) => state.admitted.iter().filter(|t| **t > expired_before).count(),
            None => state.admitted.len(),
        };
        let hours = (horizon.as_secs_f64() / HOUR.as_secs_f64()).ceil().max(1.0) as usize;
        let by_hour = state.per_hour.saturating_mul(hours).saturating_sub(still_counted);
        by_minute.min(by_hour)
    }

    pub(super) async fn effective_per_minute(&self) -> u32 {
        self.state.lock().await.per_minute as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(per_minute: u32) -> Window {
        Window::new(&QuotaConfig {
            per_minute,
            per_hour: 100_000,
            concurrency: 8,
            margin: Duration::ZERO,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_stated_server_quota_becomes_the_limit_for_an_hour_then_creeps_back() {
        let w = window(100);
        let stated = ServerQuota { calls: 30, window: MINUTE };
        assert_eq!(w.throttled(Duration::from_secs(5), Some(stated)).await, (100, 30));
        tokio::time::sleep(10 * MINUTE).await;
        w.admit().await;
        assert_eq!(w.effective_per_minute().await, 30, "the stated quota holds");
        tokio::time::sleep(HOUR).await;
        w.admit().await;
        assert_eq!(w.effective_per_minute().await, 40, "then a quiet minute adds a tenth of 100");
        w.throttled(Duration::from_secs(1), Some(stated)).await;
        assert_eq!(w.effective_per_minute().await, 30);
        let tiny = ServerQuota { calls: 1, window: MINUTE };
        w.throttled(Duration::from_secs(1), Some(tiny)).await;
        assert_eq!(w.effective_per_minute().await, 25, "never below a quarter of 100");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_minute_quotas_and_what_the_hour_leaves() {
        let w = Window::new(&QuotaConfig {
            per_minute: 100,
            per_hour: 1500,
            concurrency: 8,
            margin: Duration::ZERO,
        });
        assert_eq!(w.budget(Duration::from_secs(30)).await, 100);
        assert_eq!(w.budget(Duration::from_secs(150)).await, 300, "three started minutes");
        assert_eq!(w.budget(Duration::from_secs(7200)).await, 3000, "two hours of 1,500");
        for _ in 0..1400 {
            w.admit().await;
        }
        assert_eq!(
            w.budget(Duration::from_secs(30 * 60)).await,
            100,
            "the hour window has 100 left"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_handful_of_unstated_429s_pause_but_keep_the_rate() {
        let w = window(1200);
        for _ in 0..10 {
            for _ in 0..100 {
                w.admit().await;
            }
            let start = Instant::now();
            assert_eq!(w.throttled(Duration::from_secs(3), None).await, (1200, 1200));
            w.admit().await;
            assert!(start.elapsed() >= Duration::from_secs(3), "paused as told");
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        assert_eq!(w.effective_per_minute().await, 1200);
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_unstated_429s_lower_the_rate_once_a_minute_down_to_a_quarter() {
        let w = window(100);
        let mut limits = Vec::new();
        for _ in 0..12 {
            for _ in 0..5 {
                w.throttled(Duration::from_secs(1), None).await;
            }
            limits.push(w.effective_per_minute().await);
            tokio::time::sleep(MINUTE).await;
        }
        assert_eq!(&limits[..6], &[75, 56, 42, 31, 25, 25], "{limits:?}");
        assert!(limits.iter().all(|l| *l >= 25), "never below a quarter: {limits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_delays_pause_at_most_an_hour() {
        let w = window(100);
        w.throttled(Duration::MAX, None).await;
        let start = Instant::now();
        w.admit().await;
        assert_eq!(start.elapsed(), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stated_hourly_quota_of_one_holds_an_hour_at_a_quarter_then_recovers() {
        let w = Window::new(&QuotaConfig {
            per_minute: 100,
            per_hour: 1500,
            concurrency: 8,
            margin: Duration::ZERO,
        });
        let stated = ServerQuota { calls: 1, window: HOUR };
        w.throttled(Duration::from_secs(1), Some(stated)).await;
        assert_eq!(w.state.lock().await.per_hour, 375, "a quarter of 1,500, not 1");
        tokio::time::sleep(HOUR + MINUTE).await;
        for _ in 0..10 {
            w.admit().await;
            tokio::time::sleep(MINUTE).await;
        }
        assert_eq!(w.state.lock().await.per_hour, 1500, "back to the configured quota");
    }
}
