//! Memory and CPU of the processes under test, from `/proc`, and facts about the machine.

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size since the process started, KiB (`VmHWM`).
    pub hwm_kib: u64,
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
}

/// Clock ticks per second of `/proc/<pid>/stat` (USER_HZ; 100 on every mainstream Linux).
const CLOCK_TICKS: f64 = 100.0;

/// A process, or a process and its children (PostgreSQL: the postmaster and its backends), summed.
pub fn sample_tree(pid: u32, tree: bool) -> Option<ProcSample> {
    let mut total = sample(pid)?;
    if tree {
        for child in children(pid) {
            if let Some(s) = sample(child) {
                total.rss_kib += s.rss_kib;
                total.hwm_kib += s.hwm_kib;
                total.cpu_secs += s.cpu_secs;
            }
        }
    }
    Some(total)
}

/// The direct children of a process.
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                stat.rfind(')').and_then(|at| stat.get(at + 2..)).and_then(|rest| rest.split_whitespace().nth(1))
                    == Some(parent.to_string().as_str())
            })
        })
        .collect()
}

/// Busy and total CPU time of the whole machine so far, in clock ticks (`/proc/stat`).
pub fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else { return (0, 0) };
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it start after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")?, cpu_secs: ticks as f64 / CLOCK_TICKS })
}

/// The facts a result is meaningless without.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub nproc: usize,
    pub mem_total_mib: u64,
    pub mem_available_mib: u64,
    pub cpu_model: String,
    pub kernel: String,
    pub load_avg: String,
}

pub fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    Machine {
        nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        mem_total_mib: mem("MemTotal:"),
        mem_available_mib: mem("MemAvailable:"),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        load_avg: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = sample(std::process::id()).expect("/proc of this process");
        assert!(me.rss_kib > 0 && me.hwm_kib >= me.rss_kib);
        assert!(machine().nproc >= 1);
        let (busy, total) = machine_cpu();
        assert!(total > 0 && busy <= total);
        assert!(sample_tree(1, true).is_some());
    }
}
