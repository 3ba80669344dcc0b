//! Server health: passive failure accrual on the request path and the background health check.
//!
//! Passive: transport failures and response timeouts count (HTTP statuses never do);
//! `dead_threshold` of them within `failure_window` mark a server dead. A dead server comes back
//! after `dead_time` when the background check is off, or after `live_threshold` consecutive good
//! checks when it is on (it shows Unreachable until then).
//!
//! State is keyed by [`ServerAddr`] and lives in [`crate::state::Gateway`], so it survives
//! reloads. The request path reads one atomic per server; the per-server lock is taken only on
//! failures, checks and dead servers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use serde::Serialize;
use tokio::time::Instant;

use crate::connect;
use crate::forward::UpBody;
use crate::model::{Runtime, ServerAddr, ServerPolicy};
use crate::state::Gateway;

/// Health of one server.
pub struct ServerHealth {
    pub addr: ServerAddr,
    /// `host:port`, shared by metrics and audit lines without re-formatting.
    pub label: Arc<str>,
    /// `Host` values for plain and TLS (made once: no formatting per request).
    host_plain: HeaderValue,
    host_tls: HeaderValue,
    /// Fast path: false while the server is dead.
    live: AtomicBool,
    state: parking_lot::Mutex<State>,
    failures_total: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Failure times inside the window (at most `dead_threshold` kept).
    recent: VecDeque<Instant>,
    dead_until: Option<Instant>,
    good_checks: u32,
    last_error: Option<String>,
}

impl ServerHealth {
    fn new(addr: ServerAddr) -> Self {
        Self {
            label: addr.to_string().into(),
            host_plain: crate::forward::host_header(&addr, false),
            host_tls: crate::forward::host_header(&addr, true),
            addr,
            live: AtomicBool::new(true),
            state: parking_lot::Mutex::new(State::default()),
            failures_total: AtomicU64::new(0),
        }
    }

    /// The `Host` header for this server.
    pub fn host_header(&self, tls: bool) -> HeaderValue {
        if tls {
            self.host_tls.clone()
        } else {
            self.host_plain.clone()
        }
    }

    /// May requests go to this server now? With the health check off, a dead server becomes
    /// live again once `dead_time` has passed.
    pub fn is_live(&self, health_check_on: bool) -> bool {
        if self.live.load(Ordering::Acquire) {
            return true;
        }
        if health_check_on {
            return false;
        }
        let mut s = self.state.lock();
        match s.dead_until {
            Some(t) if Instant::now() >= t => {
                s.recent.clear();
                s.dead_until = None;
                s.good_checks = 0;
                self.live.store(true, Ordering::Release);
                tracing::info!(server = %self.addr, "server dead time over: trying it again");
                true
            }
            Some(_) => false,
            None => self.live.load(Ordering::Acquire),
        }
    }

    /// A transport failure or response timeout.
    pub fn record_failure(&self, policy: &ServerPolicy, error: &dyn std::fmt::Display) {
        self.failures_total.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut s = self.state.lock();
        s.last_error = Some(error.to_string());
        s.good_checks = 0;
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        while s
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= policy.failure_window)
        {
            s.recent.pop_front();
        }
        s.recent.push_back(now);
        while s.recent.len() > policy.dead_threshold as usize {
            s.recent.pop_front();
        }
        if s.recent.len() >= policy.dead_threshold as usize {
            s.dead_until = Some(now + policy.dead_time);
            self.live.store(false, Ordering::Release);
            tracing::warn!(server = %self.addr, failures = s.recent.len(), error = %error, "server marked dead");
        }
    }

    /// A background check answered. A dead server needs `live_threshold` of these in a row.
    pub fn record_check_ok(&self, live_threshold: u32) {
        if self.live.load(Ordering::Acquire) {
            return;
        }
        let mut s = self.state.lock();
        s.good_checks += 1;
        if s.good_checks >= live_threshold {
            s.recent.clear();
            s.dead_until = None;
            s.good_checks = 0;
            self.live.store(true, Ordering::Release);
            tracing::info!(server = %self.addr, "server reachable again");
        }
    }

    /// Time until the dead time ends (health check off), for `Retry-After`.
    pub fn dead_remaining(&self) -> Option<Duration> {
        if self.live.load(Ordering::Acquire) {
            return None;
        }
        self.state
            .lock()
            .dead_until
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// (up, failures_total) for `/metrics`, without side effects.
    pub fn metrics(&self) -> (bool, u64) {
        (
            self.live.load(Ordering::Acquire),
            self.failures_total.load(Ordering::Relaxed),
        )
    }

    fn status(&self, health_check_on: bool) -> ServerStatus {
        let live = self.is_live(health_check_on);
        let s = self.state.lock();
        let now = Instant::now();
        let dead_until = if live || health_check_on {
            None
        } else {
            s.dead_until
        };
        ServerStatus {
            server: self.label.to_string(),
            state: if live {
                Reachability::Reachable
            } else {
                Reachability::Unreachable
            },
            dead_until_unix_ms: dead_until.map(|t| {
                let wall = SystemTime::now() + t.saturating_duration_since(now);
                wall.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            }),
            dead_for_ms: dead_until.map(|t| t.saturating_duration_since(now).as_millis() as u64),
            failures_in_window: s.recent.len() as u32,
            failures_total: self.failures_total.load(Ordering::Relaxed),
            consecutive_good_checks: s.good_checks,
            last_error: s.last_error.clone(),
        }
    }
}

/// Reachable / Unreachable, as the admin form and `/v1/status` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reachability {
    Reachable,
    Unreachable,
}

/// One server in `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    pub server: String,
    pub state: Reachability,
    /// Wall-clock end of the dead time (health check off only).
    pub dead_until_unix_ms: Option<u64>,
    pub dead_for_ms: Option<u64>,
    pub failures_in_window: u32,
    pub failures_total: u64,
    pub consecutive_good_checks: u32,
    pub last_error: Option<String>,
}

/// One service in `/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub servers: Vec<ServerStatus>,
}

/// Health of every configured server, per service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthSnapshot {
    pub health_check: bool,
    pub services: Vec<ServiceStatus>,
}

/// Health of all servers ever configured, keyed by address (survives reloads). Cheap to clone.
#[derive(Clone, Default)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    map: ArcSwap<HashMap<ServerAddr, Arc<ServerHealth>, crate::metrics::ConfigKeyed>>,
    write: parking_lot::Mutex<()>,
}

impl HealthRegistry {
    /// The health entry of `server`, created on first use (lock-free read otherwise).
    pub fn get(&self, server: &ServerAddr) -> Arc<ServerHealth> {
        if let Some(h) = self.inner.map.load().get(server) {
            return h.clone();
        }
        let _g = self.inner.write.lock();
        let cur = self.inner.map.load_full();
        if let Some(h) = cur.get(server) {
            return h.clone();
        }
        let mut next = (*cur).clone();
        let h = Arc::new(ServerHealth::new(server.clone()));
        next.insert(server.clone(), h.clone());
        self.inner.map.store(Arc::new(next));
        h
    }

    /// Every known entry (for metrics).
    pub fn all(&self) -> Vec<Arc<ServerHealth>> {
        let mut v: Vec<_> = self.inner.map.load().values().cloned().collect();
        v.sort_by(|a, b| a.addr.cmp(&b.addr));
        v
    }

    /// Per service and server: Reachable/Unreachable, dead-until, failure counts.
    pub fn snapshot(&self, rt: &Runtime) -> HealthSnapshot {
        let on = rt.activesync.health_check.is_some();
        HealthSnapshot {
            health_check: on,
            services: rt
                .activesync
                .services
                .iter()
                .map(|svc| ServiceStatus {
                    name: svc.name.clone(),
                    servers: svc.servers.iter().map(|s| self.get(s).status(on)).collect(),
                })
                .collect(),
        }
    }
}

/// Starts the background health check. It re-reads the runtime every round, so a reload that
/// turns the check on or off or changes the interval applies on the next round. Abort the handle
/// to stop it.
pub fn spawn_checker(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let rt = gw.current();
            let Some(policy) = rt.activesync.health_check else {
                drop(rt);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let servers: BTreeSet<ServerAddr> = rt
                .activesync
                .services
                .iter()
                .flat_map(|s| s.servers.iter().cloned())
                .collect();
            let mut checks = tokio::task::JoinSet::new();
            for server in servers {
                let gw = gw.clone();
                let rt = rt.clone();
                checks.spawn(async move {
                    let entry = gw.health.get(&server);
                    match check_once(&rt, &server).await {
                        Ok(()) => {
                            gw.metrics.health_check(&entry.label, true);
                            entry.record_check_ok(policy.live_threshold);
                        }
                        Err(e) => {
                            gw.metrics.health_check(&entry.label, false);
                            tracing::info!(server = %server, error = %e, "health check failed");
                            entry.record_failure(&rt.servers, &e);
                        }
                    }
                });
            }
            while checks.join_next().await.is_some() {}
            drop(rt);
            tokio::time::sleep(policy.interval).await;
        }
    })
}

/// One check: OPTIONS on the ActiveSync path with the server's host name. Any HTTP answer (401
/// included) is a success.
pub async fn check_once(rt: &Runtime, server: &ServerAddr) -> Result<(), crate::error::Error> {
    let t = &rt.timeouts;
    let io = connect::connect(server, rt.activesync.server_tls.as_ref(), t.server_connect).await?;
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/Microsoft-Server-ActiveSync")
        .header(
            header::HOST,
            crate::forward::host_header(server, rt.activesync.server_tls.is_some()),
        )
        .header(header::USER_AGENT, "easgate-health-check")
        .body(UpBody::full(Bytes::new()))
        .map_err(|_| crate::error::Error::InvalidServerName {
            name: server.host.clone(),
        })?;
    // The connection is not pooled: a check must not hand a request a connection it opened.
    crate::h1::client::ServerConn::new(io)
        .send(
            Box::new(req),
            t.server_response,
            t.socket_read_write,
            server,
            None,
        )
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ServerPolicy {
        ServerPolicy {
            scheduling: crate::model::Scheduling::Priority,
            dead_threshold: 2,
            failure_window: Duration::from_secs(60),
            dead_time: Duration::from_secs(300),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dies_after_threshold_in_window_and_returns_after_dead_time() {
        let h = ServerHealth::new(ServerAddr {
            host: "s".into(),
            port: 1,
        });
        h.record_failure(&policy(), &"x");
        tokio::time::advance(Duration::from_secs(61)).await;
        h.record_failure(&policy(), &"x");
        assert!(h.is_live(false), "first failure left the window");
        h.record_failure(&policy(), &"x");
        assert!(!h.is_live(false));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(!h.is_live(false));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(h.is_live(false));
    }

    #[tokio::test(start_paused = true)]
    async fn health_check_needs_consecutive_good_checks() {
        let h = ServerHealth::new(ServerAddr {
            host: "s".into(),
            port: 1,
        });
        h.record_failure(&policy(), &"x");
        h.record_failure(&policy(), &"x");
        tokio::time::advance(Duration::from_secs(400)).await;
        assert!(
            !h.is_live(true),
            "dead time does not apply with the check on"
        );
        h.record_check_ok(3);
        h.record_check_ok(3);
        h.record_failure(&policy(), &"check failed");
        h.record_check_ok(3);
        h.record_check_ok(3);
        assert!(!h.is_live(true));
        h.record_check_ok(3);
        assert!(h.is_live(true));
    }
}
