//! Network namespaces with unique names, deleted (with every process left
//! inside) when their guard drops.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::process::{pid_alive, run_checked, run_unchecked, signal_pid, ChildGuard};

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A non-owning reference to a namespace by name: run commands in it.
/// Guards of daemons hold one of these; the [`Netns`] owns the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsHandle {
    name: String,
}

impl NsHandle {
    /// Refer to an existing namespace (not deleted by this handle).
    pub fn existing(name: &str) -> NsHandle {
        NsHandle {
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME args...` as a [`Command`], not yet run.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c.args(args);
        c
    }

    /// Run `args` inside the namespace; fail (with stderr) on non-zero exit.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        run_checked(&mut self.command(args))
    }

    /// Run `args` inside the namespace, returning the output whatever the
    /// exit status.
    pub fn run_unchecked<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        run_unchecked(&mut self.command(args))
    }

    /// Run a whitespace-separated command line inside the namespace (no
    /// shell, no quoting) and return its stdout.
    pub fn exec(&self, cmdline: &str) -> Result<String> {
        let args: Vec<&str> = cmdline.split_whitespace().collect();
        let out = self.run(&args)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run `ip -n NAME args...` (no exec into the namespace needed).
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut c = Command::new("ip");
        c.args(["-n", &self.name]).args(args);
        run_checked(&mut c)
    }

    /// Spawn a long-running process in the namespace, in its own process
    /// group, output appended to `log`.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        what: &str,
        log: Option<&Path>,
    ) -> Result<ChildGuard> {
        ChildGuard::spawn(self.command(args), what, log)
    }

    /// Pids of all processes in the namespace (`ip netns pids`).
    pub fn pids(&self) -> Result<Vec<u32>> {
        ns_pids(&self.name)
    }

    /// Run `f` on a thread that has joined this namespace (setns(2)) and
    /// return its result. Sockets created by `f` stay in the namespace
    /// after it returns, so a test can bind a listener or connect from
    /// inside and use the socket from any thread.
    pub fn in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = Path::new("/var/run/netns").join(&self.name);
        let what = format!("enter namespace {}", self.name);
        let handle = std::thread::spawn(move || -> std::io::Result<T> {
            use std::os::fd::AsRawFd;
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns(2) on a valid namespace fd; it changes only the
            // network namespace of this (short-lived, unshared) thread.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        });
        match handle.join() {
            Ok(r) => r.map_err(|e| Error::io(what, e)),
            Err(_) => Err(Error::io(
                what,
                std::io::Error::other("thread panicked in namespace"),
            )),
        }
    }

    /// Read a file as seen from inside the namespace (`/sys/class/net` is
    /// per namespace, so this goes through `ip netns exec ... cat`).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        Ok(self.run(&["cat", path])?.stdout)
    }
}

/// An owned network namespace. Dropping it kills every process still
/// inside and deletes it.
#[derive(Debug)]
pub struct Netns {
    handle: NsHandle,
    owned: bool,
}

impl Deref for Netns {
    type Target = NsHandle;
    fn deref(&self) -> &NsHandle {
        &self.handle
    }
}

impl Netns {
    /// Create a namespace named `{prefix}{pid}-{counter}`, loopback up.
    ///
    /// The pid in the name lets [`cleanup_prefix`] tell leftovers of a dead
    /// run from namespaces of a run still going on.
    pub fn new(prefix: &str) -> Result<Netns> {
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(Error::Invalid {
                what: "namespace prefix",
                value: prefix.to_string(),
                reason: "must be non-empty ASCII letters (digits would confuse pid parsing)".into(),
            });
        }
        let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{}-{n}", std::process::id());
        Self::with_name(&name)
    }

    /// Create a namespace with an exact name (fails if it exists).
    pub fn with_name(name: &str) -> Result<Netns> {
        if !crate::testbed::is_root() {
            return Err(Error::NotRoot);
        }
        if name.len() > 64 || name.contains('/') || name.is_empty() {
            return Err(Error::Invalid {
                what: "namespace name",
                value: name.to_string(),
                reason: "1..=64 characters without '/'".into(),
            });
        }
        run_checked(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            handle: NsHandle::existing(name),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle to pass to daemon guards.
    pub fn handle(&self) -> NsHandle {
        self.handle.clone()
    }

    /// Leave the namespace in place after the guard is dropped.
    pub fn detach(&mut self) {
        self.owned = false;
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Gone already: removed by a signal handler's cleanup_own.
        let exists = Path::new("/run/netns").join(&self.handle.name).exists();
        if self.owned && exists {
            if let Err(e) = delete_ns(&self.handle.name) {
                eprintln!("testbed: cannot delete namespace {}: {e}", self.handle.name);
            }
        }
    }
}

fn ns_pids(name: &str) -> Result<Vec<u32>> {
    let out = run_checked(Command::new("ip").args(["netns", "pids", name]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Kill every process in the namespace (SIGTERM, then SIGKILL) and delete it.
pub fn delete_ns(name: &str) -> Result<()> {
    delete_namespaces(&[name.to_string()])
}

/// [`delete_ns`] for many namespaces at once: one grace period for all
/// their processes, not one per namespace (fast teardown on Ctrl-C).
pub fn delete_namespaces(names: &[String]) -> Result<()> {
    let pids: Vec<u32> = names
        .iter()
        .flat_map(|n| ns_pids(n).unwrap_or_default())
        .collect();
    if !pids.is_empty() {
        for &p in &pids {
            signal_pid(p, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) && pids.iter().any(|&p| pid_alive(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for &p in &pids {
            if pid_alive(p) {
                signal_pid(p, libc::SIGKILL);
            }
        }
    }
    let mut first_err = None;
    for name in names {
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "del", name])) {
            first_err.get_or_insert(e);
        }
        // FRR's per-namespace socket directory, if a daemon ran here.
        let _ = std::fs::remove_dir_all(format!("/var/run/frr/{name}"));
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Names of all namespaces (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>> {
    let out = run_checked(Command::new("ip").args(["netns", "list"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The pid embedded in a name made by [`Netns::new`] with this prefix.
pub fn pid_in_name(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, counter) = rest.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if counter.is_empty() || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Remove leftovers of earlier runs with `prefix`: namespaces whose
/// embedded pid is no longer alive (all of them with `force`, for
/// `evpnd-lab --cleanup`). Returns the names removed. Namespaces of runs
/// still going on (other tests in parallel) are left alone.
pub fn cleanup_prefix(prefix: &str, force: bool) -> Result<Vec<String>> {
    let me = std::process::id();
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        let Some(pid) = pid_in_name(prefix, &name) else {
            continue;
        };
        if pid == me || (!force && pid_alive(pid)) {
            continue;
        }
        removed.push(name);
    }
    delete_namespaces(&removed)?;
    Ok(removed)
}

/// Remove every namespace this process created with `prefix` (signal
/// handlers: the guards of the main thread will not run).
pub fn cleanup_own(prefix: &str) -> Result<Vec<String>> {
    let me = std::process::id();
    let mut removed = Vec::new();
    for name in list_namespaces()? {
        if pid_in_name(prefix, &name) == Some(me) {
            removed.push(name);
        }
    }
    delete_namespaces(&removed)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::pid_in_name;

    #[test]
    fn parses_pid_only_for_exact_prefix() {
        assert_eq!(pid_in_name("tbf", "tbf1234-7"), Some(1234));
        assert_eq!(pid_in_name("tb", "tbf1234-7"), None);
        assert_eq!(pid_in_name("tbf", "tbf1234"), None);
        assert_eq!(pid_in_name("tbf", "tbf12a4-1"), None);
        assert_eq!(pid_in_name("tbf", "other"), None);
    }
}
