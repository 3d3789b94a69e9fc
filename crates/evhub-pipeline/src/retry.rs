//! Retry policy: exponential backoff with jitter, bounded by attempts and by time.

use std::time::{Duration, Instant, SystemTime};

use evhub_core::Error;
use rand::Rng;

/// How retriable failures are retried before an event goes to the dead-letter hub.
///
/// An event is retried while its error [is retriable](Error::is_retriable), fewer than
/// `max_attempts` attempts failed and less than `max_elapsed` passed since its first failure.
/// The wait before retry `n` (1-based) is `initial_backoff * multiplier^(n-1)`, capped at
/// `max_backoff`, minus a random share of up to `jitter` of it (so retries of many events do
/// not hit a recovering service in lockstep).
///
/// ```
/// use std::time::Duration;
/// use evhub_pipeline::RetryPolicy;
/// let policy = RetryPolicy::default()
///     .with_max_attempts(3)
///     .with_backoff(Duration::from_millis(10), Duration::from_millis(40));
/// assert!(policy.backoff(1) <= Duration::from_millis(10));
/// assert!(policy.backoff(10) <= Duration::from_millis(40));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per event, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Growth factor of the wait per failed attempt.
    pub multiplier: f64,
    /// Share of each wait (0.0–1.0) that is randomly left out.
    pub jitter: f64,
    /// No retry starts later than this after the event's first failure.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Default of [`max_attempts`](Self::max_attempts) (the first attempt included).
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

    /// No retries: the first failure is final.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the first and the longest wait.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets how long after the first failure retries may still start.
    pub fn with_max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// Sets the random share left out of each wait (clamped to 0.0–1.0).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The wait after `failures` failed attempts (1 = after the first failure).
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(63) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let capped = base.min(self.max_backoff.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let cut = if jitter > 0.0 {
            rand::thread_rng().gen_range(0.0..=jitter)
        } else {
            0.0
        };
        Duration::from_secs_f64(capped * (1.0 - cut))
    }

    pub(crate) fn validate(&self) -> evhub_core::Result<()> {
        if self.max_attempts == 0 {
            return Err(Error::config("retry: `max_attempts` must be at least 1"));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(Error::config("retry: `multiplier` must be at least 1.0"));
        }
        Ok(())
    }
}

/// The failure history of one event, written into dead-letter headers.
#[derive(Debug)]
pub(crate) struct Failures {
    pub attempts: u32,
    pub first_at: SystemTime,
    pub first_instant: Instant,
    pub last_at: SystemTime,
    pub last_error: Error,
}

impl Failures {
    pub fn record(slot: &mut Option<Failures>, error: Error) -> &mut Failures {
        let now = SystemTime::now();
        match slot {
            Some(f) => {
                f.attempts += 1;
                f.last_at = now;
                f.last_error = error;
            }
            None => {
                *slot = Some(Failures {
                    attempts: 1,
                    first_at: now,
                    first_instant: Instant::now(),
                    last_at: now,
                    last_error: error,
                });
            }
        }
        match slot {
            Some(f) => f,
            None => unreachable!("set above"),
        }
    }

    /// Whether another attempt is allowed by `policy`.
    pub fn may_retry(&self, policy: &RetryPolicy) -> bool {
        self.last_error.is_retriable()
            && self.attempts < policy.max_attempts
            && self.first_instant.elapsed() < policy.max_elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped_and_jittered() {
        let p = RetryPolicy::default()
            .with_backoff(Duration::from_millis(100), Duration::from_millis(1000))
            .with_jitter(0.0);
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(5), Duration::from_millis(1000));
        assert_eq!(p.backoff(500), Duration::from_millis(1000));
        let j = p.with_jitter(0.5);
        for _ in 0..100 {
            let d = j.backoff(3);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }

    #[test]
    fn attempts_and_time_bound_retries() {
        let p = RetryPolicy::default().with_max_attempts(3);
        let retriable = || Error::new(evhub_core::ErrorKind::Unavailable, "down");
        let mut slot = None;
        assert!(Failures::record(&mut slot, retriable()).may_retry(&p));
        assert!(Failures::record(&mut slot, retriable()).may_retry(&p));
        assert!(!Failures::record(&mut slot, retriable()).may_retry(&p));
        let mut slot = None;
        assert!(!Failures::record(&mut slot, Error::invalid_input("bad")).may_retry(&p));
        let timed = p.with_max_elapsed(Duration::ZERO);
        let mut slot = None;
        assert!(!Failures::record(&mut slot, retriable()).may_retry(&timed));
    }
}
