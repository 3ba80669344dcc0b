//! Property: any sequence of PATCH bodies (valid or not) and wipe acknowledgements keeps the
//! access list equal to a simple model — an invalid body changes nothing, keys are unique and
//! case-insensitive, `wiped` is only ever set by an acknowledgement.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::collections::{BTreeMap, HashSet};

use gateway::access::{AccessError, AccessPolicy, AccessState, DeviceAccess, WipeAck, parse_patch};
use proptest::prelude::*;
use serde_json::json;

const USERS: [&str; 3] = ["alice", "Bob", "Élodie"];
const DEVICES: [&str; 4] = ["d1", "Dev2", "appl-X_9", "bad id"];
const STATES: [&str; 5] = ["allowed", "blocked", "wipe", "wiped", "nope"];

#[derive(Debug, Clone)]
enum Op {
    Patch {
        devices: Vec<(usize, usize, bool, usize)>,
        remove: Vec<(usize, usize, bool)>,
    },
    WipeAck {
        user: usize,
        device: usize,
        status: u32,
    },
}

fn spell(s: &str, upper: bool) -> String {
    if upper {
        s.to_uppercase()
    } else {
        s.to_owned()
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            prop::collection::vec((0..USERS.len(), 0..DEVICES.len(), any::<bool>(), 0..STATES.len()), 0..5),
            prop::collection::vec((0..USERS.len(), 0..DEVICES.len(), any::<bool>()), 0..3),
        )
            .prop_map(|(devices, remove)| Op::Patch { devices, remove }),
        1 => (0..USERS.len(), 0..DEVICES.len(), 1u32..3).prop_map(|(user, device, status)| Op::WipeAck { user, device, status }),
    ]
}

type Model = BTreeMap<(String, String), AccessState>;

fn key(u: usize, d: usize) -> (String, String) {
    (USERS[u].to_lowercase(), DEVICES[d].to_ascii_lowercase())
}

/// The model's verdict on a body: None if invalid, else the new model.
fn model_patch(
    model: &Model,
    devices: &[(usize, usize, bool, usize)],
    remove: &[(usize, usize, bool)],
) -> Option<Model> {
    let valid_dev = |d: usize| DEVICES[d] != "bad id";
    let mut seen = HashSet::new();
    for &(u, d, _, s) in devices {
        if !valid_dev(d)
            || !matches!(STATES[s], "allowed" | "blocked" | "wipe")
            || !seen.insert(key(u, d))
        {
            return None;
        }
    }
    let mut removing = HashSet::new();
    for &(u, d, _) in remove {
        if !valid_dev(d) || seen.contains(&key(u, d)) || !removing.insert(key(u, d)) {
            return None;
        }
    }
    let mut next = model.clone();
    for k in removing {
        next.remove(&k);
    }
    for &(u, d, _, s) in devices {
        let new = match STATES[s] {
            "allowed" => AccessState::Allowed,
            "blocked" => AccessState::Blocked,
            _ => AccessState::Wipe,
        };
        let k = key(u, d);
        let keep_wiped = next.get(&k) == Some(&AccessState::Wiped) && new == AccessState::Wipe;
        if !keep_wiped {
            next.insert(k, new);
        }
    }
    Some(next)
}

fn snapshot(a: &DeviceAccess) -> Model {
    let entries = a.entries();
    let model: Model = entries
        .iter()
        .map(|e| {
            (
                (e.user.to_lowercase(), e.device_id.to_ascii_lowercase()),
                e.state,
            )
        })
        .collect();
    assert_eq!(
        model.len(),
        entries.len(),
        "keys are unique after normalisation"
    );
    model
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn patch_sequences_keep_invariants(ops in prop::collection::vec(op(), 1..25)) {
        let a = DeviceAccess::in_memory(AccessPolicy::default());
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Patch { devices, remove } => {
                    let body = json!({
                        "devices": devices.iter().map(|&(u, d, up, s)| json!({
                            "user": spell(USERS[u], up), "device_id": spell(DEVICES[d], up), "state": STATES[s], "reasons": ["manual"]
                        })).collect::<Vec<_>>(),
                        "remove": remove.iter().map(|&(u, d, up)| json!({
                            "user": spell(USERS[u], !up), "device_id": spell(DEVICES[d], up)
                        })).collect::<Vec<_>>(),
                    });
                    let bytes = serde_json::to_vec(&body).unwrap();
                    let expected = model_patch(&model, &devices, &remove);
                    let before = a.entries();
                    let got = parse_patch(a.naming(), &bytes).and_then(|c| a.apply_in_memory(&c));
                    match (expected, got) {
                        (Some(next), Ok(_)) => model = next,
                        (None, Err(AccessError::InvalidBody { errors })) => {
                            prop_assert!(!errors.is_empty());
                            prop_assert_eq!(a.entries(), before, "an invalid body changed the list");
                        }
                        (e, g) => prop_assert!(false, "model {:?} vs gateway {:?}", e.is_some(), g),
                    }
                }
                Op::WipeAck { user, device, status } => {
                    let k = key(user, device);
                    let pending = model.get(&k) == Some(&AccessState::Wipe);
                    let got = a.wipe_acknowledged(&spell(USERS[user], true), DEVICES[device], status);
                    match (pending, status, got) {
                        (true, 1, WipeAck::Wiped) => { model.insert(k, AccessState::Wiped); }
                        (true, s, WipeAck::Failed { status }) => prop_assert_eq!(s, status),
                        (false, _, WipeAck::NotPending) => {}
                        (p, s, g) => prop_assert!(false, "pending {} status {} got {:?}", p, s, g),
                    }
                }
            }
            prop_assert_eq!(snapshot(&a), model.clone());
        }
    }
}
