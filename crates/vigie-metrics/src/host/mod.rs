//! The host's metrics, read from `/proc` and `statvfs`, under
//! node_exporter's names, labels, units and types, so that dashboards
//! made for node_exporter ("Node Exporter Full") read vigie's `/metrics`.
//!
//! [`HostCollector::collect`] runs every collector and returns
//! [`Sample`]s; a collector that fails leaves its samples out and says
//! so in `node_scrape_collector_success{collector}` (and in the log, once
//! when it starts failing and once when it recovers), as node_exporter
//! does. The collectors, named as node_exporter's:
//!
//! | collector | source | families |
//! |---|---|---|
//! | `cpu` | `/proc/stat` | `node_cpu_seconds_total{cpu,mode}`, `node_cpu_guest_seconds_total{cpu,mode}` |
//! | `stat` | `/proc/stat` | `node_intr_total`, `node_context_switches_total`, `node_forks_total`, `node_boot_time_seconds`, `node_procs_running`, `node_procs_blocked` |
//! | `loadavg` | `/proc/loadavg` | `node_load1`, `node_load5`, `node_load15` |
//! | `meminfo` | `/proc/meminfo` | `node_memory_<Field>_bytes` (and `node_memory_HugePages_*`) |
//! | `vmstat` | `/proc/vmstat` | `node_vmstat_{pgpgin,pgpgout,pswpin,pswpout,pgfault,pgmajfault,oom_kill}` |
//! | `diskstats` | `/proc/diskstats` | `node_disk_*{device}` |
//! | `netdev` | `/proc/net/dev` | `node_network_{receive,transmit}_*_total{device}` |
//! | `filesystem` | `/proc/self/mountinfo`, `statvfs` | `node_filesystem_*{device,device_error,fstype,mountpoint}` |
//! | `filefd` | `/proc/sys/fs/file-nr` | `node_filefd_allocated`, `node_filefd_maximum` |
//! | `processes` | `/proc/PID/stat`, `/proc/sys/kernel` | `node_processes_{pids,threads,state,max_processes,max_threads}` |
//! | `time`, `uname` | the clock, `uname(2)` | `node_time_seconds`, `node_uname_info` |
//!
//! Failed systemd units ([`systemd`]) come from `systemctl`, a program:
//! this crate parses its output, and the caller (vigie-web) runs it,
//! bounded in time, through `vigie-net`'s command runner.
//!
//! A collector is called every few seconds: it reads files into buffers
//! it keeps, and allocates nothing but the samples it returns.

mod diskstats;
mod filesystem;
mod meminfo;
mod misc;
mod netdev;
mod processes;
mod stat;
pub mod systemd;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Kind, Sample};

/// How long `statvfs` of one mount point may take before the mount is
/// reported as stuck (`node_filesystem_device_error` 1, with
/// `device_error="mountpoint timeout"`) and skipped until that call
/// returns. Short, since a healthy mount answers in microseconds and a
/// mount marked stuck by a slow moment is back at the next collection.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a collector produced nothing: the file it reads and what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: {what}; this kernel's format is not one vigie reads (please report it with the file's content)",
        path.display()
    )]
    Format { path: PathBuf, what: String },
}

/// The files the collectors read, under a `/proc` root.
#[derive(Debug)]
struct Files {
    proc: PathBuf,
    stat: PathBuf,
    loadavg: PathBuf,
    meminfo: PathBuf,
    vmstat: PathBuf,
    diskstats: PathBuf,
    net_dev: PathBuf,
    mountinfo: PathBuf,
    file_nr: PathBuf,
    pid_max: PathBuf,
    threads_max: PathBuf,
}

impl Files {
    fn new(proc: &Path) -> Self {
        Self {
            proc: proc.to_owned(),
            stat: proc.join("stat"),
            loadavg: proc.join("loadavg"),
            meminfo: proc.join("meminfo"),
            vmstat: proc.join("vmstat"),
            diskstats: proc.join("diskstats"),
            net_dev: proc.join("net/dev"),
            mountinfo: proc.join("self/mountinfo"),
            file_nr: proc.join("sys/fs/file-nr"),
            pid_max: proc.join("sys/kernel/pid_max"),
            threads_max: proc.join("sys/kernel/threads-max"),
        }
    }
}

/// Read `path` into `buf` (emptied first).
fn read_into(path: &Path, buf: &mut String) -> Result<(), HostError> {
    buf.clear();
    // std's `File::open` converts a short path on the stack: nothing is
    // allocated on the way (fs-err would keep a copy of the path).
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(drop)
        .map_err(|source| HostError::Read {
            path: path.to_owned(),
            source,
        })
}

/// A parser's complaint, turned into the file's error.
fn format_error(path: &Path) -> impl FnOnce(String) -> HostError + '_ {
    move |what| HostError::Format {
        path: path.to_owned(),
        what,
    }
}

/// A number of a kernel's file, or what it is not.
fn number<T: std::str::FromStr>(field: Option<&str>, what: &str) -> Result<T, String> {
    let field = field.ok_or_else(|| format!("no {what}"))?;
    field
        .parse()
        .map_err(|_| format!("{what} `{field}` is not a number"))
}

/// The collectors, named as node_exporter's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Collector {
    Cpu,
    Stat,
    Loadavg,
    Meminfo,
    Vmstat,
    Diskstats,
    Netdev,
    Filesystem,
    Filefd,
    Processes,
    Time,
    Uname,
}

impl Collector {
    /// In the order they run and are reported.
    const ALL: [Self; 12] = [
        Self::Cpu,
        Self::Stat,
        Self::Loadavg,
        Self::Meminfo,
        Self::Vmstat,
        Self::Diskstats,
        Self::Netdev,
        Self::Filesystem,
        Self::Filefd,
        Self::Processes,
        Self::Time,
        Self::Uname,
    ];

    /// Its `collector` label.
    const fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Stat => "stat",
            Self::Loadavg => "loadavg",
            Self::Meminfo => "meminfo",
            Self::Vmstat => "vmstat",
            Self::Diskstats => "diskstats",
            Self::Netdev => "netdev",
            Self::Filesystem => "filesystem",
            Self::Filefd => "filefd",
            Self::Processes => "processes",
            Self::Time => "time",
            Self::Uname => "uname",
        }
    }
}

/// Collects the host's metrics; keep one and call [`collect`](Self::collect)
/// as often as needed (it keeps counters monotonic across CPU hotplug and
/// remembers stuck mounts between calls).
#[derive(Debug)]
pub struct HostCollector {
    files: Files,
    buf: String,
    cpu: stat::CpuState,
    filesystem: filesystem::FsState,
    processes: processes::ProcState,
    /// The collectors failing at the last call, with their error, so
    /// that a failure is logged when it starts and when it ends.
    failing: Vec<(&'static str, String)>,
    /// How many samples the last call returned: the next one reserves it.
    last_len: usize,
}

impl Default for HostCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl HostCollector {
    /// The collectors of this host (`/proc`).
    pub fn new() -> Self {
        Self::with_proc("/proc")
    }

    /// The collectors reading another `/proc` (a copy of one in tests;
    /// `statvfs` still asks this host about the mount points listed).
    pub fn with_proc(proc: impl AsRef<Path>) -> Self {
        Self {
            files: Files::new(proc.as_ref()),
            // Room for the largest file read (mountinfo, /proc/stat on a
            // big machine grow past it once, then stay).
            buf: String::with_capacity(64 * 1024),
            cpu: stat::CpuState::default(),
            filesystem: filesystem::FsState::new(MOUNT_TIMEOUT),
            processes: processes::ProcState::default(),
            failing: Vec::new(),
            last_len: 0,
        }
    }

    /// Give up on a mount point's `statvfs` after `timeout` instead of
    /// [`MOUNT_TIMEOUT`].
    #[must_use]
    pub fn mount_timeout(mut self, timeout: Duration) -> Self {
        self.filesystem = filesystem::FsState::new(timeout);
        self
    }

    /// Every collector's samples, then `node_scrape_collector_*`.
    pub fn collect(&mut self) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.last_len);
        self.collect_into(&mut out);
        out
    }

    /// [`collect`](Self::collect), appending to `out`.
    pub fn collect_into(&mut self, out: &mut Vec<Sample>) {
        let start_len = out.len();
        let mut report = [(false, 0.0); Collector::ALL.len()];
        for (i, collector) in Collector::ALL.into_iter().enumerate() {
            let started = Instant::now();
            let before = out.len();
            let result = self.run(collector, out);
            if result.is_err() {
                // Nothing half-read: a failed collector says so, and only that.
                out.truncate(before);
            }
            report[i] = (result.is_ok(), started.elapsed().as_secs_f64());
            self.note(collector.name(), result.err());
        }
        for (collector, (ok, seconds)) in Collector::ALL.into_iter().zip(report) {
            let name = collector.name();
            out.push(scrape_sample(
                "node_scrape_collector_duration_seconds",
                "node_exporter: Duration of a collector scrape.",
                name,
                seconds,
            ));
            out.push(scrape_sample(
                "node_scrape_collector_success",
                "node_exporter: Whether a collector succeeded.",
                name,
                f64::from(u8::from(ok)),
            ));
        }
        self.last_len = out.len() - start_len;
    }

    /// The collectors failing at the last call and why.
    pub fn failing(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.failing.iter().map(|(n, e)| (*n, e.as_str()))
    }

    fn run(&mut self, collector: Collector, out: &mut Vec<Sample>) -> Result<(), HostError> {
        let f = &self.files;
        match collector {
            Collector::Cpu => {
                read_into(&f.stat, &mut self.buf)?;
                let ticks = rustix::param::clock_ticks_per_second() as f64;
                self.cpu
                    .update(&self.buf, ticks)
                    .map_err(format_error(&f.stat))?;
                self.cpu.samples(ticks, out);
            }
            Collector::Stat => {
                read_into(&f.stat, &mut self.buf)?;
                stat::stat_samples(&self.buf, out).map_err(format_error(&f.stat))?;
            }
            Collector::Loadavg => {
                read_into(&f.loadavg, &mut self.buf)?;
                misc::loadavg_samples(&self.buf, out).map_err(format_error(&f.loadavg))?;
            }
            Collector::Meminfo => {
                read_into(&f.meminfo, &mut self.buf)?;
                meminfo::samples(&self.buf, out).map_err(format_error(&f.meminfo))?;
            }
            Collector::Vmstat => {
                read_into(&f.vmstat, &mut self.buf)?;
                misc::vmstat_samples(&self.buf, out).map_err(format_error(&f.vmstat))?;
            }
            Collector::Diskstats => {
                read_into(&f.diskstats, &mut self.buf)?;
                diskstats::samples(&self.buf, out).map_err(format_error(&f.diskstats))?;
            }
            Collector::Netdev => {
                read_into(&f.net_dev, &mut self.buf)?;
                netdev::samples(&self.buf, out).map_err(format_error(&f.net_dev))?;
            }
            Collector::Filesystem => {
                read_into(&f.mountinfo, &mut self.buf)?;
                self.filesystem
                    .collect(&self.buf, out)
                    .map_err(format_error(&f.mountinfo))?;
            }
            Collector::Filefd => {
                read_into(&f.file_nr, &mut self.buf)?;
                misc::filefd_samples(&self.buf, out).map_err(format_error(&f.file_nr))?;
            }
            Collector::Processes => {
                self.processes.collect(&f.proc, out)?;
                for (path, name, help) in [
                    (
                        &f.pid_max,
                        "node_processes_max_processes",
                        "Number of max PIDs limit",
                    ),
                    (
                        &f.threads_max,
                        "node_processes_max_threads",
                        "Limit of threads in the system",
                    ),
                ] {
                    read_into(path, &mut self.buf)?;
                    let max: u64 = number(self.buf.split_whitespace().next(), "limit")
                        .map_err(format_error(path))?;
                    out.push(Sample::new(name, Kind::Gauge, help, max as f64));
                }
            }
            Collector::Time => misc::time_samples(out),
            Collector::Uname => misc::uname_samples(out),
        }
        Ok(())
    }

    /// Log a collector's failure when it starts, and its recovery.
    fn note(&mut self, name: &'static str, error: Option<HostError>) {
        let was = self.failing.iter().position(|(n, _)| *n == name);
        match (was, error) {
            (None, Some(e)) => {
                let e = e.to_string();
                tracing::warn!(collector = name, error = %e, "a host metrics collector failed; its metrics are left out until it recovers");
                self.failing.push((name, e));
            }
            (Some(i), None) => {
                self.failing.swap_remove(i);
                tracing::info!(collector = name, "a host metrics collector works again");
            }
            (Some(i), Some(e)) => self.failing[i].1 = e.to_string(),
            (None, None) => {}
        }
    }
}

fn scrape_sample(name: &'static str, help: &'static str, collector: &str, value: f64) -> Sample {
    Sample {
        name,
        help,
        kind: Kind::Gauge,
        labels: vec![("collector", collector.to_owned())],
        value,
    }
}

/// A counter of one device (`{device}`).
fn device_sample(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    device: &str,
    value: f64,
) -> Sample {
    Sample {
        name,
        help,
        kind,
        labels: vec![("device", device.to_owned())],
        value,
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    /// A fixture of `tests/fixtures/`.
    pub fn read(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The value of the sample named `name` with `labels` among its labels.
    pub fn value(samples: &[crate::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixture::value;

    /// A copy of the fixtures' `/proc`, without the files named.
    fn proc_without(missing: &[&str]) -> tempfile::TempDir {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc");
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "stat",
            "loadavg",
            "meminfo",
            "vmstat",
            "diskstats",
            "net/dev",
            "self/mountinfo",
            "sys/fs/file-nr",
            "sys/kernel/pid_max",
            "sys/kernel/threads-max",
        ] {
            if missing.contains(&file) {
                continue;
            }
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from.join(file), to).unwrap();
        }
        dir
    }

    fn success(samples: &[Sample], collector: &str) -> Option<f64> {
        value(
            samples,
            "node_scrape_collector_success",
            &[("collector", collector)],
        )
    }

    #[test]
    fn every_collector_reads_a_proc_of_fixtures() {
        let proc = proc_without(&[]);
        let mut c = HostCollector::with_proc(proc.path());
        let samples = c.collect();
        for c in Collector::ALL {
            assert_eq!(success(&samples, c.name()), Some(1.0), "{c:?}");
        }
        assert_eq!(c.failing().count(), 0);
        assert_eq!(value(&samples, "node_load1", &[]), Some(2.89));
        assert_eq!(
            value(&samples, "node_processes_max_processes", &[]),
            Some(
                fixture::read("proc/sys/kernel/pid_max")
                    .trim()
                    .parse()
                    .unwrap()
            )
        );
        // No PID directories in the copy.
        assert_eq!(value(&samples, "node_processes_pids", &[]), Some(0.0));
        assert!(
            samples
                .iter()
                .any(|s| s.name == "node_filesystem_size_bytes"
                    && s.label("mountpoint") == Some("/"))
        );
    }

    #[test]
    fn a_failing_collector_says_so_and_the_others_go_on() {
        let proc = proc_without(&["diskstats"]);
        let mut c = HostCollector::with_proc(proc.path());
        let samples = c.collect();
        assert_eq!(success(&samples, "diskstats"), Some(0.0));
        assert!(samples.iter().all(|s| !s.name.starts_with("node_disk_")));
        assert_eq!(success(&samples, "meminfo"), Some(1.0));
        let failing: Vec<(&str, &str)> = c.failing().collect();
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(failing[0].0, "diskstats");
        assert!(
            failing[0].1.contains("diskstats: No such file"),
            "{failing:?}"
        );

        // A file the kernel would not write: nothing half-read is kept.
        std::fs::write(
            proc.path().join("meminfo"),
            "MemTotal: 1 kB\nMemFree: x kB\n",
        )
        .unwrap();
        let samples = c.collect();
        assert_eq!(success(&samples, "meminfo"), Some(0.0));
        assert!(samples.iter().all(|s| !s.name.starts_with("node_memory_")));
        let failing: Vec<(&str, &str)> = c.failing().collect();
        assert!(
            failing.iter().any(|(n, e)| *n == "meminfo"
                && e.contains("MemFree `x` is not a number")
                && e.contains("please report")),
            "{failing:?}"
        );

        // Back: the collector works again and is no longer failing.
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/proc/diskstats"),
            proc.path().join("diskstats"),
        )
        .unwrap();
        let samples = c.collect();
        assert_eq!(success(&samples, "diskstats"), Some(1.0));
        assert!(c.failing().all(|(n, _)| n != "diskstats"));
    }
}
