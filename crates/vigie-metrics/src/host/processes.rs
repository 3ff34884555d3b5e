//! Processes and threads (collector `processes`): every `/proc/PID/stat`
//! read for its state and its number of threads. node_exporter's
//! `node_processes_threads_state` is left out: it reads the stat of
//! every thread, too much to do every few seconds.

use std::io::Read as _;
use std::mem::MaybeUninit;
use std::path::Path;

use rustix::fs::{Mode, OFlags, RawDir};
use rustix::io::Errno;

use super::HostError;
use crate::{Kind, Sample};

/// Buffers kept between calls.
#[derive(Debug)]
pub struct ProcState {
    dir: Vec<u8>,
    path: String,
    stat: String,
}

impl Default for ProcState {
    fn default() -> Self {
        Self {
            dir: Vec::with_capacity(32 * 1024),
            path: String::with_capacity(32),
            // A process's stat line is a few hundred bytes.
            stat: String::with_capacity(1024),
        }
    }
}

/// What one process's stat says: its state and threads, or `None` when
/// the line is not one of a process.
pub fn parse_stat(stat: &str) -> Option<(u8, u64)> {
    // The command's name may hold anything, `)` included: the fields
    // start after the last one.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    // proc(5): num_threads is field 20, the 18th after the name.
    let threads = fields.nth(16)?.parse().ok()?;
    Some((state, threads))
}

impl ProcState {
    pub fn collect(&mut self, proc: &Path, out: &mut Vec<Sample>) -> Result<(), HostError> {
        let io = |source: std::io::Error| HostError::Read {
            path: proc.to_owned(),
            source,
        };
        let dir = rustix::fs::open(
            proc,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(e.into()))?;
        let (mut pids, mut threads) = (0u64, 0u64);
        let mut states = [0u64; 128];
        let buf: &mut [MaybeUninit<u8>] = self.dir.spare_capacity_mut();
        let mut entries = RawDir::new(&dir, buf);
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(|e| io(e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            self.path.clear();
            self.path.push_str(name);
            self.path.push_str("/stat");
            self.stat.clear();
            let read = rustix::fs::openat(
                &dir,
                self.path.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(std::io::Error::from)
            .and_then(|fd| std::fs::File::from(fd).read_to_string(&mut self.stat));
            match read {
                Ok(_) => {}
                // Gone between the listing and the read.
                Err(e)
                    if e.raw_os_error() == Some(Errno::NOENT.raw_os_error())
                        || e.raw_os_error() == Some(Errno::SRCH.raw_os_error()) =>
                {
                    continue;
                }
                Err(source) => {
                    return Err(HostError::Read {
                        path: proc.join(&self.path),
                        source,
                    });
                }
            }
            let Some((state, n)) = parse_stat(&self.stat) else {
                return Err(HostError::Format {
                    path: proc.join(&self.path),
                    what: "no state or number of threads".to_owned(),
                });
            };
            pids += 1;
            threads += n;
            if let Some(count) = states.get_mut(usize::from(state)) {
                *count += 1;
            }
        }
        out.push(Sample::new(
            "node_processes_pids",
            Kind::Gauge,
            "Number of PIDs",
            pids as f64,
        ));
        out.push(Sample::new(
            "node_processes_threads",
            Kind::Gauge,
            "Allocated threads in system",
            threads as f64,
        ));
        for (state, count) in states.iter().enumerate().filter(|(_, c)| **c > 0) {
            out.push(Sample::labelled(
                "node_processes_state",
                Kind::Gauge,
                "Number of processes in each state.",
                vec![("state", char::from(state as u8).to_string())],
                *count as f64,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_with_parentheses_and_spaces() {
        let stat = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 7 0 300 1000 50 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(stat), Some((b'S', 7)));
        assert_eq!(parse_stat("1234 (x) R 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn counts_a_proc_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let line = |state: char, threads: u32| {
            format!("1 (x) {state} 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 {threads} 0 1 1 1 1\n")
        };
        for (pid, state, threads) in [(1, 'S', 1), (20, 'R', 4), (300, 'S', 2), (4000, 'Z', 1)] {
            std::fs::create_dir(dir.path().join(pid.to_string())).unwrap();
            std::fs::write(dir.path().join(format!("{pid}/stat")), line(state, threads)).unwrap();
        }
        // Not processes.
        std::fs::create_dir(dir.path().join("sys")).unwrap();
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3 4\n").unwrap();
        let mut out = Vec::new();
        ProcState::default().collect(dir.path(), &mut out).unwrap();
        let v = |n: &str, state: Option<&str>| {
            out.iter()
                .find(|s| s.name == n && s.label("state") == state)
                .map(|s| s.value)
        };
        assert_eq!(v("node_processes_pids", None), Some(4.0));
        assert_eq!(v("node_processes_threads", None), Some(8.0));
        assert_eq!(v("node_processes_state", Some("S")), Some(2.0));
        assert_eq!(v("node_processes_state", Some("R")), Some(1.0));
        assert_eq!(v("node_processes_state", Some("Z")), Some(1.0));
        assert_eq!(v("node_processes_state", Some("D")), None);

        std::fs::write(dir.path().join("20/stat"), "garbage").unwrap();
        let e = ProcState::default()
            .collect(dir.path(), &mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("20/stat"), "{e}");
    }
}
