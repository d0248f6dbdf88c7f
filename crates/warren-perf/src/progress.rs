//! The line printed to stderr every second while a run goes on.

use std::time::{Duration, Instant};

use crate::run_stats::Totals;
use crate::{CpuSample, Histogram};

/// How often a line is printed.
const EVERY: Duration = Duration::from_secs(1);

/// The last printed state, to compute rates from.
pub struct Progress {
    start: Instant,
    last_at: Instant,
    last: Totals,
    last_cpu: CpuSample,
    quiet: bool,
}

impl Progress {
    pub fn new(now: Instant, cpu: CpuSample, quiet: bool) -> Self {
        Progress {
            start: now,
            last_at: now,
            last: Totals::default(),
            last_cpu: cpu,
            quiet,
        }
    }

    /// Whether a line is due.
    pub fn due(&self, now: Instant) -> bool {
        now.duration_since(self.last_at) >= EVERY
    }

    /// Prints one line of rates since the previous one; `phase` names what
    /// the run is doing, `latency` holds the latencies of the interval.
    pub fn print(
        &mut self,
        now: Instant,
        phase: &str,
        totals: Totals,
        cpu: CpuSample,
        latency: Option<&Histogram>,
    ) {
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| grouped((a.saturating_sub(b) as f64 / dt).round() as u64);
        let mut line = format!(
            "{:>6.1}s {}published {:>10}/s  confirmed {:>10}/s  delivered {:>10}/s",
            now.duration_since(self.start).as_secs_f64(),
            if phase.is_empty() {
                String::new()
            } else {
                format!("{phase} ")
            },
            rate(totals.published, self.last.published),
            rate(totals.confirmed, self.last.confirmed),
            rate(totals.delivered, self.last.delivered),
        );
        if let Some(h) = latency {
            line.push_str(&format!(
                "  latency p50 {} p99 {}",
                micros(h.percentile(0.5)),
                micros(h.percentile(0.99))
            ));
        }
        line.push_str(&format!(
            "  cpu {:.0}%",
            100.0 * (cpu.tool - self.last_cpu.tool) / dt
        ));
        if let (Some(now_b), Some(then_b)) = (cpu.broker, self.last_cpu.broker) {
            line.push_str(&format!(
                "  broker cpu {:.0}%",
                100.0 * (now_b - then_b) / dt
            ));
        }
        if !self.quiet {
            eprintln!("{line}");
        }
        self.last_at = now;
        self.last = totals;
        self.last_cpu = cpu;
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nanoseconds shown in the most readable unit.
pub fn micros(ns: u64) -> String {
    if ns >= 10_000_000 {
        format!("{:.0}ms", ns as f64 / 1e6)
    } else if ns >= 1_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.0}µs", ns as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(micros(450_000), "450µs");
        assert_eq!(micros(2_500_000), "2.50ms");
        assert_eq!(micros(25_000_000), "25ms");
    }
}
