//! Timeouts that hyper does not give us: the server response deadline (long polls get their
//! heartbeat plus a margin instead of the 60 s default), the socket silence timer used by the
//! body wrappers in [`crate::forward`] (bodies only: a parked Ping is silent by design), and the
//! per-device memory of the last Ping heartbeat (an empty Ping reuses it).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::activesync::LongPoll;
use crate::model::Timeouts;

/// Heartbeat assumed for a long poll whose heartbeat is unknown: the largest Exchange allows.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3540);

/// Most (user, DeviceId) pairs remembered; the map is cleared when full (a forgotten device just
/// gets the 3540 s default once).
const MAX_REMEMBERED: usize = 100_000;

/// The last Ping heartbeat per (user, DeviceId). Touched only by Ping requests. Keyed user →
/// DeviceId → seconds, so a lookup borrows the request's strings instead of building a key.
#[derive(Default)]
pub struct Heartbeats {
    map: parking_lot::Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    by_user: HashMap<Box<str>, HashMap<Box<str>, u32>>,
    /// (user, DeviceId) pairs held.
    len: usize,
}

impl Heartbeats {
    pub fn remember(&self, user: &str, device: &str, secs: u32) {
        let mut m = self.map.lock();
        if let Some(slot) = m
            .by_user
            .get_mut(user)
            .and_then(|devices| devices.get_mut(device))
        {
            *slot = secs;
            return;
        }
        if m.len >= MAX_REMEMBERED {
            m.by_user.clear();
            m.len = 0;
        }
        m.by_user
            .entry(user.into())
            .or_default()
            .insert(device.into(), secs);
        m.len += 1;
    }

    pub fn recall(&self, user: &str, device: &str) -> Option<u32> {
        self.map.lock().by_user.get(user)?.get(device).copied()
    }

    pub fn len(&self) -> usize {
        self.map.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Request sent → response headers. Long polls: heartbeat + margin, never less than the normal
/// response timeout.
pub fn response_timeout(t: &Timeouts, poll: LongPoll, remembered: Option<u32>) -> Duration {
    let heartbeat = match poll {
        LongPoll::No => return t.server_response,
        LongPoll::Heartbeat(s) => Duration::from_secs(u64::from(s)),
        LongPoll::Unknown => {
            remembered.map_or(DEFAULT_HEARTBEAT, |s| Duration::from_secs(u64::from(s)))
        }
    };
    (heartbeat + t.long_poll_margin).max(t.server_response)
}

/// `tokio::time::timeout`, but the timer is armed only if `fut` is not ready at once. Most
/// writes and flushes finish on their first poll; they then read no clock and touch no timer.
pub async fn within<F: Future>(
    limit: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    match crate::h1::framing::poll_once(fut.as_mut()).await {
        Some(v) => Ok(v),
        None => tokio::time::timeout(limit, fut).await,
    }
}

pin_project! {
    /// Fires after `timeout` without activity. Nothing is armed until the stream first waits
    /// (a body that is all there never reads the clock); activity only forgets when the wait
    /// began, and the timer is re-armed when it fires early, so a busy stream does not touch
    /// the timer wheel per frame.
    pub struct IdleTimer {
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
        // When the current silence began; `None` until the stream waits after activity.
        since: Option<Instant>,
    }
}

impl IdleTimer {
    pub fn new(timeout: Duration) -> Self {
        Self {
            sleep: None,
            timeout,
            since: None,
        }
    }

    /// Bytes moved: the next wait starts a new silence.
    pub fn touch(self: Pin<&mut Self>) {
        *self.project().since = None;
    }

    /// Call when the stream has to wait: true once it has been silent for `timeout`.
    pub fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let mut this = self.project();
        let deadline = *this.since.get_or_insert_with(Instant::now) + *this.timeout;
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        let Some(mut sleep) = this.sleep.as_pin_mut() else {
            return false;
        };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if deadline <= Instant::now() {
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timeouts {
        Timeouts {
            socket_read_write: Duration::from_secs(10),
            server_connect: Duration::from_secs(10),
            server_response: Duration::from_secs(60),
            device_request: Duration::from_secs(10),
            device_body: Duration::from_secs(600),
            long_poll_margin: Duration::from_secs(120),
            drain: Duration::from_secs(30),
            server_pool_idle: Duration::from_secs(90),
        }
    }

    #[test]
    fn long_poll_timeouts() {
        assert_eq!(
            response_timeout(&t(), LongPoll::No, Some(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            response_timeout(&t(), LongPoll::Heartbeat(480), None),
            Duration::from_secs(600)
        );
        assert_eq!(
            response_timeout(&t(), LongPoll::Unknown, None),
            Duration::from_secs(3660)
        );
        assert_eq!(
            response_timeout(&t(), LongPoll::Unknown, Some(900)),
            Duration::from_secs(1020)
        );
    }

    #[test]
    fn heartbeat_memory() {
        let h = Heartbeats::default();
        h.remember("u", "d", 480);
        assert_eq!(h.recall("u", "d"), Some(480));
        assert_eq!(h.recall("u", "e"), None);
        h.remember("u", "d", 900);
        h.remember("u", "e", 60);
        h.remember("v", "d", 30);
        assert_eq!(h.len(), 3);
        assert_eq!(h.recall("u", "d"), Some(900));
        assert_eq!(h.recall("v", "d"), Some(30));
    }
}
