//! A file-event queue that overflows makes the job rescan, never exit.
//! A test binary of its own: it fills the kernel's inotify queue of a
//! stopped `vigie sync`, and no other test's watcher runs beside it.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use vigie_testkit::{Env, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_vigie");

#[test]
fn an_event_overflow_rescans_and_loses_nothing() {
    let env = Env::new(BIN);
    let shm = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let (src, dst) = (shm.path().join("src"), shm.path().join("dst"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("first"), "1").unwrap();
    env.config(&format!(
        "[[sync]]\nname = \"web\"\nfrom = \"{}\"\nto = \"{}\"\ndelay = \"50ms\"\n",
        src.display(),
        dst.display()
    ));
    let mut job = env
        .cmd(&["sync", "web"])
        .env("VIGIE_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), || dst.join("first").exists());
    // Stopped, it reads no events: the kernel queues as many as it keeps
    // for one watcher, then drops the rest and says so.
    let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let n = max + 1000;
    let pid = rustix::process::Pid::from_raw(job.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    for i in 0..n {
        std::fs::write(src.join(format!("f{i}")), i.to_string()).unwrap();
    }
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    wait_until(Duration::from_mins(1), || {
        std::fs::read_dir(&dst).map_or(0, Iterator::count) == n + 1
    });
    assert_eq!(
        std::fs::read_to_string(dst.join(format!("f{}", n - 1))).unwrap(),
        (n - 1).to_string()
    );
    assert!(job.try_wait().unwrap().is_none(), "the job exited");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    job.wait().unwrap();
    let mut log = String::new();
    job.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(log.contains("file events overflowed; rescanning"), "{log}");
}
