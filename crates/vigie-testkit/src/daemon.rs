//! A `vigie run` started by a test, stopped by signals.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::Env;

pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr_path: std::path::PathBuf,
}

impl Env {
    /// Start `vigie run` and wait until its HTTP server answers.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with(|_| {})
    }

    /// `daemon`, with `setup` applied to the command first (an extra
    /// variable in its environment).
    pub fn daemon_with(&self, setup: impl FnOnce(&mut std::process::Command)) -> Daemon {
        let stderr_path = self
            .path()
            .join(format!("daemon-{}.log", std::process::id() ^ rand_small()));
        let log = std::fs::File::create(&stderr_path).expect("log file");
        let addr_file = self.state_dir().join("http.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = self.cmd(&["run"]);
        cmd.env("VIGIE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        setup(&mut cmd);
        let child = cmd.spawn().expect("start vigie run");
        let mut d = Daemon {
            child: Some(child),
            addr: "127.0.0.1:0".parse().expect("addr"),
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse()
            {
                d.addr = addr;
                return d;
            }
            if let Some(status) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("vigie run exited early ({status}):\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "vigie run did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn rand_small() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

impl Daemon {
    pub fn pid(&self) -> Pid {
        let id = self.child.as_ref().expect("running").id();
        Pid::from_raw(id as i32).expect("pid")
    }

    pub fn signal(&self, sig: Signal) {
        kill_process(self.pid(), sig).expect("signal vigie");
    }

    /// Wait for the daemon to exit; returns its exit code and how long it took.
    pub fn wait(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "vigie did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < limit,
                "no {needle:?} in the log within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A plain HTTP/1.1 request to the daemon: (status, body).
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        crate::servers::http_request(self.addr, method, path, headers)
    }

    /// A `POST` of `body` to `path`, as `curl --data-binary` sends it.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        crate::servers::http_request_with_body(self.addr, "POST", path, headers, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
