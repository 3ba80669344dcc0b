//! Prometheus metrics. Request counters and duration histograms live in per-thread shards (one
//! uncontended lock per finished request, no global lock); gauges are atomics; server up/down and
//! failure counts are read from the health registry at render time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::health::HealthRegistry;

/// Upper bounds (seconds) of the request duration histogram; long polls land in the top buckets.
const BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    requests: KeyMap<(RequestLabels, u64)>,
    durations: KeyMap<(DurationLabels, Histogram)>,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RequestLabels {
    service: String,
    server: String,
    status: u16,
    command: &'static str,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DurationLabels {
    service: String,
    command: &'static str,
}

#[derive(Clone, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// All counters and gauges of the gateway.
pub struct Metrics {
    health: HealthRegistry,
    shards: Box<[parking_lot::Mutex<Shard>]>,
    in_flight: AtomicI64,
    parked: AtomicI64,
    connections: AtomicU64,
    /// Rare events (server failures, health checks): one map is fine.
    events: parking_lot::Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Requests from devices using a protocol version above `limit_protocol_version`, by version.
    above_limit: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// 451 redirect outcomes (followed, remembered, passed, refused, replay_too_large).
    redirects: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// Access decisions that were not ALLOW, by action and rule (`BLOCK`/`WIPE`, report-only
    /// `would_block` as `REPORT`).
    access: parking_lot::Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Device connections and requests the gateway itself refused, by reason (`body_timeout`,
    /// `h2_first_request_timeout`).
    refusals: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// Management connections closed unserved, by reason (`per_address_cap`, `connection_cap`,
    /// `first_request_timeout`): a flood on the management port shows up here.
    management_refusals: parking_lot::Mutex<BTreeMap<&'static str, u64>>,
    /// Attachment control (issue 5): attachments by outcome, and rewrite durations.
    attachments: parking_lot::Mutex<AttachmentMetrics>,
}

/// Attachment counters by (outcome, place) and the rewrite duration histogram by place.
#[derive(Default)]
struct AttachmentMetrics {
    counts: BTreeMap<(&'static str, &'static str), u64>,
    rewrites: BTreeMap<&'static str, Histogram>,
}

/// Upper bounds (seconds) of the attachment rewrite duration histogram.
const REWRITE_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// The label set's map key. FNV-1a: the labels come from config and code (service, server,
/// status, command name), never from devices, so a fast non-keyed hash is safe here.
fn key(parts: impl Hash) -> u64 {
    let mut h = Fnv::default();
    parts.hash(&mut h);
    h.finish()
}

/// FNV-1a. Only for keys that come from config or code, never from devices (a device could
/// choose colliding keys; device-keyed maps keep std's keyed SipHash).
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// Builds [`Fnv`] hashers: maps keyed by configured servers.
pub(crate) type ConfigKeyed = std::hash::BuildHasherDefault<Fnv>;

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The maps are keyed by [`key`], already a hash: used as is.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<KeyHasher>>;

impl Metrics {
    pub fn new(health: HealthRegistry) -> Self {
        Self {
            health,
            shards: (0..SHARDS)
                .map(|_| parking_lot::Mutex::new(Shard::default()))
                .collect(),
            in_flight: AtomicI64::new(0),
            parked: AtomicI64::new(0),
            connections: AtomicU64::new(0),
            events: parking_lot::Mutex::new(BTreeMap::new()),
            above_limit: parking_lot::Mutex::new(BTreeMap::new()),
            redirects: parking_lot::Mutex::new(BTreeMap::new()),
            access: parking_lot::Mutex::new(BTreeMap::new()),
            refusals: parking_lot::Mutex::new(BTreeMap::new()),
            management_refusals: parking_lot::Mutex::new(BTreeMap::new()),
            attachments: parking_lot::Mutex::new(AttachmentMetrics::default()),
        }
    }

    /// One attachment rewrite at `place` (sync, itemoperations, getattachment, compose...):
    /// attachments removed / encrypted / excluded, and how long the rewrite took.
    pub fn attachment_rewrite(
        &self,
        place: &'static str,
        removed: u32,
        encrypted: u32,
        excluded: u32,
        took: Duration,
    ) {
        let mut m = self.attachments.lock();
        for (outcome, n) in [
            ("removed", removed),
            ("encrypted", encrypted),
            ("excluded", excluded),
        ] {
            if n > 0 {
                *m.counts.entry((outcome, place)).or_default() += u64::from(n);
            }
        }
        let secs = took.as_secs_f64();
        let h = m.rewrites.entry(place).or_default();
        h.count += 1;
        h.sum += secs;
        if let Some(i) = REWRITE_BUCKETS.iter().position(|b| secs <= *b) {
            h.counts[i] += 1;
        }
    }

    /// A response or request attachment control refused or passed unchecked (`outcome`:
    /// blocked, oversize_delivered, oversize_blocked, refused).
    pub fn attachment_event(&self, outcome: &'static str, place: &'static str) {
        *self
            .attachments
            .lock()
            .counts
            .entry((outcome, place))
            .or_default() += 1;
    }

    /// A device request used `version`, above `limit_protocol_version` (it was forwarded).
    pub fn above_version_limit(&self, version: &'static str) {
        *self.above_limit.lock().entry(version).or_default() += 1;
    }

    /// A 451 redirect outcome.
    pub fn redirect(&self, outcome: &'static str) {
        *self.redirects.lock().entry(outcome).or_default() += 1;
    }

    /// A request the access decision did not simply allow (rare: blocked, wiped, report-only).
    pub fn access_decision(&self, action: &'static str, rule: &'static str) {
        *self.access.lock().entry((action, rule)).or_default() += 1;
    }

    /// A device request or connection the gateway refused on its own account (rare: a slow or
    /// abusive device), by `reason`.
    pub fn device_refused(&self, reason: &'static str) {
        *self.refusals.lock().entry(reason).or_default() += 1;
    }

    /// A management connection closed before it was served (see `management_refusals`).
    pub fn management_refused(&self, reason: &'static str) {
        *self.management_refusals.lock().entry(reason).or_default() += 1;
    }

    pub fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request is over (called once, from the audit record's drop).
    pub fn request_finished(
        &self,
        service: &str,
        server: &str,
        status: u16,
        command: &'static str,
        took: Duration,
    ) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let rk = key((service, server, status, command));
        let dk = key((service, command));
        let secs = took.as_secs_f64();
        let mut shard = self.shards[SHARD.with(|s| *s)].lock();
        shard
            .requests
            .entry(rk)
            .or_insert_with(|| {
                (
                    RequestLabels {
                        service: service.into(),
                        server: server.into(),
                        status,
                        command,
                    },
                    0,
                )
            })
            .1 += 1;
        let h = &mut shard
            .durations
            .entry(dk)
            .or_insert_with(|| {
                (
                    DurationLabels {
                        service: service.into(),
                        command,
                    },
                    Histogram::default(),
                )
            })
            .1;
        h.count += 1;
        h.sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.counts[i] += 1;
        }
    }

    /// A long poll waits for its server (`guard` decrements when dropped).
    pub fn parked(&self) -> ParkedGuard<'_> {
        self.parked.fetch_add(1, Ordering::Relaxed);
        ParkedGuard(self)
    }

    /// A transport failure or timeout towards `server` (`kind`: connect, tls, upstream, timeout).
    pub fn upstream_failure(&self, server: &str, kind: &'static str) {
        *self
            .events
            .lock()
            .entry((server.to_string(), kind))
            .or_default() += 1;
    }

    pub fn health_check(&self, server: &str, ok: bool) {
        let kind = if ok { "check_ok" } else { "check_failed" };
        *self
            .events
            .lock()
            .entry((server.to_string(), kind))
            .or_default() += 1;
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn parked_now(&self) -> i64 {
        self.parked.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut requests: BTreeMap<RequestLabels, u64> = BTreeMap::new();
        let mut durations: BTreeMap<DurationLabels, Histogram> = BTreeMap::new();
        for shard in self.shards.iter() {
            let s = shard.lock();
            for (labels, n) in s.requests.values() {
                *requests.entry(labels.clone()).or_default() += n;
            }
            for (labels, h) in s.durations.values() {
                let e = durations.entry(labels.clone()).or_default();
                e.count += h.count;
                e.sum += h.sum;
                for (a, b) in e.counts.iter_mut().zip(h.counts) {
                    *a += b;
                }
            }
        }
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP easgate_requests_total Device requests by service, server, status and command.\n");
        out.push_str("# TYPE easgate_requests_total counter\n");
        for (l, n) in &requests {
            let _ = writeln!(
                out,
                "easgate_requests_total{{service=\"{}\",server=\"{}\",status=\"{}\",command=\"{}\"}} {n}",
                esc(&l.service),
                esc(&l.server),
                l.status,
                l.command
            );
        }
        out.push_str(
            "# HELP easgate_request_duration_seconds Time from request to end of response.\n",
        );
        out.push_str("# TYPE easgate_request_duration_seconds histogram\n");
        for (l, h) in &durations {
            let labels = format!("service=\"{}\",command=\"{}\"", esc(&l.service), l.command);
            let mut cum = 0;
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                cum += c;
                let _ = writeln!(
                    out,
                    "easgate_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cum}"
                );
            }
            let _ = writeln!(
                out,
                "easgate_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "easgate_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "easgate_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP easgate_upstream_events_total Server failures by kind and health-check results.\n");
        out.push_str("# TYPE easgate_upstream_events_total counter\n");
        for ((server, kind), n) in self.events.lock().iter() {
            let _ = writeln!(
                out,
                "easgate_upstream_events_total{{server=\"{}\",kind=\"{kind}\"}} {n}",
                esc(server)
            );
        }
        out.push_str(
            "# HELP easgate_server_up 1 when the server is Reachable, 0 when Unreachable.\n",
        );
        out.push_str("# TYPE easgate_server_up gauge\n");
        out.push_str(
            "# HELP easgate_server_failures_total Transport failures and timeouts per server.\n",
        );
        out.push_str("# TYPE easgate_server_failures_total counter\n");
        for s in self.health.all() {
            let (up, failures) = s.metrics();
            let _ = writeln!(
                out,
                "easgate_server_up{{server=\"{}\"}} {}",
                esc(&s.label),
                u8::from(up)
            );
            let _ = writeln!(
                out,
                "easgate_server_failures_total{{server=\"{}\"}} {failures}",
                esc(&s.label)
            );
        }
        out.push_str("# HELP easgate_requests_above_version_limit_total Device requests using a protocol version above limit_protocol_version (forwarded).\n");
        out.push_str("# TYPE easgate_requests_above_version_limit_total counter\n");
        for (version, n) in self.above_limit.lock().iter() {
            let _ = writeln!(
                out,
                "easgate_requests_above_version_limit_total{{version=\"{version}\"}} {n}"
            );
        }
        out.push_str("# HELP easgate_redirects_total 451 redirects by outcome.\n");
        out.push_str("# TYPE easgate_redirects_total counter\n");
        for (outcome, n) in self.redirects.lock().iter() {
            let _ = writeln!(out, "easgate_redirects_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP easgate_audit_lines_dropped_total Audit lines dropped because the audit output lagged or failed.\n");
        out.push_str("# TYPE easgate_audit_lines_dropped_total counter\n");
        let _ = writeln!(
            out,
            "easgate_audit_lines_dropped_total {}",
            crate::audit::sink::dropped()
        );
        out.push_str("# HELP easgate_access_decisions_total Device requests not simply allowed, by action and rule.\n");
        out.push_str("# TYPE easgate_access_decisions_total counter\n");
        for ((action, rule), n) in self.access.lock().iter() {
            let _ = writeln!(
                out,
                "easgate_access_decisions_total{{action=\"{action}\",rule=\"{rule}\"}} {n}"
            );
        }
        out.push_str("# HELP easgate_device_refusals_total Device requests the gateway refused on its own account, by reason (body_timeout: body not complete within device_body_timeout_ms; h2_first_request_timeout: HTTP/2 connection without a request within device_request_timeout_ms of accept; first_request_timeout: TLS handshake or first bytes not done by then).\n");
        out.push_str("# TYPE easgate_device_refusals_total counter\n");
        for (reason, n) in self.refusals.lock().iter() {
            let _ = writeln!(
                out,
                "easgate_device_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP easgate_management_refusals_total Management connections closed unserved, by reason (per_address_cap, connection_cap, first_request_timeout).\n");
        out.push_str("# TYPE easgate_management_refusals_total counter\n");
        for (reason, n) in self.management_refusals.lock().iter() {
            let _ = writeln!(
                out,
                "easgate_management_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }
        {
            let m = self.attachments.lock();
            out.push_str("# HELP easgate_attachments_total Attachments handled by attachment control, by outcome (removed, encrypted, excluded; blocked / oversize_* / refused count bodies) and place.\n");
            out.push_str("# TYPE easgate_attachments_total counter\n");
            for ((outcome, place), n) in &m.counts {
                let _ = writeln!(
                    out,
                    "easgate_attachments_total{{outcome=\"{outcome}\",place=\"{place}\"}} {n}"
                );
            }
            out.push_str("# HELP easgate_attachment_rewrite_seconds Time spent rewriting a body for attachment control (buffering excluded).\n");
            out.push_str("# TYPE easgate_attachment_rewrite_seconds histogram\n");
            for (place, h) in &m.rewrites {
                let mut cum = 0;
                for (b, c) in REWRITE_BUCKETS.iter().zip(h.counts) {
                    cum += c;
                    let _ = writeln!(
                        out,
                        "easgate_attachment_rewrite_seconds_bucket{{place=\"{place}\",le=\"{b}\"}} {cum}"
                    );
                }
                let _ = writeln!(
                    out,
                    "easgate_attachment_rewrite_seconds_bucket{{place=\"{place}\",le=\"+Inf\"}} {}\neasgate_attachment_rewrite_seconds_sum{{place=\"{place}\"}} {}\neasgate_attachment_rewrite_seconds_count{{place=\"{place}\"}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP easgate_in_flight_requests Requests being served.\n# TYPE easgate_in_flight_requests gauge\neasgate_in_flight_requests {}",
            self.in_flight()
        );
        let _ = writeln!(
            out,
            "# HELP easgate_parked_long_polls Ping/Sync long polls waiting for their server.\n# TYPE easgate_parked_long_polls gauge\neasgate_parked_long_polls {}",
            self.parked_now()
        );
        let _ = writeln!(
            out,
            "# HELP easgate_device_connections_total Device connections accepted.\n# TYPE easgate_device_connections_total counter\neasgate_device_connections_total {}",
            self.connections.load(Ordering::Relaxed)
        );
        out
    }
}

/// Decrements the parked long-poll gauge when dropped.
pub struct ParkedGuard<'a>(&'a Metrics);

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Label value escaping (backslash, quote, newline).
fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\\', '"', '\n']) {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new(HealthRegistry::default());
        m.request_started();
        m.request_finished("default", "a:443", 200, "Ping", Duration::from_millis(20));
        let t = m.render();
        assert!(t.contains(
            "easgate_requests_total{service=\"default\",server=\"a:443\",status=\"200\",command=\"Ping\"} 1"
        ));
        assert!(t.contains("easgate_request_duration_seconds_bucket{service=\"default\",command=\"Ping\",le=\"0.025\"} 1"));
        assert!(t.contains("easgate_in_flight_requests 0"));
    }
}
