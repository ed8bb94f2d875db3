//! Child processes of the test bed: each in its own process group, logging to a file, and
//! all of them reaped by a watchdog when the process that started them ends — however it
//! ends (a panicking test, SIGKILL, Ctrl-C). Only our own PIDs are ever signalled.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A running child process of the test bed.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Mutex<Child>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.lock().expect("child lock").id()
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().expect("child lock").try_wait(), Ok(None))
    }

    /// SIGTERM to the process group, then SIGKILL after `grace`. kube-apiserver and etcd do
    /// not always exit on SIGTERM alone, so the kill is not optional.
    pub fn stop(&self, grace: Duration) {
        let mut child = self.child.lock().expect("child lock");
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        signal_group(child.id(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(child.id(), "KILL");
        let _ = child.wait();
    }

    /// SIGKILL at once: used by tests that crash the operator on purpose.
    pub fn kill(&self) {
        let mut child = self.child.lock().expect("child lock");
        signal_group(child.id(), "KILL");
        let _ = child.wait();
    }

    /// The last `lines` lines of the process's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

fn signal_group(pgid: u32, signal: &str) {
    // `kill` the command, not libc: the crate forbids unsafe code.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts processes and records their process groups for the watchdog.
pub struct Launcher {
    run_dir: PathBuf,
    pgid_file: PathBuf,
}

impl Launcher {
    /// Creates the launcher and its watchdog: a small shell process in a group of its own that
    /// waits for this process to end, then TERMs and KILLs every group listed in the file.
    pub fn new(run_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(run_dir)?;
        let pgid_file = run_dir.join("pgids");
        File::create(&pgid_file)?;
        let script = r#"
parent=$1; list=$2
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
for g in $(cat "$list"); do kill -TERM -- "-$g" 2>/dev/null; done
sleep 3
for g in $(cat "$list"); do kill -KILL -- "-$g" 2>/dev/null; done
"#;
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("testbed-watchdog")
            .arg(std::process::id().to_string())
            .arg(&pgid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the test bed's watchdog")?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            pgid_file,
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Spawns `cmd` in a new process group with stdout and stderr appended to `<name>.log`.
    pub fn spawn(&self, name: &str, mut cmd: Command) -> Result<Proc> {
        let log = self.run_dir.join(format!("{name}.log"));
        let out = OpenOptions::new().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        let mut list = OpenOptions::new().append(true).open(&self.pgid_file)?;
        writeln!(list, "{}", child.id())?;
        Ok(Proc {
            name: name.to_string(),
            log,
            child: Mutex::new(child),
        })
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released: good enough for a test bed that
/// starts its servers right away).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
