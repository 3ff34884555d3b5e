//! `/proc/stat`: time per CPU and mode (collector `cpu`), and the
//! kernel's counters (collector `stat`).
//!
//! Times are in USER_HZ ticks (`sysconf(_SC_CLK_TCK)`), exported in
//! seconds. Only the CPUs online are listed (a hot-unplugged CPU leaves a
//! gap: `cpu0`, `cpu2`), and a CPU's counters may step back a little
//! (per-CPU accounting on some kernels) or restart from zero (a CPU
//! plugged back in): as node_exporter does, a counter never goes back,
//! except when idle time falls by 3 s or more, taken as a new CPU.

use super::number;
use crate::{Kind, Sample};

/// Columns after `cpuN`, in the kernel's order.
const COLUMNS: usize = 10;
/// `node_cpu_seconds_total`'s modes: the first eight columns.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
/// Columns 9 and 10 are `node_cpu_guest_seconds_total`'s.
const GUEST_MODES: [&str; 2] = ["user", "nice"];
const IDLE: usize = 3;
/// Idle time falling by this much means a CPU came back (node_exporter's
/// threshold).
const JUMP_BACK_SECONDS: f64 = 3.0;

const CPU_HELP: &str = "Seconds the CPUs spent in each mode.";
const GUEST_HELP: &str = "Seconds the CPUs spent in guests (VMs) for each mode.";

/// One CPU's ticks: its number, its columns, how many the kernel gave.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cpu {
    id: u32,
    ticks: [u64; COLUMNS],
    columns: usize,
}

/// The CPUs' last counters, kept between calls.
#[derive(Debug, Default)]
pub struct CpuState {
    cpus: Vec<Cpu>,
    /// Scratch for the CPUs read this time.
    read: Vec<Cpu>,
}

/// A `cpuN` line: `None` for other lines (and the `cpu` total).
fn cpu_line(line: &str) -> Option<Result<Cpu, String>> {
    let mut fields = line.split_ascii_whitespace();
    let id = fields.next()?.strip_prefix("cpu")?;
    if id.is_empty() {
        return None;
    }
    Some((|| {
        let id: u32 = number(Some(id), "CPU number")?;
        let mut cpu = Cpu {
            id,
            ticks: [0; COLUMNS],
            columns: 0,
        };
        for (slot, field) in cpu.ticks.iter_mut().zip(fields) {
            *slot = number(Some(field), "CPU time")?;
            cpu.columns += 1;
        }
        // user, nice, system, idle: every kernel since 2.4 has them.
        if cpu.columns < 4 {
            return Err(format!(
                "cpu{id} has {} columns, fewer than user, nice, system and idle",
                cpu.columns
            ));
        }
        Ok(cpu)
    })())
}

impl CpuState {
    /// Read the CPUs of `/proc/stat`'s text, and fold them into the
    /// counters kept.
    pub fn update(&mut self, text: &str, ticks_per_second: f64) -> Result<(), String> {
        self.read.clear();
        for line in text.lines() {
            if let Some(cpu) = cpu_line(line) {
                self.read.push(cpu?);
            }
        }
        if self.read.is_empty() {
            return Err("no cpuN line".to_owned());
        }
        let jump_back = (JUMP_BACK_SECONDS * ticks_per_second) as u64;
        for new in &mut self.read {
            let Some(old) = self.cpus.iter().find(|c| c.id == new.id) else {
                continue;
            };
            if old.ticks[IDLE].saturating_sub(new.ticks[IDLE]) >= jump_back {
                continue; // a CPU plugged back in: start again from its values
            }
            for (n, o) in new.ticks.iter_mut().zip(old.ticks) {
                *n = (*n).max(o);
            }
        }
        // CPUs gone offline are dropped; the new list becomes the kept one.
        std::mem::swap(&mut self.cpus, &mut self.read);
        Ok(())
    }

    /// The counters kept, in seconds.
    pub fn samples(&self, ticks_per_second: f64, out: &mut Vec<Sample>) {
        for cpu in &self.cpus {
            for (mode, ticks) in MODES.iter().zip(cpu.ticks).take(cpu.columns) {
                out.push(cpu_sample(
                    "node_cpu_seconds_total",
                    CPU_HELP,
                    cpu.id,
                    mode,
                    ticks as f64 / ticks_per_second,
                ));
            }
        }
        for cpu in &self.cpus {
            let guest = cpu.ticks.get(MODES.len()..cpu.columns).unwrap_or(&[]);
            for (mode, ticks) in GUEST_MODES.iter().zip(guest) {
                out.push(cpu_sample(
                    "node_cpu_guest_seconds_total",
                    GUEST_HELP,
                    cpu.id,
                    mode,
                    *ticks as f64 / ticks_per_second,
                ));
            }
        }
    }
}

fn cpu_sample(name: &'static str, help: &'static str, cpu: u32, mode: &str, value: f64) -> Sample {
    Sample {
        name,
        help,
        kind: Kind::Counter,
        labels: vec![("cpu", cpu.to_string()), ("mode", mode.to_owned())],
        value,
    }
}

/// The kernel's counters of `/proc/stat`: each line present gives its
/// sample (a kernel or a container's `/proc` may lack some).
pub fn stat_samples(text: &str, out: &mut Vec<Sample>) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        let (name, kind, help) = match key {
            "intr" => (
                "node_intr_total",
                Kind::Counter,
                "Total number of interrupts serviced.",
            ),
            "ctxt" => (
                "node_context_switches_total",
                Kind::Counter,
                "Total number of context switches.",
            ),
            "processes" => ("node_forks_total", Kind::Counter, "Total number of forks."),
            "btime" => (
                "node_boot_time_seconds",
                Kind::Gauge,
                "Node boot time, in unixtime.",
            ),
            "procs_running" => (
                "node_procs_running",
                Kind::Gauge,
                "Number of processes in runnable state.",
            ),
            "procs_blocked" => (
                "node_procs_blocked",
                Kind::Gauge,
                "Number of processes blocked waiting for I/O to complete.",
            ),
            _ => continue,
        };
        let value: u64 = number(fields.next(), key)?;
        out.push(Sample::new(name, kind, help, value as f64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{read, value};

    const HZ: f64 = 100.0;

    fn cpu(text: &str, state: &mut CpuState) -> Vec<Sample> {
        state.update(text, HZ).unwrap();
        let mut out = Vec::new();
        state.samples(HZ, &mut out);
        out
    }

    #[test]
    fn this_machines_stat() {
        let text = read("proc/stat");
        let out = cpu(&text, &mut CpuState::default());
        // Two CPUs, eight modes and two guest modes each.
        assert_eq!(out.len(), 2 * 10);
        let user0 = value(
            &out,
            "node_cpu_seconds_total",
            &[("cpu", "0"), ("mode", "user")],
        );
        assert_eq!(user0, Some(420.49));
        assert_eq!(
            value(
                &out,
                "node_cpu_seconds_total",
                &[("cpu", "1"), ("mode", "steal")]
            ),
            Some(0.65)
        );
        assert_eq!(
            value(
                &out,
                "node_cpu_guest_seconds_total",
                &[("cpu", "1"), ("mode", "nice")]
            ),
            Some(0.0)
        );
        assert!(out.iter().all(|s| s.kind == Kind::Counter));
        // The total line is not a CPU.
        assert!(out.iter().all(|s| s.label("cpu") != Some("")));

        let mut out = Vec::new();
        stat_samples(&text, &mut out).unwrap();
        let v = |n| value(&out, n, &[]);
        assert_eq!(v("node_intr_total"), Some(614_781.0));
        assert_eq!(v("node_context_switches_total"), Some(1_117_989.0));
        assert_eq!(v("node_forks_total"), Some(37016.0));
        assert_eq!(v("node_boot_time_seconds"), Some(1_796_122_030.0));
        assert_eq!(v("node_procs_running"), Some(3.0));
        assert_eq!(v("node_procs_blocked"), Some(0.0));
    }

    #[test]
    fn a_hotplug_gap_keeps_the_kernels_numbers() {
        let text = read("proc/stat-hotplug-gap");
        let out = cpu(&text, &mut CpuState::default());
        let cpus: std::collections::BTreeSet<&str> =
            out.iter().filter_map(|s| s.label("cpu")).collect();
        assert_eq!(cpus.into_iter().collect::<Vec<_>>(), ["0", "2", "3"]);
    }

    #[test]
    fn an_old_kernel_without_steal_and_guest_gives_the_modes_it_has() {
        let text = "cpu  10 0 5 100\ncpu0 10 0 5 100 7\n";
        let out = cpu(text, &mut CpuState::default());
        let modes: Vec<&str> = out.iter().filter_map(|s| s.label("mode")).collect();
        assert_eq!(modes, ["user", "nice", "system", "idle", "iowait"]);
        assert!(out.iter().all(|s| s.name == "node_cpu_seconds_total"));
    }

    #[test]
    fn counters_never_go_back_but_a_cpu_back_online_starts_again() {
        let mut state = CpuState::default();
        cpu("cpu0 1000 0 500 90000 0 0 0 0 0 0\n", &mut state);
        // user steps back a little: kept.
        let out = cpu("cpu0 990 0 510 90100 0 0 0 0 0 0\n", &mut state);
        let v = |out: &[Sample], mode| {
            value(
                out,
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", mode)],
            )
        };
        assert_eq!(v(&out, "user"), Some(10.0));
        assert_eq!(v(&out, "system"), Some(5.1));
        // Unplugged and back between two calls: idle fell by far more
        // than 3 s, so these are a fresh CPU's counters.
        let out = cpu("cpu0 3 0 2 400 0 0 0 0 0 0\n", &mut state);
        assert_eq!(v(&out, "idle"), Some(4.0));
        assert_eq!(v(&out, "user"), Some(0.03));
        // Offline: gone from the output, and forgotten.
        let out = cpu("cpu1 5 0 5 5 0 0 0 0 0 0\n", &mut state);
        assert!(out.iter().all(|s| s.label("cpu") == Some("1")));
        let out = cpu("cpu0 1 0 1 1 0 0 0 0 0 0\n", &mut state);
        assert_eq!(v(&out, "user"), Some(0.01));
    }

    #[test]
    fn bad_lines_are_refused_with_what_is_wrong() {
        let mut state = CpuState::default();
        let e = state.update("cpu0 1 2 x 4\n", HZ).unwrap_err();
        assert!(e.contains("`x` is not a number"), "{e}");
        let e = state.update("cpu0 1 2\n", HZ).unwrap_err();
        assert!(e.contains("fewer than user"), "{e}");
        let e = state.update("intr 5\n", HZ).unwrap_err();
        assert!(e.contains("no cpuN line"), "{e}");
        let e = stat_samples("ctxt\n", &mut Vec::new()).unwrap_err();
        assert!(e.contains("no ctxt"), "{e}");
        // Missing lines are left out, not invented.
        let mut out = Vec::new();
        stat_samples("ctxt 7\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }
}
