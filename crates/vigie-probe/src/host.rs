//! Probes of this host: disk, memory, load, processes and file ages.

use std::path::Path;
use std::time::SystemTime;

use vigie_config::{DiskProbe, FileAgeProbe, LoadProbe, MemoryProbe, ProcessProbe};
use vigie_core::{ByteSize, Outcome};

pub(crate) fn disk(spec: &DiskProbe) -> Outcome {
    let st = match rustix::fs::statvfs(&spec.path) {
        Ok(s) => s,
        Err(e) => return Outcome::fail(format!("statvfs {}: {e}", spec.path.display())),
    };
    let frsize = st.f_frsize.max(1);
    let used_blocks = st.f_blocks.saturating_sub(st.f_bfree);
    // Like df: the share of what non-root users can use.
    let usable = used_blocks + st.f_bavail;
    let used_pct = percent(used_blocks, usable);
    let free = st.f_bavail.saturating_mul(frsize);
    let inodes_pct = percent(st.f_files.saturating_sub(st.f_ffree), st.f_files);
    let path = spec.path.display();
    let mut problems = Vec::new();
    if let Some(max) = spec.max_used_percent
        && used_pct > max
    {
        problems.push(format!("{path} is {used_pct:.1}% full (more than {max}%)"));
    }
    if let Some(min) = spec.min_free
        && free < min.0
    {
        problems.push(format!(
            "{path} has {} free (less than {min})",
            ByteSize(free)
        ));
    }
    if let Some(max) = spec.max_inodes_used_percent
        && inodes_pct > max
    {
        problems.push(format!(
            "{path} uses {inodes_pct:.1}% of its inodes (more than {max}%)"
        ));
    }
    verdict(&problems, || {
        format!(
            "{path}: {used_pct:.1}% used, {} free",
            ByteSize(free).human()
        )
    })
    .with_metric("used_ratio", used_pct / 100.0)
    .with_metric("free_bytes", free as f64)
    .with_metric("inodes_used_ratio", inodes_pct / 100.0)
}

/// `part` as a percentage of `whole`; 0 of nothing (no swap, an empty
/// filesystem) is 0 %.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A resource check's verdict: every threshold crossed, or the summary.
fn verdict(problems: &[String], summary: impl FnOnce() -> String) -> Outcome {
    if problems.is_empty() {
        Outcome::ok(summary())
    } else {
        Outcome::fail(problems.join("; "))
    }
}

/// Values of `/proc/meminfo`, in bytes.
fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

pub(crate) fn memory(spec: &MemoryProbe) -> Outcome {
    let text = match fs_err::read_to_string("/proc/meminfo") {
        Ok(t) => t,
        Err(e) => return Outcome::fail(e.to_string()),
    };
    memory_from(spec, &text)
}

fn memory_from(spec: &MemoryProbe, text: &str) -> Outcome {
    let (Some(total), Some(available)) = (meminfo(text, "MemTotal"), meminfo(text, "MemAvailable"))
    else {
        return Outcome::fail("/proc/meminfo has no MemTotal or MemAvailable");
    };
    let used_pct = percent(total.saturating_sub(available), total);
    let swap_total = meminfo(text, "SwapTotal").unwrap_or(0);
    let swap_free = meminfo(text, "SwapFree").unwrap_or(0);
    let swap_pct = percent(swap_total.saturating_sub(swap_free), swap_total);
    let mut problems = Vec::new();
    if used_pct > spec.max_used_percent {
        problems.push(format!(
            "memory {used_pct:.1}% used (more than {}%)",
            spec.max_used_percent
        ));
    }
    if let Some(max) = spec.max_swap_used_percent
        && swap_pct > max
    {
        problems.push(format!("swap {swap_pct:.1}% used (more than {max}%)"));
    }
    verdict(&problems, || {
        format!(
            "memory {used_pct:.1}% used, {} available",
            ByteSize(available).human()
        )
    })
    .with_metric("used_ratio", used_pct / 100.0)
    .with_metric("available_bytes", available as f64)
    .with_metric("swap_used_ratio", swap_pct / 100.0)
}

pub(crate) fn load(spec: &LoadProbe) -> Outcome {
    let text = match fs_err::read_to_string("/proc/loadavg") {
        Ok(t) => t,
        Err(e) => return Outcome::fail(e.to_string()),
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    load_from(spec, &text, cpus)
}

fn load_from(spec: &LoadProbe, text: &str, cpus: usize) -> Outcome {
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    let [l1, l5, l15] = v[..] else {
        return Outcome::fail(format!("cannot read /proc/loadavg: {text:?}"));
    };
    let div = if spec.per_cpu { cpus as f64 } else { 1.0 };
    let unit = if spec.per_cpu { " per CPU" } else { "" };
    let mut problems = Vec::new();
    for (name, value, max) in [
        ("load1", l1, spec.max_load1),
        ("load5", l5, spec.max_load5),
        ("load15", l15, spec.max_load15),
    ] {
        if let Some(max) = max
            && value / div > max
        {
            problems.push(format!("{name} {:.2}{unit} (more than {max})", value / div));
        }
    }
    verdict(&problems, || {
        format!("load {l1:.2} {l5:.2} {l15:.2} on {cpus} CPUs")
    })
    .with_metric("load1", l1)
    .with_metric("load5", l5)
    .with_metric("load15", l15)
}

/// Whether `/proc/PID` is a live (not zombie) process.
fn alive(pid: &str) -> bool {
    fs_err::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state.is_some_and(|c| c != 'Z' && c != 'X'))
}

pub(crate) fn process(spec: &ProcessProbe) -> Outcome {
    if let Some(pidfile) = &spec.pidfile {
        let pid = match fs_err::read_to_string(pidfile) {
            Ok(p) => p.trim().to_owned(),
            Err(e) => return Outcome::fail(format!("{e}")),
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Outcome::fail(format!("{} does not hold a process id", pidfile.display()));
        }
        return if alive(&pid) {
            Outcome::ok(format!(
                "process {pid} (from {}) is running",
                pidfile.display()
            ))
            .with_metric("count", 1.0)
        } else {
            Outcome::fail(format!(
                "process {pid} (from {}) is not running",
                pidfile.display()
            ))
            .with_metric("count", 0.0)
        };
    }
    let Some(name) = &spec.name else {
        return Outcome::fail("process probe needs `name` or `pidfile`");
    };
    let entries = match fs_err::read_dir("/proc") {
        Ok(e) => e,
        Err(e) => return Outcome::fail(e.to_string()),
    };
    let mut count = 0u32;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if matches_name(&entry.path(), name) && alive(pid) {
            count += 1;
        }
    }
    let outcome = if count < spec.min {
        Outcome::fail(format!(
            "{count} `{name}` process(es) running, expected at least {}",
            spec.min
        ))
    } else if spec.max.is_some_and(|m| count > m) {
        Outcome::fail(format!(
            "{count} `{name}` process(es) running, expected at most {}",
            spec.max.unwrap_or(0)
        ))
    } else {
        Outcome::ok(format!("{count} `{name}` process(es) running"))
    };
    outcome.with_metric("count", f64::from(count))
}

fn matches_name(proc_dir: &Path, name: &str) -> bool {
    if std::fs::read_to_string(proc_dir.join("comm")).is_ok_and(|c| c.trim_end() == name) {
        return true;
    }
    // comm is cut at 15 bytes; the program's file name is not.
    std::fs::read(proc_dir.join("cmdline")).is_ok_and(|c| {
        let argv0 = c.split(|&b| b == 0).next().unwrap_or_default();
        let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
        base == name.as_bytes()
    })
}

/// The most entries a `file_age` walk looks at, so a huge tree cannot
/// stall the probe.
const WALK_LIMIT: usize = 200_000;

pub(crate) fn file_age(spec: &FileAgeProbe) -> Outcome {
    let meta = match fs_err::metadata(&spec.path) {
        Ok(m) => m,
        Err(e) => return Outcome::fail(e.to_string()),
    };
    let newest = if meta.is_dir() {
        match newest_in(&spec.path, spec.recursive) {
            Some(found) => found,
            None => return Outcome::fail(format!("{} holds no file", spec.path.display())),
        }
    } else {
        match meta.modified() {
            Ok(t) => (t, spec.path.clone()),
            Err(e) => return Outcome::fail(e.to_string()),
        }
    };
    let age = SystemTime::now()
        .duration_since(newest.0)
        .unwrap_or_default();
    let shown = vigie_core::Duration::from(std::time::Duration::from_secs(age.as_secs()));
    let outcome = if age > spec.max_age.std() {
        Outcome::fail(format!(
            "{} is {shown} old, more than {}",
            newest.1.display(),
            spec.max_age
        ))
    } else {
        Outcome::ok(format!("{} is {shown} old", newest.1.display()))
    };
    outcome.with_metric("age_seconds", age.as_secs_f64())
}

fn newest_in(dir: &Path, recursive: bool) -> Option<(SystemTime, std::path::PathBuf)> {
    let mut best: Option<(SystemTime, std::path::PathBuf)> = None;
    let mut stack = vec![dir.to_owned()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > WALK_LIMIT {
                return best;
            }
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                if recursive {
                    stack.push(entry.path());
                }
            } else if ft.is_file()
                && let Ok(m) = entry.metadata().and_then(|m| m.modified())
                && best.as_ref().is_none_or(|(t, _)| m > *t)
            {
                best = Some((m, entry.path()));
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_thresholds() {
        let text = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        let spec = MemoryProbe {
            max_used_percent: 80.0,
            max_swap_used_percent: Some(10.0),
        };
        let o = memory_from(&spec, text);
        assert!(o.ok, "{}", o.message);
        assert_eq!(o.metric("used_ratio"), Some(0.75));
        let spec = MemoryProbe {
            max_used_percent: 70.0,
            max_swap_used_percent: None,
        };
        assert!(!memory_from(&spec, text).ok);
        assert!(!memory_from(&spec, "garbage").ok);
    }

    #[test]
    fn load_thresholds_per_cpu() {
        let spec = LoadProbe {
            max_load1: None,
            max_load5: Some(1.0),
            max_load15: None,
            per_cpu: true,
        };
        assert!(load_from(&spec, "3.00 3.90 1.00 1/100 42", 4).ok);
        let o = load_from(&spec, "3.00 4.40 1.00 1/100 42", 4);
        assert!(!o.ok);
        assert!(o.message.contains("load5 1.10 per CPU"), "{}", o.message);
        assert!(!load_from(&spec, "", 4).ok);
    }

    #[test]
    fn this_process_is_found() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let spec = ProcessProbe {
            name: Some(me.trim().to_owned()),
            pidfile: None,
            min: 1,
            max: None,
        };
        assert!(process(&spec).ok);
        let spec = ProcessProbe {
            name: Some("no-such-process-xyz".into()),
            pidfile: None,
            min: 1,
            max: None,
        };
        assert!(!process(&spec).ok);
    }
}
