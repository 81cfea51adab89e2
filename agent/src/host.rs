//! Host figures reported in gossip and the cluster health API: CPU busy percentage
//! (from `/proc/stat`) and used percentage of the data dir's file system (`statvfs`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Cumulative CPU time counters of the whole host, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

/// Samples the host; CPU percentages are over the time since the previous sample.
pub struct HostSampler {
    data_dir: PathBuf,
    previous: Mutex<Option<CpuTimes>>,
}

impl HostSampler {
    /// A sampler for the file system holding `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        let sampler = HostSampler {
            data_dir: data_dir.to_path_buf(),
            previous: Mutex::new(None),
        };
        // Primes the CPU counters so the first real sample covers a real interval.
        let _ = sampler.cpu_pct();
        sampler
    }

    /// CPU busy percentage since the previous call (0 on the first call or when
    /// `/proc/stat` is unavailable).
    pub fn cpu_pct(&self) -> f32 {
        let Some(now) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_cpu_times(&text))
        else {
            return 0.0;
        };
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let pct = previous.map_or(0.0, |before| busy_pct(before, now));
        *previous = Some(now);
        pct
    }

    /// Used percentage of the data dir's file system, as `df` computes it (0 when unknown).
    pub fn disk_pct(&self) -> f32 {
        disk_used_pct(&self.data_dir).unwrap_or(0.0)
    }
}

/// Busy share of the ticks elapsed between two samples, in percent.
fn busy_pct(before: CpuTimes, after: CpuTimes) -> f32 {
    let total = after.total.saturating_sub(before.total);
    if total == 0 {
        return 0.0;
    }
    let busy = after.busy.saturating_sub(before.busy);
    (busy as f64 * 100.0 / total as f64) as f32
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal ...; idle and iowait are not busy. Guest time is already counted in user.
fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Used percentage of the file system holding `path`: used / (used + available to
/// unprivileged users), like `df`.
fn disk_used_pct(path: &Path) -> Option<f32> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we own; the path is a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as f64;
    let used = (stat.f_blocks as f64 - stat.f_bfree as f64) * block;
    let available = stat.f_bavail as f64 * block;
    if used + available <= 0.0 {
        return None;
    }
    Some((used * 100.0 / (used + available)) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_cpu_line() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 1 2 3 4\nintr 1 2\n";
        let t = parse_cpu_times(stat).expect("parsed");
        assert_eq!(t.total, 1000);
        assert_eq!(t.busy, 160);
        assert_eq!(parse_cpu_times("intr 1\n"), None);
    }

    #[test]
    fn busy_percentage_is_over_the_interval() {
        let a = CpuTimes {
            busy: 100,
            total: 1000,
        };
        let b = CpuTimes {
            busy: 150,
            total: 1200,
        };
        assert!((busy_pct(a, b) - 25.0).abs() < 1e-3);
        assert_eq!(busy_pct(b, b), 0.0);
    }

    #[test]
    fn reads_the_real_host() {
        let dir = tempfile::tempdir().unwrap();
        let sampler = HostSampler::new(dir.path());
        let disk = sampler.disk_pct();
        assert!((0.0..=100.0).contains(&disk), "disk {disk}");
        let cpu = sampler.cpu_pct();
        assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
    }
}
