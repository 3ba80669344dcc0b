//! The state shared by the device listener, the management API and the background tasks.
//!
//! Ownership (one writer per field, so modules change for one reason):
//! - `runtime`: swapped by reload (`reload.rs`), read by every request with one atomic load.
//! - `health`: server health (`health.rs`), keyed by server identity so it survives reloads.
//! - `metrics`: counters and histograms (`metrics.rs`), rendered by `GET /metrics`.
//! - `access`: the device access list, associations and wipe state (`access/`), changed by the
//!   management API, read by every request.
//! - `redirects`: user → 451 target memory (`redirect.rs`).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::model::Runtime;

/// Shared gateway state. Cheap to clone via `Arc<Gateway>`.
pub struct Gateway {
    pub runtime: ArcSwap<Runtime>,
    pub health: crate::health::HealthRegistry,
    pub metrics: crate::metrics::Metrics,
    /// Idle server connections per server (`connect.rs`).
    pub pool: crate::connect::Pool,
    /// Round-robin positions per service (`pick.rs`).
    pub round_robin: crate::pick::RoundRobin,
    /// Last Ping heartbeat per (user, DeviceId) (`timeout.rs`).
    pub heartbeats: crate::timeout::Heartbeats,
    /// Device access list, associations, remote wipe (`access/`).
    pub access: Arc<crate::access::DeviceAccess>,
    /// Where 451 redirects sent each user (`redirect.rs`).
    pub redirects: crate::redirect::Redirects,
    /// FileReferences of excluded attachments seen per user (`attachments.rs`).
    pub excluded_refs: crate::attachments::ExcludedRefs,
}

impl Gateway {
    /// A gateway whose device access state lives in memory only (tests, tools). The process uses
    /// [`Gateway::with_access`] with the state loaded from disk.
    pub fn new(runtime: Runtime) -> Arc<Self> {
        let policy = crate::access::policy_or_fail_closed(&runtime.source.device_access);
        Self::with_access(runtime, crate::access::DeviceAccess::in_memory(policy))
    }

    /// A gateway enforcing `access` (loaded from the state file by the caller).
    pub fn with_access(runtime: Runtime, access: Arc<crate::access::DeviceAccess>) -> Arc<Self> {
        let health = crate::health::HealthRegistry::default();
        Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics: crate::metrics::Metrics::new(health.clone()),
            health,
            pool: Default::default(),
            round_robin: Default::default(),
            heartbeats: Default::default(),
            access,
            redirects: Default::default(),
            excluded_refs: Default::default(),
        })
    }

    /// The config in force now (one atomic load; hold it for one request, not longer).
    pub fn current(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }
}
