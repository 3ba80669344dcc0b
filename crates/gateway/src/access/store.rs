//! [`DeviceAccess`]: the access list, the associations, the policy and the portal state behind
//! one handle, with the change broadcast for parked requests and the coalesced, atomic
//! persistence of the state file.
//!
//! Persistence: the whole state (list + associations) is one JSON file written atomically
//! (temp file in the same directory, fsync, rename, fsync directory; mode 0600). Request-path
//! changes only bump a generation counter; the flusher task writes every `flush_interval` and on
//! shutdown; management changes are written before the API answers. The request path never
//! waits on disk.
//!
//! Start-up with a state file that cannot be read as ours: fail closed. The file is copied to
//! `<file>.corrupt-<unix seconds>` and loading fails with [`AccessError::CorruptState`]; the
//! gateway refuses to start until the admin fixes or removes the file (a missing file starts
//! empty; the portal resends the list). Starting empty instead would silently readmit blocked and
//! wiped devices while `unregistered = allow`.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use super::associations::{
    Association, AssociationPage, AssociationQuery, Associations, RequestInfo, UserDevices,
    credentials_accepted,
};
use super::config::AccessPolicy;
use super::decide::{AccessInputs, Action, Decision, PortalSync, decide};
use super::list::{
    AccessEntry, AccessList, AccessState, ChangeReport, ListChange, MAX_LIST_ENTRIES, WipeRecord,
    parse_patch, parse_replace, validate_key,
};
use super::time::{Clock, Timestamp, WallClock};
use super::{AccessError, DeviceKey, UserNaming};

/// State file format version (bumped on incompatible changes).
const STATE_FORMAT: u32 = 1;
/// Change broadcasts buffered per receiver; a receiver that falls behind re-checks (Lagged).
const CHANGE_CAPACITY: usize = 64;
/// A replace changing more keys than this is broadcast as "everything changed" (cheaper for
/// thousands of parked receivers than a huge key set).
const MAX_KEYS_PER_CHANGE: usize = 10_000;

/// What changed on the list (or in the policy), for parked requests to re-check.
#[derive(Debug, Clone)]
pub enum AccessChange {
    /// These keys changed state or reasons.
    Keys(Arc<HashSet<DeviceKey>>),
    /// Anything may have changed (policy reload, very large replace).
    All,
}

impl AccessChange {
    pub fn affects(&self, key: &DeviceKey) -> bool {
        match self {
            Self::Keys(keys) => keys.contains(key),
            Self::All => true,
        }
    }
}

/// A subscription to [`AccessChange`]s. Small (one broadcast cursor), so every parked Ping can
/// hold one.
pub struct AccessChanges {
    rx: broadcast::Receiver<AccessChange>,
}

impl AccessChanges {
    /// Resolves when a change that may affect `key` arrives (or changes were missed because this
    /// receiver lagged: re-check then too). Returns false if the access state was dropped.
    pub async fn changed(&mut self, key: &DeviceKey) -> bool {
        loop {
            match self.rx.recv().await {
                Ok(change) if change.affects(key) => return true,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return true,
                Err(broadcast::error::RecvError::Closed) => return false,
            }
        }
    }
}

/// Outcome of a RemoteWipe acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeAck {
    /// Status 1: the entry and the association are now Wiped.
    Wiped,
    /// Another status (2 = wipe failed): recorded; the entry stays Wipe, so the device is asked
    /// again.
    Failed { status: u32 },
    /// The device is not marked for wipe (nothing recorded).
    NotPending,
}

/// The state file. Unknown fields are ignored (additive changes keep the format number; an
/// incompatible change bumps it, and an unknown number refuses to load).
#[derive(Serialize, Deserialize)]
struct StateFile {
    format: u32,
    saved_at: Timestamp,
    devices: Vec<AccessEntry>,
    associations: Vec<Association>,
}

/// The device-access state of one gateway. Share it as `Arc<DeviceAccess>`.
pub struct DeviceAccess {
    policy: ArcSwap<AccessPolicy>,
    /// The naming rules every key was made with: fixed for the life of the process (a reload
    /// that changes them is reported as needing a restart; the state file keeps the spellings,
    /// so keys are made again at start).
    naming: UserNaming,
    portal: RwLock<PortalSync>,
    list: RwLock<AccessList>,
    assoc: Associations,
    changes: broadcast::Sender<AccessChange>,
    /// Bumped by every change of persisted state; `flushed` is the generation last written.
    generation: AtomicU64,
    flushed: AtomicU64,
    flush_lock: tokio::sync::Mutex<()>,
    flush_soon: Notify,
    /// `None`: in-memory only (tests, or persistence disabled by the caller).
    path: Option<PathBuf>,
    /// Where first/last seen, wipe times and list changes take their time from.
    clock: Arc<dyn Clock>,
}

impl DeviceAccess {
    /// An empty, in-memory state (nothing is persisted).
    pub fn in_memory(policy: AccessPolicy) -> Arc<Self> {
        Arc::new(Self::empty(policy, None))
    }

    /// An empty, in-memory state that reads the time from `clock` (tests move it by hand).
    pub fn in_memory_with_clock(policy: AccessPolicy, clock: Arc<dyn Clock>) -> Arc<Self> {
        let mut this = Self::empty(policy, None);
        this.clock = clock;
        Arc::new(this)
    }

    /// Now, by this state's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn empty(policy: AccessPolicy, path: Option<PathBuf>) -> Self {
        Self {
            naming: policy.naming.clone(),
            policy: ArcSwap::from_pointee(policy),
            portal: RwLock::new(PortalSync::NotConfigured),
            list: RwLock::new(AccessList::new()),
            assoc: Associations::new(),
            changes: broadcast::channel(CHANGE_CAPACITY).0,
            generation: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
            flush_soon: Notify::new(),
            path,
            clock: Arc::new(WallClock),
        }
    }

    /// Load the state file at `path` (the policy's `state_file`, resolved by the caller). Missing:
    /// start empty. Unreadable as ours: fail closed (see the module docs).
    pub async fn load(policy: AccessPolicy, path: PathBuf) -> Result<Arc<Self>, AccessError> {
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(AccessError::StateIo { path, source }),
        };
        let max_associations = policy.max_associations;
        let this = Self::empty(policy, Some(path.clone()));
        let Some(bytes) = bytes else {
            tracing::info!(path = %path.display(), "no device state file; starting with an empty access list");
            return Ok(Arc::new(this));
        };
        if let Err(reason) = this.restore(&bytes) {
            let copy = keep_corrupt_copy(&path).await;
            let err = AccessError::CorruptState { path, copy, reason };
            tracing::error!(error = %err, "refusing to start");
            return Err(err);
        }
        let evicted = this.assoc.evict_to(max_associations);
        tracing::info!(
            path = %path.display(),
            devices = this.list.read().len(),
            associations = this.assoc.len(),
            evicted,
            "device state loaded"
        );
        Ok(Arc::new(this))
    }

    fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        let state: StateFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid state JSON: {e}"))?;
        if state.format != STATE_FORMAT {
            return Err(format!(
                "unknown format {} (this gateway writes {STATE_FORMAT})",
                state.format
            ));
        }
        if state.devices.len() > MAX_LIST_ENTRIES {
            return Err(format!(
                "{} entries, more than {MAX_LIST_ENTRIES}",
                state.devices.len()
            ));
        }
        let mut merged = 0usize;
        let mut list = self.list.write();
        for (i, e) in state.devices.into_iter().enumerate() {
            if eas::DeviceId::parse(&e.device_id).is_err()
                || eas::device::validate_user("User", &e.user).is_err()
            {
                return Err(format!("devices[{i}] has an invalid user or device_id"));
            }
            if !list.insert_loaded(&self.naming, e) {
                merged += 1;
            }
        }
        drop(list);
        for a in state.associations {
            if !self.assoc.insert_loaded(&self.naming, a) {
                merged += 1;
            }
        }
        if merged > 0 {
            tracing::warn!(
                merged,
                "device state: entries whose users are one under the current naming rules were merged (the list keeps the stricter state)"
            );
        }
        Ok(())
    }

    // ---- policy and portal -------------------------------------------------------------------

    /// The naming rules of this state's keys.
    pub fn naming(&self) -> &UserNaming {
        &self.naming
    }

    /// The access key of a `(user, DeviceId)` as anyone spelled it.
    pub fn key(&self, user: &str, device_id: &str) -> DeviceKey {
        DeviceKey::new(&self.naming, user, device_id)
    }

    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.load_full()
    }

    /// Apply a reloaded `[device_access]` (new requests use it at once; parked ones re-check).
    /// A changed `state_file` or `flush_interval` takes effect at the next start.
    pub fn set_policy(&self, policy: AccessPolicy) {
        let max = policy.max_associations;
        self.policy.store(Arc::new(policy));
        if self.assoc.evict_to(max) > 0 {
            self.mark_dirty();
        }
        let _ = self.changes.send(AccessChange::All);
    }

    pub fn portal(&self) -> PortalSync {
        *self.portal.read()
    }

    /// Told by the portal sync whether the list is current.
    pub fn set_portal(&self, portal: PortalSync) {
        *self.portal.write() = portal;
    }

    // ---- request path ------------------------------------------------------------------------

    /// Decide a device request and record it in the device's association — the one call per
    /// request. No I/O, no await; one shard lock and the list's read lock, both briefly.
    pub fn check(&self, req: &RequestInfo<'_>) -> Decision {
        self.check_key(&self.key(req.user, req.device_id), req)
    }

    /// [`DeviceAccess::check`] with the key already normalised (the request path builds it once
    /// per request).
    pub fn check_key(&self, key: &DeviceKey, req: &RequestInfo<'_>) -> Decision {
        let policy = self.policy.load();
        let portal = self.portal();
        let now = self.clock.now();
        let decision = self.assoc.with_user(&key.user, |devs| {
            let list = self.list.read();
            let (decision, state) = decide_locked(&policy, portal, &list, devs, key);
            drop(list);
            Associations::record(devs, key, req, &decision, state, now);
            decision
        });
        self.mark_dirty();
        if self.assoc.len() > policy.max_associations {
            // Evict a batch below the bound so the O(n) scan runs rarely.
            let target = policy.max_associations - policy.max_associations / 64;
            let n = self.assoc.evict_to(target);
            tracing::info!(
                evicted = n,
                max = policy.max_associations,
                "associations over the bound; evicted the oldest"
            );
        }
        decision
    }

    /// Record the answer a request got (status; server when forwarded). Cheap; optional.
    pub fn record_response(&self, user: &str, device_id: &str, status: u16, server: Option<&str>) {
        self.record_response_key(&self.key(user, device_id), status, server);
    }

    /// [`DeviceAccess::record_response`] with the key already normalised. A device is admitted
    /// (counts against `max_devices_per_mailbox`) only here: when a server accepted its
    /// credentials, never on the gateway's decision alone — and only while the mailbox has
    /// room, so devices allowed concurrently cannot push it over the limit (the one left out
    /// is blocked by `per_mailbox_limit` on its next request).
    pub fn record_response_key(&self, key: &DeviceKey, status: u16, server: Option<&str>) {
        let limit = self.policy.load().max_devices_per_mailbox;
        let accepted = server.is_some() && credentials_accepted(status);
        let recorded = self.assoc.with_user(&key.user, |devs| {
            let admit = accepted
                && devs
                    .get(&key.device)
                    .is_some_and(|a| !a.admitted && a.access == Action::Allow)
                && {
                    let list = self.list.read();
                    limit == 0
                        || list.get(key).is_some()
                        || other_admitted(&list, devs, key) < limit
                };
            Associations::record_response(devs, key, status, server, admit)
        });
        if recorded {
            self.mark_dirty();
        }
    }

    /// The decision for `(user, device_id)` now, without recording anything (`GET /v1/explain`,
    /// parked requests re-checking).
    pub fn explain(&self, user: &str, device_id: &str) -> Decision {
        self.peek_key(&self.key(user, device_id))
    }

    /// `GET /v1/explain?user=U&device_id=D`: validates the pair (422 naming the parameter), then
    /// returns the decision, the rule, the reasons and a sentence, plus what it was based on:
    /// the list entry and the association (or null).
    pub fn explain_json(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<serde_json::Value, AccessError> {
        let key = validate_key(&self.naming, user, device_id)?;
        let mut v = self.peek_key(&key).explain_json();
        v["user"] = user.into();
        v["device_id"] = device_id.into();
        v["mode"] = serde_json::to_value(self.policy().mode).unwrap_or_default();
        v["listed"] = self
            .list
            .read()
            .get(&key)
            .and_then(|e| serde_json::to_value(e).ok())
            .unwrap_or_default();
        v["association"] = self
            .assoc
            .get(&key)
            .and_then(|a| serde_json::to_value(a).ok())
            .unwrap_or_default();
        Ok(v)
    }

    /// The decision for an already normalised key now, recording nothing (OPTIONS, parked
    /// requests re-checking).
    pub fn peek_key(&self, key: &DeviceKey) -> Decision {
        let policy = self.policy.load();
        let portal = self.portal();
        self.assoc.with_user(&key.user, |devs| {
            let list = self.list.read();
            decide_locked(&policy, portal, &list, devs, key).0
        })
    }

    /// Subscribe to list and policy changes.
    pub fn subscribe_changes(&self) -> AccessChanges {
        AccessChanges {
            rx: self.changes.subscribe(),
        }
    }

    /// For a parked request (Ping, long Sync) of an allowed device: a future that resolves with
    /// the new decision once the device may no longer reach the server (blocked or marked for
    /// wipe). Subscribes at once (before the caller forwards), then re-checks immediately, so a
    /// change between the request's decision and the subscription is not missed. Holds one
    /// broadcast cursor and the key: cheap for thousands of parked Pings. Never resolves in
    /// report-only mode.
    pub fn blocked_signal(
        self: &Arc<Self>,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Decision> + Send + 'static {
        let mut changes = self.subscribe_changes();
        let this = Arc::clone(self);
        let key = self.key(user, device_id);
        async move {
            loop {
                let d = this.peek_key(&key);
                if d.action != Action::Allow {
                    return d;
                }
                if !changes.changed(&key).await {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    // ---- remote wipe -------------------------------------------------------------------------

    /// The gateway answered this device's Provision with a RemoteWipe directive. False if the
    /// device is not marked Wipe (then the caller must not send one).
    pub fn wipe_sent(&self, user: &str, device_id: &str) -> bool {
        let key = self.key(user, device_id);
        let now = self.clock.now();
        let mut list = self.list.write();
        let Some(entry) = list.get_mut(&key).filter(|e| e.state == AccessState::Wipe) else {
            return false;
        };
        let requested_at = entry.updated_at;
        let w = entry
            .wipe
            .get_or_insert(WipeRecord::requested(requested_at));
        w.sent_at = Some(now);
        w.sent_count = w.sent_count.saturating_add(1);
        drop(list);
        self.mark_dirty();
        true
    }

    /// The device acknowledged the RemoteWipe (MS-ASPROV RemoteWipe Status: 1 success, 2
    /// failure). Success marks the entry and the association Wiped and asks the flusher to write
    /// soon (the request path does not wait for the disk).
    pub fn wipe_acknowledged(&self, user: &str, device_id: &str, status: u32) -> WipeAck {
        let key = self.key(user, device_id);
        let now = self.clock.now();
        let mut list = self.list.write();
        let Some(entry) = list.get_mut(&key).filter(|e| e.state == AccessState::Wipe) else {
            return WipeAck::NotPending;
        };
        let requested_at = entry.updated_at;
        let w = entry
            .wipe
            .get_or_insert(WipeRecord::requested(requested_at));
        let outcome = if status == 1 {
            w.acknowledged_at = Some(now);
            entry.state = AccessState::Wiped;
            entry.updated_at = now;
            WipeAck::Wiped
        } else {
            w.last_failure_at = Some(now);
            w.last_failure_status = Some(status);
            WipeAck::Failed { status }
        };
        drop(list);
        if outcome == WipeAck::Wiped {
            self.assoc.update(&key, |a| {
                a.state = Some(AccessState::Wiped);
                a.wiped_at = Some(now);
                a.access = Action::Block;
                "wiped".clone_into(&mut a.rule);
            });
            tracing::info!(device = %key, "remote wipe acknowledged");
            let _ = self
                .changes
                .send(AccessChange::Keys(Arc::new(HashSet::from([key]))));
        } else {
            tracing::warn!(device = %key, status, "remote wipe reported failure");
        }
        self.mark_dirty();
        self.flush_soon.notify_one();
        outcome
    }

    // ---- management --------------------------------------------------------------------------

    /// `PUT /v1/devices`: replace the whole list. Validated as a whole (nothing changes on any
    /// error), applied, broadcast, then persisted before returning. A persistence error leaves
    /// the change in force in memory (a block must work even with a full disk) and is returned
    /// as [`AccessError::StateIo`]; the flusher keeps retrying.
    pub async fn replace(&self, body: &[u8]) -> Result<ChangeReport, AccessError> {
        let change = parse_replace(&self.naming, body)?;
        self.apply(&change).await
    }

    /// `PATCH /v1/devices`: upsert `devices`, remove `remove`. Same guarantees as [`Self::replace`].
    pub async fn patch(&self, body: &[u8]) -> Result<ChangeReport, AccessError> {
        let change = parse_patch(&self.naming, body)?;
        self.apply(&change).await
    }

    /// Apply an already validated change (e.g. from a portal sync), then persist.
    pub async fn apply(&self, change: &ListChange) -> Result<ChangeReport, AccessError> {
        let report = self.apply_in_memory(change)?;
        self.flush().await?;
        Ok(report)
    }

    /// Apply without waiting for the disk (the flusher writes it).
    pub fn apply_in_memory(&self, change: &ListChange) -> Result<ChangeReport, AccessError> {
        let report = self
            .list
            .write()
            .apply(change, self.clock.now(), MAX_LIST_ENTRIES)?;
        if !report.changed.is_empty() {
            self.mark_dirty();
            let msg = if report.changed.len() > MAX_KEYS_PER_CHANGE {
                AccessChange::All
            } else {
                AccessChange::Keys(Arc::new(report.changed.iter().cloned().collect()))
            };
            let _ = self.changes.send(msg);
        }
        tracing::info!(
            added = report.added,
            updated = report.updated,
            removed = report.removed,
            total = report.total,
            "access list changed"
        );
        Ok(report)
    }

    /// Every list entry, sorted by (user, device_id) (`GET /v1/devices`).
    pub fn entries(&self) -> Vec<AccessEntry> {
        self.list.read().entries_sorted()
    }

    pub fn entry(&self, user: &str, device_id: &str) -> Option<AccessEntry> {
        self.list.read().get(&self.key(user, device_id)).cloned()
    }

    /// `GET /v1/associations`.
    pub fn associations(&self, query: &AssociationQuery) -> AssociationPage {
        self.assoc.query(&self.naming, query)
    }

    pub fn association(&self, user: &str, device_id: &str) -> Option<Association> {
        self.assoc.get(&self.key(user, device_id))
    }

    /// Forget a device's association (e.g. a replaced phone, to free its per-mailbox slot).
    pub fn remove_association(&self, user: &str, device_id: &str) -> bool {
        let removed = self.assoc.remove(&self.key(user, device_id));
        if removed {
            self.mark_dirty();
        }
        removed
    }

    // ---- persistence -------------------------------------------------------------------------

    fn mark_dirty(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Unwritten changes exist.
    pub fn is_dirty(&self) -> bool {
        self.generation.load(Ordering::Acquire) != self.flushed.load(Ordering::Acquire)
    }

    /// Ask the flusher to write soon (without waiting).
    pub fn request_flush(&self) {
        self.flush_soon.notify_one();
    }

    /// Write the state file now if anything changed. Returns whether it wrote. Concurrent calls
    /// are serialised so an older snapshot never overwrites a newer one.
    pub async fn flush(&self) -> Result<bool, AccessError> {
        let Some(path) = self.path.clone() else {
            self.flushed
                .store(self.generation.load(Ordering::Acquire), Ordering::Release);
            return Ok(false);
        };
        let _guard = self.flush_lock.lock().await;
        // Read the generation before the snapshot: changes made while snapshotting stay dirty.
        let generation = self.generation.load(Ordering::Acquire);
        if generation == self.flushed.load(Ordering::Acquire) {
            return Ok(false);
        }
        let bytes = self.snapshot_json();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || write_state(&target, &bytes))
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r);
        match written {
            Ok(()) => {
                self.flushed.store(generation, Ordering::Release);
                Ok(true)
            }
            Err(source) => Err(AccessError::StateIo { path, source }),
        }
    }

    /// The state file's bytes (clones under the locks, serialises outside them, so a waiting
    /// writer never stalls the request path behind a long serialisation).
    fn snapshot_json(&self) -> Vec<u8> {
        let devices = self.list.read().entries_sorted();
        let associations = self
            .assoc
            .snapshot_sorted()
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        let state = StateFile {
            format: STATE_FORMAT,
            saved_at: self.clock.now(),
            devices,
            associations,
        };
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_vec(&state).unwrap_or_default()
    }

    /// The background writer: flushes every `flush_interval` (and soon after
    /// [`Self::request_flush`]) while dirty, and once more when `shutdown` resolves. Spawn it
    /// once: `tokio::spawn(access.clone().run_flusher(shutdown))`.
    pub async fn run_flusher(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let mut tick = tokio::time::interval(self.policy().flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {}
                () = self.flush_soon.notified() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "device state not written; will retry");
            }
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "device state not written at shutdown");
        }
    }
}

/// The decision for `key` given the user's associations and the list (both locked by the caller).
fn decide_locked(
    policy: &AccessPolicy,
    portal: PortalSync,
    list: &AccessList,
    devs: &UserDevices,
    key: &DeviceKey,
) -> (Decision, Option<AccessState>) {
    let entry = list.get_parts(&key.user, &key.device);
    let listed = entry.map(|e| (e.state, e.reasons));
    let assoc = devs.get(&key.device);
    let admitted_before = assoc.is_some_and(|a| a.admitted);
    let other_admitted_devices =
        if policy.max_devices_per_mailbox > 0 && listed.is_none() && !admitted_before {
            other_admitted(list, devs, key)
        } else {
            0
        };
    let inputs = AccessInputs {
        policy,
        listed,
        first_seen: assoc.map(|a| a.first_seen),
        admitted_before,
        other_admitted_devices,
        portal,
    };
    (decide(&inputs), listed.map(|l| l.0))
}

/// The user's admitted devices other than `key`'s, not counting ones listed blocked/wipe/wiped.
fn other_admitted(list: &AccessList, devs: &UserDevices, key: &DeviceKey) -> u32 {
    let n = devs
        .iter()
        .filter(|(d, a)| {
            *d != &key.device
                && a.admitted
                && !list.get_parts(&key.user, d).is_some_and(|e| {
                    matches!(
                        e.state,
                        AccessState::Blocked | AccessState::Wipe | AccessState::Wiped
                    )
                })
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Create the directory (0700) if needed and write the file atomically with mode 0600.
fn write_state(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    crate::atomic_file::write_atomic(path, bytes, 0o600)
}

/// Keep the unreadable file for the admin as `<file>.corrupt-<unix seconds>` (mode 0600: it
/// holds the device inventory).
async fn keep_corrupt_copy(path: &Path) -> Option<PathBuf> {
    let secs = Timestamp::now().millis() / 1000;
    let mut name = path.file_name()?.to_os_string();
    name.push(format!(".corrupt-{secs}"));
    let copy = path.with_file_name(name);
    let (from, to) = (path.to_path_buf(), copy.clone());
    let done = tokio::task::spawn_blocking(move || -> io::Result<()> {
        let bytes = std::fs::read(&from)?;
        crate::atomic_file::write_atomic(&to, &bytes, 0o600)
    })
    .await;
    match done {
        Ok(Ok(())) => Some(copy),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not keep a copy of the unreadable device state file");
            None
        }
        Err(_) => None,
    }
}
