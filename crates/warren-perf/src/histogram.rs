//! A fixed-size log-linear histogram for latencies in nanoseconds.
//!
//! Values below 128 get a bucket each; above that every power of two is cut
//! into 64 equal buckets, so a reported percentile is within 1/64 (1.6 %) of
//! the true value. Recording is an index computation and an increment; the
//! whole range of `u64` fits in 3,776 buckets (30 KiB).

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * HALF) as usize;

/// Counts of values by bucket, plus exact count, sum, minimum and maximum.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.count += 1;
        self.sum += value as u128;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Forgets every value.
    pub fn reset(&mut self) {
        if self.count != 0 {
            self.counts.fill(0);
        }
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value recorded (0 when empty).
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value below which a fraction `q` (0..=1) of the recorded values
    /// lie: the middle of the bucket holding the value of rank
    /// `ceil(q * count)`, kept within the recorded minimum and maximum.
    /// 0 when empty.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (idx, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds(idx);
                let mid = low + (high - low - 1) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros();
    let mantissa = value >> (exp - (SUB_BITS - 1));
    (SUB + (exp - SUB_BITS) as u64 * HALF + (mantissa - HALF)) as usize
}

/// The values a bucket holds: `low..high`, `high` exclusive (saturating at
/// `u64::MAX` for the last bucket).
fn bounds(idx: usize) -> (u64, u64) {
    let idx = idx as u64;
    if idx < SUB {
        return (idx, idx + 1);
    }
    let k = idx - SUB;
    let exp = SUB_BITS as u64 + k / HALF;
    let mantissa = HALF + k % HALF;
    let shift = exp - (SUB_BITS as u64 - 1);
    let low = mantissa << shift;
    let high = ((mantissa as u128 + 1) << shift).min(u64::MAX as u128) as u64;
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: u64, expected: u64) -> bool {
        (actual as f64 - expected as f64).abs() <= expected as f64 / 64.0
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = Histogram::new();
        assert_eq!(
            (h.count(), h.min(), h.max(), h.percentile(0.5)),
            (0, 0, 0, 0)
        );
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(0.5), 50);
        assert_eq!(h.percentile(0.99), 99);
        assert_eq!(h.percentile(0.999), 100);
        assert_eq!(h.percentile(1.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        assert_eq!((h.min(), h.max()), (1, 100));
        assert_eq!(h.mean(), 50.5);
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_within_the_bucket_precision() {
        let mut h = Histogram::new();
        for v in 1..=1_000_000u64 {
            h.record(v * 1000);
        }
        assert!(
            close(h.percentile(0.5), 500_000_000),
            "{}",
            h.percentile(0.5)
        );
        assert!(close(h.percentile(0.99), 990_000_000));
        assert!(close(h.percentile(0.999), 999_000_000));
        assert_eq!(h.max(), 1_000_000_000);
        assert_eq!(h.min(), 1000);
    }

    #[test]
    fn a_few_slow_values_show_in_the_tail_only() {
        let mut h = Histogram::new();
        for _ in 0..9_900 {
            h.record(100_000);
        }
        for _ in 0..100 {
            h.record(50_000_000);
        }
        assert!(close(h.percentile(0.5), 100_000));
        assert!(close(h.percentile(0.99), 100_000));
        assert!(close(h.percentile(0.995), 50_000_000));
        assert_eq!(h.percentile(0.999), 50_000_000);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut both = Histogram::new();
        for v in 0..5000u64 {
            let x = v * v * 37 % 10_000_019;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            both.record(x);
        }
        a.merge(&b);
        for q in [0.1, 0.5, 0.9, 0.99, 0.999] {
            assert_eq!(a.percentile(q), both.percentile(q));
        }
        assert_eq!(
            (a.count(), a.min(), a.max()),
            (both.count(), both.min(), both.max())
        );
        a.reset();
        assert_eq!((a.count(), a.percentile(0.5)), (0, 0));
    }

    #[test]
    fn every_value_falls_inside_its_bucket() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for x in [v - 1, v, v + 1, v * 3 / 2] {
                let idx = index(x);
                assert!(idx < BUCKETS);
                let (low, high) = bounds(idx);
                assert!(low <= x && x < high, "{x} not in {low}..{high}");
                assert!(high - low <= (low / 64).max(1), "bucket of {x} too wide");
            }
            v = v * 2 + 1;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }
}
