//! CPU time of this process (from `getrusage`) and, optionally, of another
//! process on the same machine such as the broker (from `/proc/PID/stat`).

/// CPU seconds (user plus system) consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSample {
    pub tool: f64,
    pub broker: Option<f64>,
}

/// Reads CPU times; `broker_pid` names the other process to watch.
#[derive(Debug, Clone)]
pub struct CpuSampler {
    broker_pid: Option<u32>,
    ticks_per_second: f64,
}

impl CpuSampler {
    pub fn new(broker_pid: Option<u32>) -> Self {
        CpuSampler {
            broker_pid,
            ticks_per_second: ticks_per_second(),
        }
    }

    pub fn sample(&self) -> CpuSample {
        CpuSample {
            tool: own_cpu_seconds(),
            broker: self
                .broker_pid
                .and_then(|pid| pid_cpu_seconds(pid, self.ticks_per_second)),
        }
    }
}

#[cfg(unix)]
fn own_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete `rusage` into the pointer it is
    // given; the struct is only read when the call reports success.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return 0.0;
    }
    // SAFETY: initialised by the successful call above (and zeroed before).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(not(unix))]
fn own_cpu_seconds() -> f64 {
    0.0
}

#[cfg(unix)]
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(not(unix))]
fn ticks_per_second() -> f64 {
    100.0
}

/// utime + stime of `pid`, from fields 14 and 15 of `/proc/PID/stat`
/// (counted after the parenthesised command name, which may hold spaces).
fn pid_cpu_seconds(pid: u32, ticks_per_second: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|ticks| ticks as f64 / ticks_per_second)
}

fn parse_stat(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let stat = "4242 (beam.smp (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 30 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(1801));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_cpu_time_grows() {
        let sampler = CpuSampler::new(Some(std::process::id()));
        let a = sampler.sample();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = sampler.sample();
        assert!(b.tool >= a.tool);
        assert!(b.broker.is_some());
    }
}
