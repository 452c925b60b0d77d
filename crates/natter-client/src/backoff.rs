//! Exponential backoff with jitter, for reconnecting the event stream and
//! retrying sends.
//!
//! Exists so that a server restart does not meet every client of a
//! deployment reconnecting in the same millisecond: each wait grows
//! geometrically up to a ceiling and is shortened by a random fraction.

use std::time::Duration;

/// How retries are spaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Each wait is this many times the one before (before jitter).
    pub multiplier: f64,
    /// Up to this fraction of each wait is taken off at random (0 to 1).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.3,
        }
    }
}

impl Backoff {
    /// A fresh sequence of waits.
    pub(crate) fn start(&self) -> Attempts {
        Attempts {
            policy: self.clone(),
            attempt: 0,
        }
    }
}

/// The waits of one run of retries.
#[derive(Debug, Clone)]
pub(crate) struct Attempts {
    policy: Backoff,
    attempt: u32,
}

impl Attempts {
    /// The wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let p = &self.policy;
        let factor = p.multiplier.max(1.0).powi(self.attempt.min(64) as i32);
        let base = p.initial.as_secs_f64() * factor;
        let capped = base.min(p.max.as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        let jitter = p.jitter.clamp(0.0, 1.0) * rand::random::<f64>();
        Duration::from_secs_f64((capped * (1.0 - jitter)).max(0.0))
    }

    /// Back to the first wait, after a success.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_ceiling() {
        let mut a = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.0,
        }
        .start();
        let waits: Vec<_> = (0..6).map(|_| a.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        a.reset();
        assert_eq!(a.next_wait().as_millis(), 100);
    }

    #[test]
    fn jitter_only_shortens() {
        let mut a = Backoff {
            jitter: 0.5,
            ..Backoff::default()
        }
        .start();
        for _ in 0..100 {
            let w = a.next_wait();
            assert!(w <= Backoff::default().max);
        }
    }
}
