//! Where audit lines go. Each line is serialised into a per-thread reused buffer and appended to
//! one shared, bounded batch; one writer thread (started by [`start_stdout`]) writes the batch to
//! stdout when it reaches [`FLUSH_AT`] bytes or [`FLUSH_EVERY`] after its first line, and at
//! [`Writer::finish`] (shutdown, after the drain). Without a writer (tests, library use) each
//! line is a `tracing` event on the target `easgate::audit`, written only when that target is
//! enabled.
//!
//! **When the writer lags** (stdout blocked for longer than it takes to fill [`MAX_PENDING`]):
//! lines are dropped and counted — never silently: the count is the metric
//! `easgate_audit_lines_dropped_total` ([`dropped`]) and every lagging episode logs an error when
//! it starts and when it ends (with the count). Blocking the request path instead would let a
//! stuck log pipe freeze every device connection, parked Pings included; 4 MiB is ~10,000 lines,
//! seconds of peak traffic, so drops only happen when stdout is stuck, not when it is slow.

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Batch size that triggers a write.
pub const FLUSH_AT: usize = 64 * 1024;
/// Longest a line waits in the batch.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Cap on bytes waiting for the writer; beyond it lines are dropped and counted.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;
/// A per-thread line buffer larger than this is not kept for reuse.
const KEEP_LINE_BUF: usize = 16 * 1024;

static SINK: OnceLock<Shared> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

struct Shared {
    state: parking_lot::Mutex<State>,
    wake: parking_lot::Condvar,
    lagging: AtomicBool,
}

#[derive(Default)]
struct State {
    batch: Vec<u8>,
    /// Lines in `batch` (counted here so the writer need not scan for them).
    lines: u64,
    closing: bool,
}

/// Audit lines dropped because the writer lagged (or stdout failed) since the process started.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Whether a line would be written (writer running, or the tracing target enabled).
pub fn enabled() -> bool {
    SINK.get().is_some() || tracing::enabled!(target: "easgate::audit", tracing::Level::INFO)
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// Serialises one line with `write` (one JSON object, no newline) and hands it on.
pub fn emit(write: impl FnOnce(&mut Vec<u8>)) {
    LINE.with(|cell| {
        let Ok(mut line) = cell.try_borrow_mut() else {
            // Re-entered (a line written while writing a line): use a fresh buffer.
            let mut line = Vec::with_capacity(512);
            write(&mut line);
            deliver(&mut line);
            return;
        };
        line.clear();
        write(&mut line);
        deliver(&mut line);
        if line.capacity() > KEEP_LINE_BUF {
            *line = Vec::with_capacity(1024);
        }
    });
}

fn deliver(line: &mut Vec<u8>) {
    let Some(sink) = SINK.get() else {
        if let Ok(text) = std::str::from_utf8(line) {
            tracing::info!(target: "easgate::audit", "{text}");
        }
        return;
    };
    line.push(b'\n');
    let mut st = sink.state.lock();
    if st.closing {
        drop(st);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if st.batch.len() + line.len() > MAX_PENDING {
        drop(st);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        if !sink.lagging.swap(true, Ordering::Relaxed) {
            tracing::error!(
                pending_bytes = MAX_PENDING,
                "audit output is not keeping up: dropping audit lines (counted in easgate_audit_lines_dropped_total)"
            );
        }
        return;
    }
    let was_empty = st.batch.is_empty();
    st.batch.extend_from_slice(line);
    st.lines += 1;
    let full = st.batch.len() >= FLUSH_AT;
    drop(st);
    if was_empty || full {
        sink.wake.notify_one();
    }
}

/// The running writer; [`Writer::finish`] writes what is pending and stops it.
pub struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the one writer thread that batches audit lines to stdout. From now on audit lines
/// no longer go through `tracing`. Returns `None` when a writer is already running.
pub fn start_stdout() -> Option<Writer> {
    start(Box::new(std::io::stdout()))
}

/// As [`start_stdout`], to any output.
pub fn start(out: Box<dyn Write + Send>) -> Option<Writer> {
    let mut fresh = false;
    let sink = SINK.get_or_init(|| {
        fresh = true;
        Shared {
            state: parking_lot::Mutex::new(State {
                batch: Vec::with_capacity(FLUSH_AT),
                lines: 0,
                closing: false,
            }),
            wake: parking_lot::Condvar::new(),
            lagging: AtomicBool::new(false),
        }
    });
    if !fresh {
        return None;
    }
    let thread = std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || write_loop(sink, out))
        .ok()?;
    Some(Writer {
        thread: Some(thread),
    })
}

impl Writer {
    /// Writes every pending line, flushes and stops the writer (lines emitted later are dropped
    /// and counted).
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(sink) = SINK.get() {
            sink.state.lock().closing = true;
            sink.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(sink: &Shared, mut out: Box<dyn Write + Send>) {
    let mut spare: Vec<u8> = Vec::with_capacity(FLUSH_AT);
    let mut failed = false;
    loop {
        let (closing, lines) = {
            let mut st = sink.state.lock();
            while st.batch.is_empty() && !st.closing {
                sink.wake.wait(&mut st);
            }
            if st.batch.len() < FLUSH_AT && !st.closing {
                // Give the batch up to FLUSH_EVERY to fill.
                let _ = sink.wake.wait_for(&mut st, FLUSH_EVERY);
            }
            std::mem::swap(&mut st.batch, &mut spare);
            (st.closing, std::mem::take(&mut st.lines))
        };
        if !spare.is_empty() {
            match out.write_all(&spare).and_then(|()| out.flush()) {
                Ok(()) => failed = false,
                Err(e) => {
                    DROPPED.fetch_add(lines, Ordering::Relaxed);
                    if !failed {
                        tracing::error!(error = %e, lines, "cannot write audit lines to stdout");
                    }
                    failed = true;
                }
            }
            if spare.capacity() > MAX_PENDING {
                spare = Vec::with_capacity(FLUSH_AT);
            }
            spare.clear();
        }
        if sink.lagging.swap(false, Ordering::Relaxed) {
            tracing::error!(
                dropped_total = dropped(),
                "audit output caught up; lines were dropped while it lagged"
            );
        }
        if closing {
            let st = sink.state.lock();
            if st.batch.is_empty() {
                return;
            }
        }
    }
}
