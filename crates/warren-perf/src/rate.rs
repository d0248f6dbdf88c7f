//! A token bucket that paces one producer at a fixed rate.
//!
//! Tokens accrue at `rate` per second up to a burst of 10 ms worth (at least
//! two), so a producer that was held back (by its confirm window, say) does
//! not then flood the broker to catch up. The floor of two keeps the rate
//! exact for slow producers: their wake-ups come up to a timer tick late, and
//! a bucket that held a single token would drop that lateness every period. The first token is there at the
//! start time, which may lie in the future: many slow producers started
//! together are given starts spread over one period, so that they publish
//! evenly instead of all in the same instant.

use std::time::{Duration, Instant};

/// Tokens for a fixed number of messages per second.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter whose first message may go at `start`.
    pub fn new(rate: f64, start: Instant) -> Self {
        RateLimiter {
            rate,
            burst: (rate / 100.0).max(2.0),
            tokens: 1.0,
            last: start,
        }
    }

    /// Whole messages that may be sent at `now` (none before the start).
    pub fn available(&mut self, now: Instant) -> u64 {
        if now < self.last {
            return 0;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
        self.tokens as u64
    }

    /// Spends `n` tokens (after `available` allowed them).
    pub fn spend(&mut self, n: u64) {
        self.tokens -= n as f64;
    }

    /// When the next whole token will be there.
    pub fn next_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = Duration::try_from_secs_f64(missing / self.rate).unwrap_or(Duration::MAX);
        self.last
            .checked_add(wait)
            .unwrap_or(self.last + Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_and_caps_the_burst() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1000.0, t0);
        assert_eq!(r.available(t0), 1);
        r.spend(1);
        assert_eq!(r.available(t0), 0);
        assert_eq!(r.next_at(), t0 + Duration::from_millis(1));
        assert_eq!(r.available(t0 + Duration::from_millis(5)), 5);
        r.spend(5);
        assert_eq!(r.available(t0 + Duration::from_secs(60)), 10);
    }

    #[test]
    fn waits_for_a_start_in_the_future() {
        let t0 = Instant::now();
        let start = t0 + Duration::from_millis(30);
        let mut r = RateLimiter::new(10.0, start);
        assert_eq!(r.available(t0), 0);
        assert_eq!(r.next_at(), start);
        assert_eq!(r.available(start), 1);
        r.spend(1);
        assert_eq!(r.next_at(), start + Duration::from_millis(100));
    }

    #[test]
    fn a_slow_producer_woken_on_coarse_ticks_keeps_its_rate() {
        // A timer that fires on whole milliseconds, after the token is due.
        let t0 = Instant::now();
        let mut r = RateLimiter::new(100.0, t0);
        let mut now = t0;
        let mut sent = 0;
        while now < t0 + Duration::from_secs(10) {
            let n = r.available(now);
            r.spend(n);
            sent += n;
            let wait = r.next_at().saturating_duration_since(t0).as_micros() as u64;
            now = t0 + Duration::from_millis(wait.div_ceil(1000) + 1);
        }
        assert!((999..=1001).contains(&sent), "{sent} sent in 10 s at 100/s");
    }
}
