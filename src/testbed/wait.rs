//! Polling with a deadline instead of fixed sleeps.

use std::time::{Duration, Instant};

use super::error::{Error, Result};

/// Interval between two polls: short, so tests finish as soon as the
/// condition holds, but not a busy loop.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Outcome of one poll of [`wait_for`].
#[derive(Debug)]
pub enum Poll<T> {
    /// The condition holds; stop waiting and return this value.
    Ready(T),
    /// Not yet; the string describes what was observed (reported on timeout).
    NotYet(String),
}

/// Poll `check` until it returns `Ready` or `timeout` elapses.
///
/// Errors returned by `check` are treated as "not yet" (a daemon that is
/// still starting refuses connections) and reported if the deadline passes.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Poll<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last;
    loop {
        match check() {
            Ok(Poll::Ready(v)) => return Ok(v),
            Ok(Poll::NotYet(seen)) => last = seen,
            Err(e) => last = format!("error: {e}"),
        }
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                waited: start.elapsed(),
                last,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Poll `check` until it returns `true` or `timeout` elapses.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    wait_for(timeout, what, || {
        Ok(if check()? {
            Poll::Ready(())
        } else {
            Poll::NotYet("false".to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_out_with_last_observation() {
        let mut n = 0;
        let err = wait_for::<()>(Duration::from_millis(250), "the answer", || {
            n += 1;
            Ok(Poll::NotYet(format!("poll {n}")))
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("the answer"), "{msg}");
        assert!(msg.contains("last observed: poll"), "{msg}");
    }

    #[test]
    fn returns_ready_value() {
        let mut n = 0;
        let v = wait_for(Duration::from_secs(5), "three polls", || {
            n += 1;
            Ok(if n == 3 {
                Poll::Ready(n)
            } else {
                Poll::NotYet(n.to_string())
            })
        })
        .unwrap();
        assert_eq!(v, 3);
    }
}
