//! systemd integration (sd_notify(3)): readiness, reload, watchdog.
//!
//! Every function is a no-op when the daemon is not started by systemd
//! (`NOTIFY_SOCKET` unset). Failures are logged, never fatal: a daemon that
//! forwards traffic must not stop because the service manager went away.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Tell systemd that start-up (or a reload) is complete: config loaded,
/// control socket bound. `Type=notify` units wait for this.
pub fn notify_ready() {
    send(&[NotifyState::Ready]);
}

/// Tell systemd a configuration reload (SIGHUP) has started; follow with
/// [`notify_ready`] when it is done. The monotonic timestamp is what
/// `Type=notify-reload` expects; plain `Type=notify` accepts it too.
pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(ts) => send(&[NotifyState::Reloading, ts]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tell systemd that an orderly shutdown has begun.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping]);
}

/// One-line status shown by `systemctl status evpnd`.
pub fn notify_status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Keep the watchdog (`WatchdogSec=`) from firing. Call it from the task
/// whose liveness matters (the main loop), not from a dedicated timer task,
/// so a stuck main loop is noticed.
pub fn notify_watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to call [`notify_watchdog`]: half the watchdog timeout, as
/// sd_watchdog_enabled(3) recommends; `None` when the watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|t| t / 2)
}
