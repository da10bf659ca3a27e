//! Sliding minute and hour windows over the admission times of one endpoint, with a per-minute
//! limit that adapts: lowered when the server throttles below the configured quota, raised back
//! by a tenth of the configured quota per quiet minute.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{HOUR, MINUTE, ServerQuota};
use crate::config::QuotaConfig;

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
    /// The last 429 or the last raise: the limit creeps up a minute after either.
    last_change: Instant,
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

    /// A quiet minute since the last change raises a lowered limit by a tenth of the configured one.
    fn creep_up(&self, state: &mut State, now: Instant) {
        if state.per_minute < self.configured_minute
            && now.duration_since(state.last_change) >= MINUTE + self.margin
        {
            let step = (self.configured_minute / 10).max(1);
            state.per_minute = (state.per_minute + step).min(self.configured_minute);
            state.last_change = now;
            tracing::info!(
                per_minute = state.per_minute,
                "Raised the request rate after a quiet minute"
            );
        }
    }

    /// Pauses for `delay` and lowers the limit; returns the per-minute limit before and after.
    pub(super) async fn throttled(
        &self,
        delay: Duration,
        server: Option<ServerQuota>,
    ) -> (usize, usize) {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let until = now + delay;
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        let before = state.per_minute;
        match server {
            Some(q) if q.window <= MINUTE => {
                state.per_minute = state.per_minute.min(q.calls.max(1) as usize)
            }
            Some(q) => {
                state.per_hour =
                    state.per_hour.min(q.calls.max(1) as usize).min(self.configured_hour)
            }
            None => {
                let used = state
                    .admitted
                    .iter()
                    .rev()
                    .take_while(|t| now.duration_since(**t) < MINUTE)
                    .count();
                state.per_minute = state.per_minute.min((used * 3 / 4).max(1));
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
    async fn a_stated_server_quota_becomes_the_limit_then_creeps_back() {
        let w = window(100);
        let stated = ServerQuota { calls: 30, window: MINUTE };
        assert_eq!(w.throttled(Duration::from_secs(5), Some(stated)).await, (100, 30));
        tokio::time::sleep(MINUTE).await;
        w.admit().await;
        assert_eq!(w.effective_per_minute().await, 40, "a quiet minute adds a tenth of 100");
        w.throttled(Duration::from_secs(1), Some(stated)).await;
        assert_eq!(w.effective_per_minute().await, 30);
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
    async fn without_a_stated_quota_the_rate_drops_to_three_quarters_of_the_last_minute() {
        let w = window(100);
        for _ in 0..40 {
            w.admit().await;
        }
        assert_eq!(w.throttled(Duration::from_secs(1), None).await, (100, 30));
        // The pause holds callers, and the lowered limit caps the minute.
        let start = Instant::now();
        w.admit().await;
        assert!(
            start.elapsed() >= MINUTE - Duration::from_millis(1),
            "40 calls in the window exceed 30"
        );
    }
}
