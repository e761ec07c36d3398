//! Child processes that are killed (whole process group) and reaped on drop,
//! and per-instance directories whose logs are shown when a test fails.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::{Error, Result};

/// How long a process gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Render a command line for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `cmd` to completion; an unsuccessful exit becomes [`Error::Command`]
/// carrying stderr and stdout.
pub fn run_checked(cmd: &mut Command) -> Result<Output> {
    let out = run_unchecked(cmd)?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: describe(cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        });
    }
    Ok(out)
}

/// Run `cmd` to completion and return its output whatever the exit status.
pub fn run_unchecked(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null()).output().map_err(|e| Error::Spawn {
        cmd: describe(cmd),
        source: e,
    })
}

/// Send `sig` to the process group `pgid` (ignored if it is gone).
pub(crate) fn signal_group(pgid: u32, sig: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals a process group; it has no
    // memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Send `sig` to one process (ignored if it is gone).
pub(crate) fn signal_pid(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: as above, kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether a process with this pid exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A spawned child in its own process group. Dropping it sends SIGTERM to
/// the group, SIGKILL after a grace period, and reaps the child.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
    log: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawn `cmd` in a new process group with stdout and stderr appended to
    /// `log` (or discarded when `None`).
    pub fn spawn(mut cmd: Command, what: &str, log: Option<&Path>) -> Result<ChildGuard> {
        cmd.stdin(Stdio::null());
        match log {
            Some(path) => {
                let f = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::io(format!("open log {}", path.display()), e))?;
                let f2 = f
                    .try_clone()
                    .map_err(|e| Error::io(format!("dup log {}", path.display()), e))?;
                cmd.stdout(f).stderr(f2);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let mut g = Self::spawn_configured(cmd, what)?;
        g.log = log.map(Path::to_path_buf);
        Ok(g)
    }

    /// Spawn `cmd` (stdio already set up by the caller) in a new process group.
    pub fn spawn_configured(mut cmd: Command, what: &str) -> Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| Error::Spawn {
            cmd: describe(&cmd),
            source: e,
        })?;
        Ok(ChildGuard {
            child: Some(child),
            what: what.to_string(),
            log: None,
        })
    }

    /// Process id (also the process group id), if still owned.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Log file of the child, if any.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Whether the child is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Exit status if the child has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Send `sig` to the child's process group without waiting.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            signal_group(pid, sig);
        }
    }

    /// SIGTERM the process group, SIGKILL after a grace period, reap.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        self.stop_with(libc::SIGTERM)
    }

    /// Like [`stop`](Self::stop) with a different first signal (tcpdump
    /// writes its summary on SIGINT).
    pub fn stop_with(&mut self, first: libc::c_int) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pgid = child.id();
        if let Ok(Some(st)) = child.try_wait() {
            // The leader is gone; make sure nothing it forked lingers.
            signal_group(pgid, libc::SIGKILL);
            return Ok(Some(st));
        }
        signal_group(pgid, first);
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    signal_group(pgid, libc::SIGKILL);
                    return Ok(Some(st));
                }
                Ok(None) if start.elapsed() < TERM_GRACE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    signal_group(pgid, libc::SIGKILL);
                    let st = child
                        .wait()
                        .map_err(|e| Error::io(format!("wait for {}", self.what), e))?;
                    return Ok(Some(st));
                }
                Err(e) => return Err(Error::io(format!("wait for {}", self.what), e)),
            }
        }
    }

    /// Give up ownership: the process keeps running after the guard is gone
    /// (`evpnd-lab --keep`).
    pub fn detach(&mut self) {
        self.child = None;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Resident set size of a process in KiB (`VmRSS` of /proc/PID/status),
/// for memory benchmarks.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|e| Error::io(format!("read {path}"), e))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::parse(path, "no VmRSS line"))
}

/// Last `max_lines` lines of a file (for failure reports).
pub fn tail(path: &Path, max_lines: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(max_lines);
    lines[from..].join("\n")
}

static DIR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Root of all test bed directories.
pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join("evpnd-testbed")
}

/// A per-instance directory (configs, logs, pid files). Removed on drop,
/// except while panicking or when kept, so failing runs leave their logs.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    /// Create a fresh directory named after `label`.
    pub fn new(label: &str) -> Result<RunDir> {
        let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base_dir().join(format!("{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(RunDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory after drop.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Write a file in the directory and return its path.
    pub fn write(&self, name: &str, contents: &str) -> Result<PathBuf> {
        let p = self.path.join(name);
        fs::write(&p, contents).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
        Ok(p)
    }

    /// Make the directory and everything in it owned by `uid:gid`.
    pub fn chown_all(&self, uid: u32, gid: u32) -> Result<()> {
        chown_tree(&self.path, uid, gid)
    }
}

pub(crate) fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    if path.is_dir() {
        let rd =
            fs::read_dir(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        for entry in rd.flatten() {
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep || std::thread::panicking() {
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Print the tail of each log to stderr if the current thread is panicking
/// (a failing test), so the failure report shows what the daemons said.
pub(crate) fn dump_logs_if_panicking(owner: &str, logs: &[PathBuf]) {
    if !std::thread::panicking() {
        return;
    }
    for log in logs {
        eprintln!(
            "===== {owner}: last lines of {} =====\n{}\n===== end {} =====",
            log.display(),
            tail(log, 40),
            log.display()
        );
    }
}
