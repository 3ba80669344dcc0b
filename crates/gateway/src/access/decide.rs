//! The one access decision. Pure: everything it looks at is in [`AccessInputs`], so the request
//! path, `GET /v1/explain` and the tests all get the same answer from the same function.

use serde::Serialize;
use serde_json::json;

use super::config::{AccessMode, AccessPolicy, AllowBlock};
use super::list::{AccessState, Reason, Reasons};
use super::time::Timestamp;

/// What happens to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Forward to the server.
    Allow,
    /// Answer `blocked_response` (403/456); the server never sees it.
    Block,
    /// Make the device provision (449 / Status 142) and answer its Provision with RemoteWipe.
    Wipe,
}

impl Action {
    /// `ALLOW` / `BLOCK` / `WIPE`, as in the audit line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Block => "BLOCK",
            Self::Wipe => "WIPE",
        }
    }
}

/// Whether the gateway knows the portal's list is current. The caller (portal sync) owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalSync {
    /// No portal feeds this gateway: the list is all there is, every unlisted device is
    /// "unregistered".
    NotConfigured,
    /// The portal synced and is reachable.
    InSync,
    /// Started from the persisted list; the portal has not synced since `since` (start-up).
    NeverSynced { since: Timestamp },
    /// The portal has been unreachable since `since`.
    Unreachable { since: Timestamp },
}

impl PortalSync {
    /// Since when the list may be missing devices the portal registered meanwhile.
    fn stale_since(self) -> Option<Timestamp> {
        match self {
            Self::NotConfigured | Self::InSync => None,
            Self::NeverSynced { since } | Self::Unreachable { since } => Some(since),
        }
    }
}

/// Which rule made a decision (returned by `GET /v1/explain`, written to the audit line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Listed `wiped`: the device confirmed a remote wipe; it stays blocked until the list says
    /// otherwise.
    Wiped,
    /// Listed `wipe`.
    ListedWipe,
    /// Listed `blocked`.
    ListedBlocked,
    /// Listed `allowed` (the portal's decision; not subject to the per-mailbox limit).
    ListedAllowed,
    /// Unlisted, first seen while the portal's list may be stale: `when_portal_unreachable = allow`.
    PortalUnreachableNewAllowed,
    /// Unlisted, first seen while the portal's list may be stale: `when_portal_unreachable = block`.
    PortalUnreachableNewBlocked,
    /// Unlisted: `unregistered = allow`.
    UnregisteredAllowed,
    /// Unlisted: `unregistered = block`.
    UnregisteredBlocked,
    /// Unlisted and new: the user already has `count` admitted devices, `limit` allowed.
    PerMailboxLimit { limit: u32, count: u32 },
    /// `mode = report-only`: the request is let through; `inner` is what enforce would do.
    ReportOnly { would: Action, inner: Box<Rule> },
}

impl Rule {
    /// Stable snake_case name (audit field, explain `rule`, association `rule`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Wiped => "wiped",
            Self::ListedWipe => "listed_wipe",
            Self::ListedBlocked => "listed_blocked",
            Self::ListedAllowed => "listed_allowed",
            Self::PortalUnreachableNewAllowed => "portal_unreachable_new_allowed",
            Self::PortalUnreachableNewBlocked => "portal_unreachable_new_blocked",
            Self::UnregisteredAllowed => "unregistered_allowed",
            Self::UnregisteredBlocked => "unregistered_blocked",
            Self::PerMailboxLimit { .. } => "per_mailbox_limit",
            Self::ReportOnly { .. } => "report_only",
        }
    }

    /// The enforce-mode rule (itself unless report-only).
    pub fn effective(&self) -> &Rule {
        match self {
            Self::ReportOnly { inner, .. } => inner,
            other => other,
        }
    }

    /// One sentence for the admin.
    pub fn describe(&self) -> String {
        match self {
            Self::Wiped => "the device acknowledged a remote wipe; it stays blocked until the list changes".into(),
            Self::ListedWipe => "the access list marks the device for remote wipe".into(),
            Self::ListedBlocked => "the access list blocks the device".into(),
            Self::ListedAllowed => "the access list allows the device".into(),
            Self::PortalUnreachableNewAllowed => {
                "the device is not on the list and was first seen while the portal was unreachable; when_portal_unreachable = allow".into()
            }
            Self::PortalUnreachableNewBlocked => {
                "the device is not on the list and was first seen while the portal was unreachable; when_portal_unreachable = block".into()
            }
            Self::UnregisteredAllowed => "the device is not on the list; unregistered = allow".into(),
            Self::UnregisteredBlocked => "the device is not on the list; unregistered = block".into(),
            Self::PerMailboxLimit { limit, count } => format!(
                "the user already has {count} admitted devices and max_devices_per_mailbox = {limit}; this new device is blocked"
            ),
            Self::ReportOnly { would, inner } => format!(
                "mode = report-only: let through; enforce would {}: {}",
                would.as_str(),
                inner.describe()
            ),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What the request path does.
    pub action: Action,
    pub rule: Rule,
    /// Reason flags: the list entry's, or the implied one (`unregistered`, `per_mailbox_limit`).
    pub reasons: Reasons,
    /// Report-only: enforce mode would have blocked or wiped (log it). Always false in enforce.
    pub would_block: bool,
}

impl Decision {
    /// What enforce mode does (equals `action` unless report-only).
    pub fn enforced_action(&self) -> Action {
        match &self.rule {
            Rule::ReportOnly { would, .. } => *would,
            _ => self.action,
        }
    }

    /// The body of `GET /v1/explain`: decision, rule, reasons and a sentence.
    pub fn explain_json(&self) -> serde_json::Value {
        let effective = self.rule.effective();
        let mut v = json!({
            "decision": self.action.as_str(),
            "rule": self.rule.name(),
            "reasons": self.reasons,
            "explanation": self.rule.describe(),
        });
        if let Rule::ReportOnly { would, inner } = &self.rule {
            v["report_only"] = json!({ "would": would.as_str(), "rule": inner.name(), "would_block": self.would_block });
        }
        if let Rule::PerMailboxLimit { limit, count } = effective {
            v["limit"] = json!(limit);
            v["count"] = json!(count);
        }
        v
    }
}

/// Everything [`decide`] looks at for one `(user, DeviceId)`.
#[derive(Debug, Clone, Copy)]
pub struct AccessInputs<'a> {
    pub policy: &'a AccessPolicy,
    /// The device's access-list entry, if listed.
    pub listed: Option<(AccessState, Reasons)>,
    /// When the gateway first saw this device (its association), if ever.
    pub first_seen: Option<Timestamp>,
    /// The device was admitted before (an existing device keeps working under the limit).
    pub admitted_before: bool,
    /// The user's other admitted DeviceIds, not counting ones listed blocked/wipe/wiped.
    /// Only read when the per-mailbox limit applies.
    pub other_admitted_devices: u32,
    pub portal: PortalSync,
}

/// Decide what happens to a device's request.
///
/// Decision order (first match wins; this is the admin-facing contract):
/// 1. Listed `wiped` → **Block** (`wiped`): the wipe was confirmed; a device that comes back
///    under that id gets no mail until the list changes.
/// 2. Listed `wipe` → **Wipe** (`listed_wipe`).
/// 3. Listed `blocked` → **Block** (`listed_blocked`).
/// 4. Listed `allowed` → **Allow** (`listed_allowed`); the portal's word beats the
///    per-mailbox limit.
/// 5. Not listed, and the portal's list may be stale (unreachable, or not synced since start-up)
///    and the device was first seen during that time (or never) →
///    `when_portal_unreachable`: `portal_unreachable_new_allowed` / `_blocked`.
/// 6. Not listed otherwise → `unregistered`: `unregistered_allowed` / `unregistered_blocked`.
/// 7. If 5 or 6 allowed it, `max_devices_per_mailbox` > 0, the device was never admitted and the
///    user already has that many admitted devices (devices listed blocked/wipe/wiped don't
///    count) → **Block** (`per_mailbox_limit`). Existing devices keep working.
/// 8. `mode = report-only`: the action becomes **Allow** and the rule `report_only` wraps the
///    enforce-mode rule; `would_block` says whether enforce would have blocked or wiped.
pub fn decide(inputs: &AccessInputs<'_>) -> Decision {
    let inner = decide_enforce(inputs);
    match inputs.policy.mode {
        AccessMode::Enforce => inner,
        AccessMode::ReportOnly => Decision {
            action: Action::Allow,
            would_block: inner.action != Action::Allow,
            reasons: inner.reasons,
            rule: Rule::ReportOnly {
                would: inner.action,
                inner: Box::new(inner.rule),
            },
        },
    }
}

fn decide_enforce(i: &AccessInputs<'_>) -> Decision {
    let d = |action, rule, reasons| Decision {
        action,
        rule,
        reasons,
        would_block: false,
    };
    if let Some((state, reasons)) = i.listed {
        return match state {
            AccessState::Wiped => d(Action::Block, Rule::Wiped, reasons),
            AccessState::Wipe => d(Action::Wipe, Rule::ListedWipe, reasons),
            AccessState::Blocked => d(Action::Block, Rule::ListedBlocked, reasons),
            AccessState::Allowed => d(Action::Allow, Rule::ListedAllowed, reasons),
        };
    }
    let unregistered = Reasons::of(&[Reason::Unregistered]);
    let new_while_stale = match i.portal.stale_since() {
        Some(since) => i.first_seen.is_none_or(|first| first >= since),
        None => false,
    };
    let base = if new_while_stale {
        match i.policy.when_portal_unreachable {
            AllowBlock::Allow => Rule::PortalUnreachableNewAllowed,
            AllowBlock::Block => {
                return d(
                    Action::Block,
                    Rule::PortalUnreachableNewBlocked,
                    unregistered,
                );
            }
        }
    } else {
        match i.policy.unregistered {
            AllowBlock::Allow => Rule::UnregisteredAllowed,
            AllowBlock::Block => return d(Action::Block, Rule::UnregisteredBlocked, unregistered),
        }
    };
    let limit = i.policy.max_devices_per_mailbox;
    if limit > 0 && !i.admitted_before && i.other_admitted_devices >= limit {
        return d(
            Action::Block,
            Rule::PerMailboxLimit {
                limit,
                count: i.other_admitted_devices,
            },
            Reasons::of(&[Reason::PerMailboxLimit]),
        );
    }
    d(Action::Allow, base, unregistered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AccessPolicy {
        AccessPolicy::default()
    }

    fn inputs(p: &AccessPolicy) -> AccessInputs<'_> {
        AccessInputs {
            policy: p,
            listed: None,
            first_seen: None,
            admitted_before: false,
            other_admitted_devices: 0,
            portal: PortalSync::NotConfigured,
        }
    }

    #[test]
    fn listed_states() {
        let p = policy();
        let manual = Reasons::of(&[Reason::Manual]);
        for (state, action, rule) in [
            (AccessState::Allowed, Action::Allow, Rule::ListedAllowed),
            (AccessState::Blocked, Action::Block, Rule::ListedBlocked),
            (AccessState::Wipe, Action::Wipe, Rule::ListedWipe),
            (AccessState::Wiped, Action::Block, Rule::Wiped),
        ] {
            let d = decide(&AccessInputs {
                listed: Some((state, manual)),
                ..inputs(&p)
            });
            assert_eq!(
                (d.action, &d.rule, d.reasons, d.would_block),
                (action, &rule, manual, false),
                "{state:?}"
            );
        }
    }

    #[test]
    fn manual_block_beats_everything_unlisted() {
        let p = AccessPolicy {
            unregistered: AllowBlock::Allow,
            max_devices_per_mailbox: 5,
            ..policy()
        };
        let d = decide(&AccessInputs {
            listed: Some((AccessState::Blocked, Reasons::of(&[Reason::Manual]))),
            admitted_before: true,
            ..inputs(&p)
        });
        assert_eq!(d.action, Action::Block);
        assert_eq!(d.rule, Rule::ListedBlocked);
    }

    #[test]
    fn unregistered_allow_and_block() {
        let p = policy();
        let d = decide(&inputs(&p));
        assert_eq!(
            (d.action, d.rule),
            (Action::Allow, Rule::UnregisteredAllowed)
        );
        let p = AccessPolicy {
            unregistered: AllowBlock::Block,
            ..policy()
        };
        let d = decide(&AccessInputs {
            first_seen: Some(Timestamp(1)),
            admitted_before: true,
            ..inputs(&p)
        });
        assert_eq!(
            (d.action, d.rule.clone()),
            (Action::Block, Rule::UnregisteredBlocked)
        );
        assert_eq!(d.reasons, Reasons::of(&[Reason::Unregistered]));
    }

    #[test]
    fn per_mailbox_limit_blocks_the_next_new_device_only() {
        let p = AccessPolicy {
            max_devices_per_mailbox: 2,
            ..policy()
        };
        let under = decide(&AccessInputs {
            other_admitted_devices: 1,
            ..inputs(&p)
        });
        assert_eq!(under.action, Action::Allow);
        let over = decide(&AccessInputs {
            other_admitted_devices: 2,
            ..inputs(&p)
        });
        assert_eq!(
            (over.action, over.rule.clone()),
            (Action::Block, Rule::PerMailboxLimit { limit: 2, count: 2 })
        );
        assert_eq!(over.reasons, Reasons::of(&[Reason::PerMailboxLimit]));
        // An existing (admitted) device keeps working even above the limit.
        let existing = decide(&AccessInputs {
            other_admitted_devices: 5,
            admitted_before: true,
            ..inputs(&p)
        });
        assert_eq!(existing.action, Action::Allow);
        // Listed allowed is the portal's call.
        let listed = decide(&AccessInputs {
            other_admitted_devices: 5,
            listed: Some((AccessState::Allowed, Reasons::EMPTY)),
            ..inputs(&p)
        });
        assert_eq!(listed.rule, Rule::ListedAllowed);
        // 0 = no limit.
        let p0 = policy();
        assert_eq!(
            decide(&AccessInputs {
                other_admitted_devices: 1000,
                ..inputs(&p0)
            })
            .action,
            Action::Allow
        );
    }

    #[test]
    fn portal_unreachable_applies_to_devices_new_since_the_outage() {
        let since = Timestamp(1000);
        for portal in [
            PortalSync::Unreachable { since },
            PortalSync::NeverSynced { since },
        ] {
            let p = AccessPolicy {
                when_portal_unreachable: AllowBlock::Block,
                unregistered: AllowBlock::Allow,
                ..policy()
            };
            let new = decide(&AccessInputs {
                portal,
                ..inputs(&p)
            });
            assert_eq!(
                (new.action, new.rule),
                (Action::Block, Rule::PortalUnreachableNewBlocked)
            );
            let first_seen_during = decide(&AccessInputs {
                portal,
                first_seen: Some(Timestamp(1500)),
                ..inputs(&p)
            });
            assert_eq!(first_seen_during.action, Action::Block);
            let known = decide(&AccessInputs {
                portal,
                first_seen: Some(Timestamp(10)),
                ..inputs(&p)
            });
            assert_eq!(
                (known.action, known.rule),
                (Action::Allow, Rule::UnregisteredAllowed)
            );
            // Allow while unreachable even when unregistered = block: the portal may have
            // registered it meanwhile.
            let p = AccessPolicy {
                unregistered: AllowBlock::Block,
                ..policy()
            };
            let new = decide(&AccessInputs {
                portal,
                ..inputs(&p)
            });
            assert_eq!(
                (new.action, new.rule),
                (Action::Allow, Rule::PortalUnreachableNewAllowed)
            );
            // Listed devices are unaffected by the outage.
            let listed = decide(&AccessInputs {
                portal,
                listed: Some((AccessState::Blocked, Reasons::EMPTY)),
                ..inputs(&p)
            });
            assert_eq!(listed.rule, Rule::ListedBlocked);
        }
        // In sync: the unregistered rule.
        let p = AccessPolicy {
            when_portal_unreachable: AllowBlock::Block,
            ..policy()
        };
        let d = decide(&AccessInputs {
            portal: PortalSync::InSync,
            ..inputs(&p)
        });
        assert_eq!(d.rule, Rule::UnregisteredAllowed);
    }

    #[test]
    fn portal_allow_still_subject_to_limit() {
        let p = AccessPolicy {
            max_devices_per_mailbox: 1,
            ..policy()
        };
        let d = decide(&AccessInputs {
            portal: PortalSync::Unreachable {
                since: Timestamp(0),
            },
            other_admitted_devices: 1,
            ..inputs(&p)
        });
        assert_eq!(d.rule, Rule::PerMailboxLimit { limit: 1, count: 1 });
    }

    #[test]
    fn report_only_lets_everything_through_and_says_what_it_would_do() {
        let p = AccessPolicy {
            mode: AccessMode::ReportOnly,
            unregistered: AllowBlock::Block,
            ..policy()
        };
        let d = decide(&inputs(&p));
        assert_eq!(d.action, Action::Allow);
        assert!(d.would_block);
        assert_eq!(d.enforced_action(), Action::Block);
        assert_eq!(d.rule.effective(), &Rule::UnregisteredBlocked);
        let wipe = decide(&AccessInputs {
            listed: Some((AccessState::Wipe, Reasons::EMPTY)),
            ..inputs(&p)
        });
        assert_eq!(
            (wipe.action, wipe.would_block, wipe.enforced_action()),
            (Action::Allow, true, Action::Wipe)
        );
        let ok = decide(&AccessInputs {
            listed: Some((AccessState::Allowed, Reasons::EMPTY)),
            ..inputs(&p)
        });
        assert!(!ok.would_block);
        let j = d.explain_json();
        assert_eq!(j["decision"], "ALLOW");
        assert_eq!(j["rule"], "report_only");
        assert_eq!(j["report_only"]["would"], "BLOCK");
        assert_eq!(j["report_only"]["rule"], "unregistered_blocked");
        assert_eq!(j["reasons"], json!(["unregistered"]));
    }

    #[test]
    fn explain_json_shape() {
        let p = AccessPolicy {
            max_devices_per_mailbox: 3,
            ..policy()
        };
        let d = decide(&AccessInputs {
            other_admitted_devices: 3,
            ..inputs(&p)
        });
        let j = d.explain_json();
        assert_eq!(j["decision"], "BLOCK");
        assert_eq!(j["rule"], "per_mailbox_limit");
        assert_eq!(
            (j["limit"].as_u64(), j["count"].as_u64()),
            (Some(3), Some(3))
        );
        assert_eq!(j["reasons"], json!(["per_mailbox_limit"]));
        assert!(
            j["explanation"]
                .as_str()
                .unwrap()
                .contains("max_devices_per_mailbox = 3")
        );
    }
}
