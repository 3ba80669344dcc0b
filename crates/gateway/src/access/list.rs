//! The access list: `(user, DeviceId)` → Allowed | Blocked | Wipe | Wiped with reason flags, and
//! the `PUT` / `PATCH /v1/devices` bodies that change it — validated as a whole before anything
//! changes.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::time::Timestamp;
use super::{AccessError, DeviceKey, FieldError, UserNaming};

/// Most entries the list may hold (also bounds one body).
pub const MAX_LIST_ENTRIES: usize = 1_000_000;
/// Most errors reported for one body (the rest are summarised by the count).
const MAX_REPORTED_ERRORS: usize = 100;
/// Most reason flags one entry may carry in a body (there are 9 distinct ones).
const MAX_REASONS_IN_BODY: usize = 32;

/// State of a listed device, in order of strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    Allowed,
    Blocked,
    /// Wipe requested: the device is sent a RemoteWipe directive the next time it provisions.
    Wipe,
    /// The device acknowledged the wipe (set only by the gateway, never by a body).
    Wiped,
}

impl AccessState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Blocked => "blocked",
            Self::Wipe => "wipe",
            Self::Wiped => "wiped",
        }
    }
}

/// Why a device is in its state. Bit flags as in the incumbent's market, kept as a compact set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Registered,
    Manual,
    PerMailboxLimit,
    Unregistered,
    Compliance,
    OsVersion,
    Compromised,
    ExchangeReported,
    PolicyOutOfDate,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Registered,
        Reason::Manual,
        Reason::PerMailboxLimit,
        Reason::Unregistered,
        Reason::Compliance,
        Reason::OsVersion,
        Reason::Compromised,
        Reason::ExchangeReported,
        Reason::PolicyOutOfDate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Manual => "manual",
            Self::PerMailboxLimit => "per_mailbox_limit",
            Self::Unregistered => "unregistered",
            Self::Compliance => "compliance",
            Self::OsVersion => "os_version",
            Self::Compromised => "compromised",
            Self::ExchangeReported => "exchange_reported",
            Self::PolicyOutOfDate => "policy_out_of_date",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Reason`]s (2 bytes per entry; a million entries stay small). JSON: a sorted array
/// of snake_case strings.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u16);

impl Reasons {
    pub const EMPTY: Reasons = Reasons(0);

    pub fn of(reasons: &[Reason]) -> Self {
        reasons.iter().copied().collect()
    }
    pub fn insert(&mut self, r: Reason) {
        self.0 |= r.bit();
    }
    pub fn contains(self, r: Reason) -> bool {
        self.0 & r.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl FromIterator<Reason> for Reasons {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> Self {
        let mut set = Reasons::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Reason::as_str))
            .finish()
    }
}

impl Serialize for Reasons {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Reasons {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<Reason>::deserialize(d)?.into_iter().collect())
    }
}

/// Remote-wipe progress of an entry in state Wipe or Wiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeRecord {
    /// When the wipe was put on the list.
    pub requested_at: Timestamp,
    /// Last time the gateway answered the device's Provision with a RemoteWipe directive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Timestamp>,
    /// How many RemoteWipe directives were sent.
    #[serde(default)]
    pub sent_count: u32,
    /// When the device acknowledged with status 1 (wipe done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
    /// Last acknowledgement with a failure status (2 = wipe failed) and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_status: Option<u32>,
}

impl WipeRecord {
    pub(crate) fn requested(now: Timestamp) -> Self {
        Self {
            requested_at: now,
            sent_at: None,
            sent_count: 0,
            acknowledged_at: None,
            last_failure_at: None,
            last_failure_status: None,
        }
    }
}

/// One access-list entry as stored, persisted and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// As the portal spelled it.
    pub user: String,
    /// As the portal spelled it.
    pub device_id: String,
    pub state: AccessState,
    pub reasons: Reasons,
    /// Last change of state or reasons.
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipeRecord>,
}

impl AccessEntry {
    pub fn key(&self, naming: &UserNaming) -> DeviceKey {
        DeviceKey::new(naming, &self.user, &self.device_id)
    }
}

/// A validated entry of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpec {
    pub key: DeviceKey,
    pub user: String,
    pub device_id: String,
    pub state: AccessState,
    pub reasons: Reasons,
}

/// `PUT` (replace the whole list) or `PATCH` (upsert some, remove some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Replace,
    Patch,
}

/// A validated management body, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListChange {
    pub kind: ChangeKind,
    pub upserts: Vec<EntrySpec>,
    pub removes: Vec<DeviceKey>,
}

/// What a change did (the management API returns it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangeReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Entries now on the list.
    pub total: usize,
    /// Keys whose state or reasons changed (for the change broadcast; not serialized).
    #[serde(skip)]
    pub changed: Vec<DeviceKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    devices: Option<Vec<RawEntry>>,
    remove: Option<Vec<RawKey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    user: Option<String>,
    device_id: Option<String>,
    state: Option<String>,
    #[serde(default)]
    reasons: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    user: Option<String>,
    device_id: Option<String>,
}

/// Parse and validate a `PUT /v1/devices` body: `devices` required (an empty array clears the
/// list; a missing one is refused so `{}` never wipes the list by accident), no `remove`.
pub fn parse_replace(naming: &UserNaming, body: &[u8]) -> Result<ListChange, AccessError> {
    parse(naming, body, ChangeKind::Replace)
}

/// Parse and validate a `PATCH /v1/devices` body: `devices` upserted, `remove` removed (absent
/// keys are ignored: removing twice is not an error); a key may not be in both.
pub fn parse_patch(naming: &UserNaming, body: &[u8]) -> Result<ListChange, AccessError> {
    parse(naming, body, ChangeKind::Patch)
}

struct Errors(Vec<FieldError>, usize);

impl Errors {
    fn push(&mut self, e: FieldError) {
        self.1 += 1;
        if self.0.len() < MAX_REPORTED_ERRORS {
            self.0.push(e);
        }
    }
}

fn parse(naming: &UserNaming, body: &[u8], kind: ChangeKind) -> Result<ListChange, AccessError> {
    let raw: RawBody = serde_json::from_slice(body).map_err(|e| AccessError::BadJson {
        message: e.to_string(),
    })?;
    let mut errors = Errors(Vec::new(), 0);
    if kind == ChangeKind::Replace {
        if raw.remove.is_some() {
            errors.push(FieldError::new(
                "remove",
                "",
                "absent in PUT (use PATCH to remove entries)",
            ));
        }
        if raw.devices.is_none() {
            errors.push(FieldError::new(
                "devices",
                "",
                "present in PUT (an empty array clears the list)",
            ));
        }
    }
    let devices = raw.devices.unwrap_or_default();
    let remove = raw.remove.unwrap_or_default();
    for (name, len) in [("devices", devices.len()), ("remove", remove.len())] {
        if len > MAX_LIST_ENTRIES {
            tracing::debug!(field = name, len, "device list body too large");
            return Err(AccessError::TooManyEntries {
                count: len,
                limit: MAX_LIST_ENTRIES,
            });
        }
    }

    let mut seen: HashMap<DeviceKey, usize> = HashMap::with_capacity(devices.len());
    let mut upserts = Vec::with_capacity(devices.len());
    for (i, e) in devices.into_iter().enumerate() {
        let user = check_user(
            &format!("devices[{i}].user"),
            e.user.as_deref(),
            &mut errors,
        );
        let dev = check_device_id(
            &format!("devices[{i}].device_id"),
            e.device_id.as_deref(),
            &mut errors,
        );
        let state = match e.state.as_deref() {
            Some("allowed") => Some(AccessState::Allowed),
            Some("blocked") => Some(AccessState::Blocked),
            Some("wipe") => Some(AccessState::Wipe),
            other => {
                errors.push(FieldError::new(
                    format!("devices[{i}].state"),
                    other.unwrap_or(""),
                    "one of: allowed, blocked, wipe",
                ));
                None
            }
        };
        let mut reasons = Reasons::EMPTY;
        if e.reasons.len() > MAX_REASONS_IN_BODY {
            errors.push(FieldError::new(
                format!("devices[{i}].reasons"),
                "",
                "at most 32 reason flags",
            ));
        } else {
            for (j, r) in e.reasons.iter().enumerate() {
                match Reason::parse(r) {
                    Some(r) => reasons.insert(r),
                    None => errors.push(FieldError::new(
                        format!("devices[{i}].reasons[{j}]"),
                        r,
                        "one of: registered, manual, per_mailbox_limit, unregistered, compliance, os_version, compromised, exchange_reported, policy_out_of_date",
                    )),
                }
            }
        }
        if let (Some(user), Some(device_id), Some(state)) = (user, dev, state) {
            let key = DeviceKey::new(naming, &user, &device_id);
            if let Some(first) = seen.insert(key.clone(), i) {
                errors.push(FieldError::new(
                    format!("devices[{i}]"),
                    &format!("{user}/{device_id}"),
                    format!("unique in the body (same user and device_id as devices[{first}])"),
                ));
            }
            upserts.push(EntrySpec {
                key,
                user,
                device_id,
                state,
                reasons,
            });
        }
    }

    let mut removing: HashSet<DeviceKey> = HashSet::with_capacity(remove.len());
    let mut removes = Vec::with_capacity(remove.len());
    for (i, k) in remove.into_iter().enumerate() {
        let user = check_user(&format!("remove[{i}].user"), k.user.as_deref(), &mut errors);
        let dev = check_device_id(
            &format!("remove[{i}].device_id"),
            k.device_id.as_deref(),
            &mut errors,
        );
        if let (Some(user), Some(device_id)) = (user, dev) {
            let key = DeviceKey::new(naming, &user, &device_id);
            if let Some(j) = seen.get(&key) {
                errors.push(FieldError::new(
                    format!("remove[{i}]"),
                    &format!("{user}/{device_id}"),
                    format!("not also in devices (it is devices[{j}])"),
                ));
            } else if !removing.insert(key.clone()) {
                errors.push(FieldError::new(
                    format!("remove[{i}]"),
                    &format!("{user}/{device_id}"),
                    "unique in remove",
                ));
            } else {
                removes.push(key);
            }
        }
    }

    if errors.1 > 0 {
        let Errors(mut list, total) = errors;
        if total > list.len() {
            list.push(FieldError::new(
                "body",
                "",
                format!("valid ({} more errors not shown)", total - list.len()),
            ));
        }
        return Err(AccessError::InvalidBody { errors: list });
    }
    Ok(ListChange {
        kind,
        upserts,
        removes,
    })
}

/// Validate a `(user, device_id)` pair given by an admin (e.g. `GET /v1/explain?user=&device_id=`)
/// with the same rules as a body, and normalise it.
pub fn validate_key(
    naming: &UserNaming,
    user: &str,
    device_id: &str,
) -> Result<DeviceKey, AccessError> {
    let mut errors = Errors(Vec::new(), 0);
    let u = check_user("user", Some(user), &mut errors);
    let d = check_device_id("device_id", Some(device_id), &mut errors);
    match (u, d) {
        (Some(u), Some(d)) => Ok(DeviceKey::new(naming, &u, &d)),
        _ => Err(AccessError::InvalidBody { errors: errors.0 }),
    }
}

/// `User` rules shared with the request parser (`eas::device::validate_user`): 1..=256
/// characters, no control characters.
fn check_user(field: &str, value: Option<&str>, errors: &mut Errors) -> Option<String> {
    let Some(v) = value else {
        errors.push(FieldError::new(field, "", "present"));
        return None;
    };
    match eas::device::validate_user("User", v) {
        Ok(()) => Some(v.to_owned()),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                v,
                "1..=256 characters without control characters",
            ));
            None
        }
    }
}

/// DeviceId rules shared with the request parser (`eas::DeviceId::parse`): 1..=32 ASCII letters,
/// digits, `-` or `_` (MS-ASHTTP 2.2.1.1.1.2.3 only forbids commas and "special characters").
fn check_device_id(field: &str, value: Option<&str>, errors: &mut Errors) -> Option<String> {
    let Some(v) = value else {
        errors.push(FieldError::new(field, "", "present"));
        return None;
    };
    match eas::DeviceId::parse(v) {
        Ok(id) => Some(id.as_str().to_owned()),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                v,
                "1..=32 ASCII letters, digits, '-' or '_'",
            ));
            None
        }
    }
}

/// The list itself: user → (device → entry), so the per-mailbox count and the per-user checks
/// look at one small inner map.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    users: HashMap<String, HashMap<String, AccessEntry>>,
    len: usize,
}

impl AccessList {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &DeviceKey) -> Option<&AccessEntry> {
        self.users.get(&key.user)?.get(&key.device)
    }

    /// Lookup by normalised parts (no allocation).
    pub fn get_parts(&self, user_key: &str, device_key: &str) -> Option<&AccessEntry> {
        self.users.get(user_key)?.get(device_key)
    }

    pub(crate) fn get_mut(&mut self, key: &DeviceKey) -> Option<&mut AccessEntry> {
        self.users.get_mut(&key.user)?.get_mut(&key.device)
    }

    /// Every entry, sorted by key (stable order for listing and the state file).
    pub fn entries_sorted(&self) -> Vec<AccessEntry> {
        let mut all: Vec<(DeviceKey, &AccessEntry)> = self
            .users
            .iter()
            .flat_map(|(u, devs)| {
                devs.iter().map(move |(d, e)| {
                    (
                        DeviceKey {
                            user: u.clone(),
                            device: d.clone(),
                        },
                        e,
                    )
                })
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, e)| e.clone()).collect()
    }

    /// Insert a loaded entry (start-up). Two entries that the naming rules now make one key (an
    /// upgrade, or new `default_domain` / `domain_aliases`) keep the stricter state (wipe over
    /// block over allow), so a blocked device is never let in by a change of spelling. Returns
    /// false when it merged.
    pub(crate) fn insert_loaded(&mut self, naming: &UserNaming, entry: AccessEntry) -> bool {
        let key = entry.key(naming);
        let devs = self.users.entry(key.user).or_default();
        if let Some(old) = devs.get_mut(&key.device) {
            if entry.state > old.state {
                *old = entry;
            }
            return false;
        }
        devs.insert(key.device, entry);
        self.len += 1;
        true
    }

    fn remove(&mut self, key: &DeviceKey) -> Option<AccessEntry> {
        let devs = self.users.get_mut(&key.user)?;
        let old = devs.remove(&key.device)?;
        if devs.is_empty() {
            self.users.remove(&key.user);
        }
        self.len -= 1;
        Some(old)
    }

    /// Apply a validated change, all or nothing: the size bound is checked before the first
    /// mutation, and nothing after that check can fail.
    ///
    /// Wipe semantics: setting `wipe` on an entry already Wipe keeps its progress; on an entry
    /// already Wiped it stays Wiped (the portal keeps sending `wipe` after the device confirmed;
    /// re-arming needs another state first). Any non-wipe state drops the wipe record.
    pub fn apply(
        &mut self,
        change: &ListChange,
        now: Timestamp,
        limit: usize,
    ) -> Result<ChangeReport, AccessError> {
        let resulting = match change.kind {
            ChangeKind::Replace => change.upserts.len(),
            ChangeKind::Patch => {
                let added = change
                    .upserts
                    .iter()
                    .filter(|s| self.get(&s.key).is_none())
                    .count();
                let removed = change
                    .removes
                    .iter()
                    .filter(|k| self.get(k).is_some())
                    .count();
                (self.len + added).saturating_sub(removed)
            }
        };
        if resulting > limit {
            return Err(AccessError::TooManyEntries {
                count: resulting,
                limit,
            });
        }

        let mut report = ChangeReport::default();
        if change.kind == ChangeKind::Replace {
            let keep: HashSet<&DeviceKey> = change.upserts.iter().map(|s| &s.key).collect();
            let gone: Vec<DeviceKey> = self
                .users
                .iter()
                .flat_map(|(u, devs)| {
                    devs.keys().map(move |d| DeviceKey {
                        user: u.clone(),
                        device: d.clone(),
                    })
                })
                .filter(|k| !keep.contains(k))
                .collect();
            for k in gone {
                self.remove(&k);
                report.removed += 1;
                report.changed.push(k);
            }
        }
        for k in &change.removes {
            if self.remove(k).is_some() {
                report.removed += 1;
                report.changed.push(k.clone());
            }
        }
        for spec in &change.upserts {
            match self.get_mut(&spec.key) {
                Some(entry) => {
                    let new_state = match (entry.state, spec.state) {
                        (AccessState::Wiped, AccessState::Wipe) => AccessState::Wiped,
                        (_, s) => s,
                    };
                    let wipe = match new_state {
                        AccessState::Wipe | AccessState::Wiped => Some(
                            entry
                                .wipe
                                .filter(|_| entry.state == new_state)
                                .unwrap_or(WipeRecord::requested(now)),
                        ),
                        _ => None,
                    };
                    let changed = entry.state != new_state || entry.reasons != spec.reasons;
                    let respelled = entry.user != spec.user || entry.device_id != spec.device_id;
                    if changed {
                        entry.state = new_state;
                        entry.reasons = spec.reasons;
                        entry.updated_at = now;
                        entry.wipe = wipe;
                        report.updated += 1;
                        report.changed.push(spec.key.clone());
                    } else {
                        report.unchanged += 1;
                    }
                    if respelled {
                        entry.user.clone_from(&spec.user);
                        entry.device_id.clone_from(&spec.device_id);
                    }
                }
                None => {
                    let entry = AccessEntry {
                        user: spec.user.clone(),
                        device_id: spec.device_id.clone(),
                        state: spec.state,
                        reasons: spec.reasons,
                        updated_at: now,
                        wipe: (spec.state == AccessState::Wipe).then(|| WipeRecord::requested(now)),
                    };
                    self.users
                        .entry(spec.key.user.clone())
                        .or_default()
                        .insert(spec.key.device.clone(), entry);
                    self.len += 1;
                    report.added += 1;
                    report.changed.push(spec.key.clone());
                }
            }
        }
        report.total = self.len;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: UserNaming = UserNaming::EMPTY;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn issue_body_parses() {
        let c = parse_patch(&N, br#"{"devices": [{"user": "alice", "device_id": "ApplF17XYZ", "state": "blocked", "reasons": ["manual", "compromised"]}],
                 "remove": [{"user": "Bob", "device_id": "Dev1"}]}"#,
        )
        .unwrap();
        assert_eq!(c.upserts.len(), 1);
        assert_eq!(c.upserts[0].key, DeviceKey::new(&N, "ALICE", "applf17xyz"));
        assert_eq!(c.upserts[0].device_id, "ApplF17XYZ");
        assert_eq!(
            c.upserts[0].reasons,
            Reasons::of(&[Reason::Manual, Reason::Compromised])
        );
        assert_eq!(c.removes, vec![DeviceKey::new(&N, "bob", "dev1")]);
    }

    #[test]
    fn put_rules() {
        assert!(matches!(
            parse_replace(&N, br#"{}"#),
            Err(AccessError::InvalidBody { .. })
        ));
        let Err(AccessError::InvalidBody { errors }) = parse_replace(
            &N,
            br#"{"devices": [], "remove": [{"user":"a","device_id":"b"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(errors[0].field, "remove");
        assert_eq!(
            parse_replace(&N, br#"{"devices": []}"#)
                .unwrap()
                .upserts
                .len(),
            0
        );
    }

    #[test]
    fn errors_name_index_and_field() {
        let body = br#"{"devices": [
            {"user": "alice", "device_id": "ok1", "state": "allowed"},
            {"user": "", "device_id": "bad,id", "state": "gone", "reasons": ["manual", "nope"]},
            {"user": "ALICE", "device_id": "OK1", "state": "blocked"},
            {"device_id": "x", "state": "wiped"}
        ], "remove": [{"user": "alice", "device_id": "ok1"}, {"user": "u", "device_id": "a-33-chars-aaaaaaaaaaaaaaaaaaaaaa"}]}"#;
        let Err(AccessError::InvalidBody { errors }) = parse_patch(&N, body) else {
            panic!()
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "devices[1].user",
                "devices[1].device_id",
                "devices[1].state",
                "devices[1].reasons[1]",
                "devices[2]",
                "devices[3].user",
                "devices[3].state",
                "remove[0]",
                "remove[1].device_id",
            ]
        );
        assert!(errors[4].allowed.contains("devices[0]"));
        assert_eq!(errors[1].value, "bad,id");
    }

    #[test]
    fn bad_json_and_unknown_fields() {
        assert!(matches!(
            parse_patch(&N, b"{"),
            Err(AccessError::BadJson { .. })
        ));
        assert!(matches!(
            parse_patch(&N, br#"{"devices": [], "extra": 1}"#),
            Err(AccessError::BadJson { .. })
        ));
        assert!(matches!(
            parse_patch(
                &N,
                br#"{"devices": [{"user":"a","device_id":"b","state":"allowed","colour":"red"}]}"#
            ),
            Err(AccessError::BadJson { .. })
        ));
        let e = parse_patch(&N, b"\x00").unwrap_err();
        assert_eq!(
            (e.fault(), e.http_status()),
            (super::super::Fault::Client, 400)
        );
    }

    #[test]
    fn control_characters_are_escaped_in_errors() {
        let Err(AccessError::InvalidBody { errors }) = parse_patch(
            &N,
            br#"{"devices": [{"user":"a\nFAKE LOG","device_id":"b","state":"allowed"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(errors[0].value, "a\\nFAKE LOG");
    }

    #[test]
    fn apply_patch_and_replace() {
        let mut l = AccessList::new();
        let c = parse_patch(&N, br#"{"devices": [{"user":"a","device_id":"d1","state":"allowed"},{"user":"a","device_id":"d2","state":"blocked","reasons":["manual"]}]}"#).unwrap();
        let r = l.apply(&c, t(1), 10).unwrap();
        assert_eq!((r.added, r.total), (2, 2));
        // Same again: unchanged, no broadcast keys.
        let r = l.apply(&c, t(2), 10).unwrap();
        assert_eq!((r.unchanged, r.changed.len()), (2, 0));
        assert_eq!(
            l.get(&DeviceKey::new(&N, "A", "D1")).unwrap().updated_at,
            t(1)
        );
        // Replace keeps only d2 (now allowed).
        let c = parse_replace(
            &N,
            br#"{"devices": [{"user":"a","device_id":"D2","state":"allowed"}]}"#,
        )
        .unwrap();
        let r = l.apply(&c, t(3), 10).unwrap();
        assert_eq!((r.removed, r.updated, r.total), (1, 1, 1));
        assert_eq!(
            l.get(&DeviceKey::new(&N, "a", "d2")).unwrap().device_id,
            "D2"
        );
        // Limit checked before anything changes.
        let c = parse_patch(&N, br#"{"devices": [{"user":"b","device_id":"x","state":"allowed"},{"user":"c","device_id":"x","state":"allowed"}]}"#).unwrap();
        assert!(matches!(
            l.apply(&c, t(4), 2),
            Err(AccessError::TooManyEntries { count: 3, limit: 2 })
        ));
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn wipe_progress_survives_repeated_wipe() {
        let mut l = AccessList::new();
        let wipe = parse_patch(
            &N,
            br#"{"devices": [{"user":"a","device_id":"d","state":"wipe"}]}"#,
        )
        .unwrap();
        l.apply(&wipe, t(1), 10).unwrap();
        let k = DeviceKey::new(&N, "a", "d");
        l.get_mut(&k).unwrap().state = AccessState::Wiped;
        let r = l.apply(&wipe, t(2), 10).unwrap();
        assert_eq!(r.unchanged, 1);
        assert_eq!(l.get(&k).unwrap().state, AccessState::Wiped);
        let allow = parse_patch(
            &N,
            br#"{"devices": [{"user":"a","device_id":"d","state":"allowed"}]}"#,
        )
        .unwrap();
        l.apply(&allow, t(3), 10).unwrap();
        assert_eq!(l.get(&k).unwrap().wipe, None);
        l.apply(&wipe, t(4), 10).unwrap();
        assert_eq!(l.get(&k).unwrap().state, AccessState::Wipe);
        assert_eq!(l.get(&k).unwrap().wipe.unwrap().requested_at, t(4));
    }

    #[test]
    fn reasons_serde() {
        let r = Reasons::of(&[Reason::PolicyOutOfDate, Reason::Manual]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"["manual","policy_out_of_date"]"#
        );
        let back: Reasons =
            serde_json::from_str(r#"["policy_out_of_date","manual","manual"]"#).unwrap();
        assert_eq!(back, r);
        for reason in Reason::ALL {
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{}\"", reason.as_str())
            );
        }
    }
}
