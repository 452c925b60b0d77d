//! Throttling of failed log-ins per client IP.
//!
//! Failures are counted per IP with a GCRA limiter (`governor`); once an IP
//! runs out, every log-in from it is refused until the limiter allows one
//! again. The account itself is never locked, so an attacker cannot lock a
//! user out by guessing passwords from elsewhere.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

/// Past this many tracked IPs, stale entries are pruned on the next failure.
const PRUNE_AT: usize = 10_000;

impl LoginThrottle {
    pub fn new(failures_per_minute: u32) -> Self {
        let n = NonZeroU32::new(failures_per_minute.max(1)).expect("at least one");
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` if this IP must wait before trying again.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let blocked = self.blocked.lock().expect("throttle lock");
        match blocked.get(&ip) {
            Some(until) => {
                let now = Instant::now();
                if *until > now {
                    Err(*until - now)
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        }
    }

    /// Records a failed attempt from this IP.
    pub fn failed(&self, ip: IpAddr) {
        if let Err(not_until) = self.limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(self.clock.now());
            let mut blocked = self.blocked.lock().expect("throttle lock");
            if blocked.len() >= PRUNE_AT {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                self.limiter.retain_recent();
            }
            blocked.insert(ip, Instant::now() + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_one_ip_after_its_budget() {
        let t = LoginThrottle::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check(a).is_ok());
            t.failed(a);
        }
        // the fourth failure exhausts the budget
        t.failed(a);
        let wait = t.check(a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(t.check(b).is_ok(), "other IPs are unaffected");
    }
}
