//! Sliding minute and hour windows over the admission times of one endpoint: a call is admitted
//! once both windows have room for it, under the limits in force (`limits`: the configured ones,
//! or lower after 429s), and no pause is in force. A 429 pauses the endpoint for its delay, at
//! most [`MAX_PAUSE`], and moves the limits.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::limits::{HOUR, Limits, MINUTE, ServerQuota};
use crate::config::QuotaConfig;

/// The longest pause a 429 can impose, whatever it asked for.
pub(super) const MAX_PAUSE: Duration = HOUR;

pub(super) struct Window {
    margin: Duration,
    state: Mutex<State>,
}

struct State {
    /// Admission times of the last hour (plus margin), oldest first.
    admitted: VecDeque<Instant>,
    paused_until: Option<Instant>,
    limits: Limits,
}

impl Window {
    pub(super) fn new(quota: &QuotaConfig) -> Self {
        Self {
            margin: quota.margin,
            state: Mutex::new(State {
                admitted: VecDeque::new(),
                paused_until: None,
                limits: Limits::new(quota, Instant::now()),
            }),
        }
    }

    pub(super) async fn admit(&self) {
        loop {
            let wait_until = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                state.limits.creep_up(now);
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
        let (per_minute, per_hour) = (state.limits.per_minute, state.limits.per_hour);
        let mut at = now;
        if n >= per_minute {
            at = at.max(state.admitted[n - per_minute] + MINUTE + self.margin);
        }
        if n >= per_hour {
            at = at.max(state.admitted[n - per_hour] + hour);
        }
        if let Some(until) = state.paused_until {
            at = at.max(until);
        }
        at
    }

    /// Pauses for `delay` (at most [`MAX_PAUSE`]) and lowers the limits as `limits` says;
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
        state.limits.throttled(now, server)
    }

    /// The end of the pause a 429 put in force, if it is not over.
    pub(super) async fn paused_until(&self) -> Option<Instant> {
        let state = self.state.lock().await;
        state.paused_until.filter(|until| *until > Instant::now())
    }

    /// How many calls the windows can admit within `horizon` from now: a full minute quota per
    /// started minute, capped by what the hour window leaves once the calls older than
    /// `horizon` - 1 h have expired. An upper bound: it assumes calls take no time.
    pub(super) async fn budget(&self, horizon: Duration) -> usize {
        let state = self.state.lock().await;
        let now = Instant::now();
        let minutes = horizon.as_secs_f64() / MINUTE.as_secs_f64();
        let by_minute = state.limits.per_minute.saturating_mul(minutes.ceil().max(1.0) as usize);
        let still_counted = match (now + horizon).checked_sub(HOUR + self.margin) {
            Some(expired_before) => state.admitted.iter().filter(|t| **t > expired_before).count(),
            None => state.admitted.len(),
        };
        let hours = (horizon.as_secs_f64() / HOUR.as_secs_f64()).ceil().max(1.0) as usize;
        let by_hour = state.limits.per_hour.saturating_mul(hours).saturating_sub(still_counted);
        by_minute.min(by_hour)
    }

    pub(super) async fn effective_per_minute(&self) -> u32 {
        self.state.lock().await.limits.per_minute as u32
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
        assert_eq!(w.state.lock().await.limits.per_hour, 375, "a quarter of 1,500, not 1");
        tokio::time::sleep(HOUR + MINUTE).await;
        for _ in 0..10 {
            w.admit().await;
            tokio::time::sleep(MINUTE).await;
        }
        assert_eq!(w.state.lock().await.limits.per_hour, 1500, "back to the configured quota");
    }
}
