//! Associations: what the gateway has seen of each `(user, DeviceId)`. Sharded by user so one
//! request takes one short, uncontended lock (never across an await), and a user's devices —
//! which the per-mailbox limit counts — sit in one shard and are counted atomically with the
//! admission of a new one.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::decide::{Action, Decision};
use super::list::{AccessState, Reasons};
use super::time::Timestamp;
use super::{DeviceKey, UserNaming, clip};

const SHARDS: usize = 64;
/// Longest User-Agent / server / command kept (they come from devices and servers; bound memory).
const MAX_TEXT: usize = 256;
/// Largest page of `GET /v1/associations`.
pub const MAX_PAGE: usize = 1000;

/// The identity of one device request, as parsed by `crates/eas` (already validated there).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    pub user: &'a str,
    pub device_id: &'a str,
    pub device_type: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// `MS-ASProtocolVersion`, e.g. `14.1`.
    pub protocol_version: Option<&'a str>,
    /// Command name, e.g. `Sync`.
    pub command: Option<&'a str>,
}

/// What the gateway reports about one device (`GET /v1/associations`; the portal shows these as
/// ActiveSync devices). Times are UTC, RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    /// As the device last spelled it.
    pub user: String,
    pub device_id: String,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub protocol_version: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    #[serde(default)]
    pub last_command: Option<String>,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_server: Option<String>,
    /// Last access decision (`ALLOW`/`BLOCK`/`WIPE`; in report-only the enforce-mode action).
    pub access: Action,
    /// Rule of that decision (see `decide`).
    pub rule: String,
    pub reasons: Reasons,
    /// The device's list state at the last decision (`None` = not listed).
    #[serde(default)]
    pub state: Option<AccessState>,
    /// When the device acknowledged a remote wipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiped_at: Option<Timestamp>,
    pub request_count: u64,
    /// A server accepted this device's credentials (2xx or 449) while the gateway allowed it:
    /// it counts toward `max_devices_per_mailbox` and keeps working under it.
    pub admitted: bool,
}

/// Filter and page of `GET /v1/associations`. Order: by (user, device_id), lower-cased — stable
/// between pages as long as no device is added or evicted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AssociationQuery {
    /// Exact user, case-insensitive.
    pub user: Option<String>,
    /// Exact DeviceId, case-insensitive.
    pub device_id: Option<String>,
    #[serde(default)]
    pub offset: usize,
    /// 1..=1000; 0 or absent means 100.
    #[serde(default)]
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssociationPage {
    /// Matches in all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// Offset of the next page, absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    pub items: Vec<Association>,
}

pub(crate) type UserDevices = HashMap<String, Association>;

pub(crate) struct Associations {
    shards: Box<[Mutex<HashMap<String, UserDevices>>]>,
    hasher: RandomState,
    len: AtomicUsize,
    /// One eviction at a time: concurrent requests over the bound must not all scan.
    evicting: AtomicBool,
}

/// A server answer that shows it accepted the device's credentials: a success, or 449 (the
/// Provision exchange a server demands only of an authenticated user).
pub(crate) fn credentials_accepted(status: u16) -> bool {
    (200..300).contains(&status) || status == 449
}

/// Replace an optional string only when it changed (no allocation on the common path).
fn set_text(slot: &mut Option<String>, value: Option<&str>) {
    if let Some(v) = value {
        let v = clip_owned(v);
        if slot.as_deref() != Some(v.as_ref()) {
            *slot = Some(v.into_owned());
        }
    }
}

fn clip_owned(v: &str) -> std::borrow::Cow<'_, str> {
    if v.len() <= MAX_TEXT && !v.chars().any(char::is_control) {
        std::borrow::Cow::Borrowed(v)
    } else {
        std::borrow::Cow::Owned(clip(v).chars().take(MAX_TEXT).collect())
    }
}

impl Associations {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn shard(&self, user_key: &str) -> &Mutex<HashMap<String, UserDevices>> {
        let i = (self.hasher.hash_one(user_key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Run `f` with the user's devices locked (created empty if absent; removed again if left
    /// empty). The lock is a plain short critical section: `f` must not block or await.
    pub(crate) fn with_user<R>(&self, user_key: &str, f: impl FnOnce(&mut UserDevices) -> R) -> R {
        let mut shard = self.shard(user_key).lock();
        let before;
        let (r, empty) = match shard.get_mut(user_key) {
            Some(devs) => {
                before = devs.len();
                let r = f(devs);
                let after = devs.len();
                self.adjust(before, after);
                (r, after == 0)
            }
            None => {
                let mut devs = UserDevices::new();
                let r = f(&mut devs);
                let after = devs.len();
                self.adjust(0, after);
                if after > 0 {
                    shard.insert(user_key.to_owned(), devs);
                }
                (r, false)
            }
        };
        if empty {
            shard.remove(user_key);
        }
        r
    }

    fn adjust(&self, before: usize, after: usize) {
        if after > before {
            self.len.fetch_add(after - before, Ordering::Relaxed);
        } else if before > after {
            self.len.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// Update (or create) the association after a decision: one call per request.
    pub(crate) fn record(
        devs: &mut UserDevices,
        key: &DeviceKey,
        req: &RequestInfo<'_>,
        decision: &Decision,
        state: Option<AccessState>,
        now: Timestamp,
    ) {
        let enforced = decision.enforced_action();
        let a = devs
            .entry(key.device.clone())
            .or_insert_with(|| Association {
                user: req.user.to_owned(),
                device_id: req.device_id.to_owned(),
                device_type: None,
                user_agent: None,
                protocol_version: None,
                first_seen: now,
                last_seen: now,
                last_command: None,
                last_status: None,
                last_server: None,
                access: enforced,
                rule: String::new(),
                reasons: Reasons::EMPTY,
                state,
                wiped_at: None,
                request_count: 0,
                admitted: false,
            });
        if a.user != req.user {
            a.user = req.user.to_owned();
        }
        if a.device_id != req.device_id {
            a.device_id = req.device_id.to_owned();
        }
        set_text(&mut a.device_type, req.device_type);
        set_text(&mut a.user_agent, req.user_agent);
        set_text(&mut a.protocol_version, req.protocol_version);
        set_text(&mut a.last_command, req.command);
        a.last_seen = a.last_seen.max(now);
        a.access = enforced;
        let name = decision.rule.effective().name();
        if a.rule != name {
            a.rule = name.to_owned();
        }
        a.reasons = decision.reasons;
        a.state = state;
        a.request_count = a.request_count.saturating_add(1);
    }

    /// Fill in the outcome of a request (the user's devices locked by the caller); `admit`: a
    /// server accepted the device's credentials and the mailbox has room. False if the
    /// association is gone (evicted/removed).
    pub(crate) fn record_response(
        devs: &mut UserDevices,
        key: &DeviceKey,
        status: u16,
        server: Option<&str>,
        admit: bool,
    ) -> bool {
        let Some(a) = devs.get_mut(&key.device) else {
            return false;
        };
        a.last_status = Some(status);
        if server.is_some() {
            set_text(&mut a.last_server, server);
        }
        a.admitted |= admit;
        true
    }

    pub(crate) fn get(&self, key: &DeviceKey) -> Option<Association> {
        let shard = self.shard(&key.user).lock();
        shard.get(&key.user)?.get(&key.device).cloned()
    }

    pub(crate) fn update(&self, key: &DeviceKey, f: impl FnOnce(&mut Association)) -> bool {
        let mut shard = self.shard(&key.user).lock();
        match shard
            .get_mut(&key.user)
            .and_then(|d| d.get_mut(&key.device))
        {
            Some(a) => {
                f(a);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove(&self, key: &DeviceKey) -> bool {
        self.with_user(&key.user, |devs| devs.remove(&key.device).is_some())
    }

    /// Insert a loaded association (start-up). Two that the naming rules now make one key (an
    /// upgrade, or new `default_domain` / `domain_aliases`) are merged: the one seen last keeps
    /// its facts; admission and request counts add up. Returns false when it merged.
    pub(crate) fn insert_loaded(&self, naming: &UserNaming, a: Association) -> bool {
        let key = DeviceKey::new(naming, &a.user, &a.device_id);
        self.with_user(&key.user, |devs| match devs.get_mut(&key.device) {
            Some(old) => {
                let admitted = old.admitted || a.admitted;
                let count = old.request_count.saturating_add(a.request_count);
                let first_seen = old.first_seen.min(a.first_seen);
                if a.last_seen > old.last_seen {
                    *old = a;
                }
                old.admitted = admitted;
                old.request_count = count;
                old.first_seen = first_seen;
                false
            }
            None => {
                devs.insert(key.device, a);
                true
            }
        })
    }

    /// Evict the associations with the oldest `last_seen` until at most `max` remain. Scans all
    /// shards (one lock at a time), so callers run it rarely: only when the bound is exceeded,
    /// and then evict a batch below it.
    pub(crate) fn evict_to(&self, max: usize) -> usize {
        if self.len() <= max
            || self
                .evicting
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return 0;
        }
        let evicted = self.evict_locked(max);
        self.evicting.store(false, Ordering::Release);
        evicted
    }

    fn evict_locked(&self, max: usize) -> usize {
        let len = self.len();
        if len <= max {
            return 0;
        }
        let excess = len - max;
        let mut all: Vec<(Timestamp, DeviceKey)> = Vec::with_capacity(len);
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (u, devs) in shard.iter() {
                for (d, a) in devs {
                    all.push((
                        a.last_seen,
                        DeviceKey {
                            user: u.clone(),
                            device: d.clone(),
                        },
                    ));
                }
            }
        }
        let excess = excess.min(all.len());
        if excess == 0 {
            return 0;
        }
        all.select_nth_unstable_by(excess - 1, |a, b| a.0.cmp(&b.0));
        let mut evicted = 0;
        for (_, key) in &all[..excess] {
            if self.remove(key) {
                evicted += 1;
            }
        }
        evicted
    }

    /// All associations (clones), sorted by key.
    pub(crate) fn snapshot_sorted(&self) -> Vec<(DeviceKey, Association)> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (u, devs) in shard.iter() {
                for (d, a) in devs {
                    all.push((
                        DeviceKey {
                            user: u.clone(),
                            device: d.clone(),
                        },
                        a.clone(),
                    ));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The page `q` asks for; its user is normalised as every key is (`CORP\\victim` finds
    /// `victim`'s devices).
    pub(crate) fn query(&self, naming: &UserNaming, q: &AssociationQuery) -> AssociationPage {
        let limit = if q.limit == 0 {
            100
        } else {
            q.limit.min(MAX_PAGE)
        };
        let user = q.user.as_deref().map(|u| naming.key(u));
        let device = q.device_id.as_deref().map(str::to_ascii_lowercase);
        let mut matches: Vec<(DeviceKey, Association)> = Vec::new();
        let mut collect = |u: &String, devs: &UserDevices| {
            for (d, a) in devs {
                if device.as_ref().is_none_or(|want| want == d) {
                    matches.push((
                        DeviceKey {
                            user: u.clone(),
                            device: d.clone(),
                        },
                        a.clone(),
                    ));
                }
            }
        };
        match &user {
            Some(u) => {
                let shard = self.shard(u).lock();
                if let Some(devs) = shard.get(u) {
                    collect(u, devs);
                }
            }
            None => {
                for shard in self.shards.iter() {
                    let shard = shard.lock();
                    for (u, devs) in shard.iter() {
                        collect(u, devs);
                    }
                }
            }
        }
        matches.sort_by(|a, b| a.0.cmp(&b.0));
        let total = matches.len();
        let items: Vec<Association> = matches
            .into_iter()
            .skip(q.offset)
            .take(limit)
            .map(|(_, a)| a)
            .collect();
        let end = q.offset.saturating_add(items.len());
        AssociationPage {
            total,
            offset: q.offset,
            limit,
            next_offset: (end < total).then_some(end),
            items,
        }
    }
}
