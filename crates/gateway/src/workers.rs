//! Device workers: one single-threaded tokio runtime per core, each serving the device
//! connections handed to it by the accept loop (as nginx runs one worker process per core).
//!
//! Why: with one multi-threaded runtime, a connection's task is woken on whichever worker polls
//! the I/O driver and workers park and wake each other through the kernel; here a connection,
//! its server connections and its timers stay on one thread for their whole life. Measured on
//! the 2-core bench machine: less machine idle per request (3.4–4.8 µs → 0.3–0.8 µs) and about
//! 5 % less proxy CPU per request (docs/benchmarks.md).
//!
//! The control plane (management API, health checks, signals, state flushes) stays on the main
//! runtime. Server connections are pooled per worker ([`current`]), so a pooled connection is
//! always polled by the runtime whose I/O driver it is registered with.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the device worker running on this thread (`None` on other threads: the main
/// runtime, tests that serve devices inline).
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Running device workers; [`DeviceWorkers::stop`] ends them.
pub struct DeviceWorkers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
}

impl DeviceWorkers {
    /// Starts `n` workers (at least one), each on its own thread.
    pub fn start(n: usize) -> io::Result<Self> {
        let mut w = DeviceWorkers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
            next: AtomicUsize::new(0),
        };
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            w.stops.push(stop_tx);
            let thread = std::thread::Builder::new()
                .name(format!("easgate-dev-{i}"))
                .spawn(move || {
                    WORKER.with(|c| c.set(Some(i)));
                    // Tasks spawned onto this runtime run while this thread is in `block_on`.
                    let _ = rt.block_on(stop_rx);
                    // Whatever is left (the accept loop has drained or aborted its
                    // connections by now) is dropped here, on its own thread.
                    drop(rt);
                })?;
            w.threads.push(thread);
        }
        Ok(w)
    }

    /// The number of workers.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The worker for the next connection (in turn: connections are long-lived and alike).
    pub fn pick(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    /// Ends every worker and waits for its thread. Blocking: call it off the async runtime.
    pub fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_run_tasks_on_their_own_threads_in_turn() {
        let w = DeviceWorkers::start(2).unwrap();
        assert_eq!(w.len(), 2);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = std::sync::mpsc::channel();
            w.pick().spawn(async move {
                let _ = tx.send(current());
            });
            seen.push(rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap());
        }
        assert_eq!(seen, vec![Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(current(), None);
        w.stop();
    }
}
