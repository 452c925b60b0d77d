//! A latency histogram in the manner of HdrHistogram: log-linear buckets
//! of microseconds with under 1 % relative error, updated with relaxed
//! atomics. The connection tasks record millions of deliveries; keeping a
//! sample of each would cost memory and a sort, and a lock would cost
//! generator CPU that the measurement must not spend.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of precision below the leading bit: 128 buckets per power of two.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for values up to 2^48 µs.
const BUCKETS: usize = (SUB as usize) * (48 - SUB_BITS as usize + 1);

pub struct Hist {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let top = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = top - SUB_BITS;
    let mantissa = v >> shift; // in [SUB, 2 SUB)
    ((shift as u64 + 1) * SUB + (mantissa - SUB)) as usize
}

/// The middle of the values that fall in bucket `i`.
fn value(i: usize) -> f64 {
    let i = i as u64;
    if i < SUB {
        return i as f64;
    }
    let shift = i / SUB - 1;
    let mantissa = SUB + i % SUB;
    let low = mantissa << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
}

impl Hist {
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value in microseconds.
    pub fn record(&self, micros: u64) {
        let i = index(micros).min(BUCKETS - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let max = self.max.load(Ordering::Relaxed) as f64;
                return value(i).min(max) / 1000.0;
            }
        }
        self.max_ms()
    }

    pub fn max_ms(&self) -> f64 {
        self.max.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_precise() {
        let mut last = 0;
        for v in (0..5_000_000u64).step_by(7) {
            let i = index(v);
            assert!(i >= last, "{v}");
            last = i;
            let back = value(i);
            assert!(
                (back - v as f64).abs() <= (v as f64 / 128.0).max(0.5),
                "{v} -> {back}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let h = Hist::new();
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        assert!((h.quantile_ms(0.5) - 500.0).abs() < 5.0);
        assert!((h.quantile_ms(0.99) - 990.0).abs() < 10.0);
        assert_eq!(h.max_ms(), 1000.0);
        assert!(h.quantile_ms(1.0) <= 1000.0);
    }
}
