//! Provision (MS-ASPROV) as far as the gateway answers it itself: classify a device's Provision
//! request, build Provision responses, and run the remote-wipe exchange:
//!
//! 1. any command -> the gateway demands provisioning ([`crate::status::provision_demand`]);
//! 2. device: initial Provision (often an empty `<Provision/>`) -> gateway: Status 1 + `RemoteWipe`;
//! 3. device: `<RemoteWipe><Status>1|2</Status></RemoteWipe>` -> gateway records the outcome,
//!    answers Status 1 (or Status 2 + `RemoteWipe` again on failure, MS-ASPROV 3.2.5.1.2.2).

use wbxml::Tag;
use wbxml::Writer;

use crate::body::{BodyReader, SMALL_BODY, parse_text, parse_u32, tags, wbxml_error};
use crate::error::{EasError, clip};

/// PolicyType of 12.0 and later.
pub const POLICY_TYPE_WBXML: &str = "MS-EAS-Provisioning-WBXML";
/// PolicyType of 2.5.
pub const POLICY_TYPE_XML: &str = "MS-WAP-Provisioning-XML";

/// Settings:DeviceInformation/Set as sent with Provision from 14.1 on (what the device says it
/// is; the gateway shows it in its device inventory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInformation {
    pub model: Option<String>,
    pub imei: Option<String>,
    pub friendly_name: Option<String>,
    pub os: Option<String>,
    pub os_language: Option<String>,
    pub phone_number: Option<String>,
    pub user_agent: Option<String>,
    pub enable_outbound_sms: Option<String>,
    pub mobile_operator: Option<String>,
}

/// Result a device reports for a remote wipe (MS-ASPROV 2.2.2.54.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeAck {
    /// 1: the wipe succeeded.
    Succeeded,
    /// 2: the wipe failed.
    Failed,
}

/// Which of the two wipe directives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteWipe {
    /// `RemoteWipe`: factory-reset the device.
    Full,
    /// `AccountOnlyRemoteWipe` (16.1): remove only this account's data.
    AccountOnly,
}

/// What a Provision request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionRequestKind {
    /// `<Provision/>` (optionally with DeviceInformation only): what a device sends after
    /// being told a remote wipe is requested.
    Empty,
    /// Phase 1: asks for the policy.
    Initial { policy_type: String },
    /// Phase 2: acknowledges the policy with the temporary key and its apply status
    /// (1 applied, 2 partially, 3 not applied, 4 third-party provisioned).
    PolicyAck {
        policy_type: String,
        policy_key: u32,
        status: u8,
    },
    /// Acknowledges a wipe directive.
    WipeAck { kind: RemoteWipe, status: WipeAck },
}

/// A parsed Provision request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub kind: ProvisionRequestKind,
    pub device_information: Option<DeviceInformation>,
}

impl ProvisionRequest {
    /// Classify a Provision request body (the streaming reader, small-body limits). An empty
    /// HTTP body counts as an empty `<Provision/>`.
    pub fn parse(body: &[u8]) -> Result<Self, EasError> {
        const CMD: &str = "Provision";
        if body.is_empty() {
            return Ok(Self {
                kind: ProvisionRequestKind::Empty,
                device_information: None,
            });
        }
        let (mut r, _) = BodyReader::open(
            CMD,
            body,
            &SMALL_BODY,
            tags::PROVISION,
            "Provision:Provision",
        )?;
        let mut info: Option<DeviceInformation> = None;
        let mut policy_seen = false;
        let mut policy_type: Option<String> = None;
        let mut policy_key: Option<u32> = None;
        let mut policy_status: Option<u8> = None;
        let mut wipe: Option<(RemoteWipe, Option<WipeAck>)> = None;
        while let Some((tag, has_content)) = r.next_start()? {
            let parent = r
                .path()
                .len()
                .checked_sub(1 + usize::from(has_content))
                .and_then(|i| r.path().get(i))
                .copied();
            match (parent, tag) {
                (Some(p), t) if p == tags::PROVISION && t == tags::DEVICE_INFORMATION => {
                    info.get_or_insert_with(DeviceInformation::default);
                }
                (Some(p), t) if p == tags::POLICIES && t == tags::POLICY => {
                    if policy_seen {
                        return Err(invalid("Policy", "", "one Policy"));
                    }
                    policy_seen = true;
                }
                (Some(p), t) if p == tags::POLICY => {
                    let v = r.leaf_of(has_content, "Policy child")?;
                    if t == tags::POLICY_TYPE {
                        policy_type = Some(parse_text(CMD, "PolicyType", v)?);
                    } else if t == tags::POLICY_KEY {
                        policy_key = Some(parse_u32(CMD, "PolicyKey", v)?);
                    } else if t == tags::PROV_STATUS {
                        policy_status = Some(small(CMD, "Status", v)?);
                    }
                }
                (Some(p), t)
                    if p == tags::PROVISION
                        && (t == tags::REMOTE_WIPE || t == tags::ACCOUNT_ONLY_REMOTE_WIPE) =>
                {
                    if wipe.is_some() {
                        return Err(invalid("RemoteWipe", "", "one wipe acknowledgement"));
                    }
                    let kind = if t == tags::REMOTE_WIPE {
                        RemoteWipe::Full
                    } else {
                        RemoteWipe::AccountOnly
                    };
                    wipe = Some((kind, None));
                }
                (Some(p), t)
                    if (p == tags::REMOTE_WIPE || p == tags::ACCOUNT_ONLY_REMOTE_WIPE)
                        && t == tags::PROV_STATUS =>
                {
                    let v = r.leaf_of(has_content, "Status")?;
                    let ack = match small(CMD, "Status", v)? {
                        1 => WipeAck::Succeeded,
                        2 => WipeAck::Failed,
                        _ => {
                            return Err(invalid(
                                "RemoteWipe/Status",
                                &String::from_utf8_lossy(v),
                                "1 or 2",
                            ));
                        }
                    };
                    if let Some((_, slot)) = wipe.as_mut() {
                        *slot = Some(ack);
                    }
                }
                (Some(p), t) if p == tags::SETTINGS_SET && info.is_some() => {
                    let v = r.leaf_of(has_content, "DeviceInformation field")?;
                    let text = parse_text(CMD, "DeviceInformation", v)?;
                    if let Some(i) = info.as_mut() {
                        let slot = match t {
                            x if x == tags::MODEL => Some(&mut i.model),
                            x if x == tags::IMEI => Some(&mut i.imei),
                            x if x == tags::FRIENDLY_NAME => Some(&mut i.friendly_name),
                            x if x == tags::OS => Some(&mut i.os),
                            x if x == tags::OS_LANGUAGE => Some(&mut i.os_language),
                            x if x == tags::PHONE_NUMBER => Some(&mut i.phone_number),
                            x if x == tags::USER_AGENT => Some(&mut i.user_agent),
                            x if x == tags::ENABLE_OUTBOUND_SMS => Some(&mut i.enable_outbound_sms),
                            x if x == tags::MOBILE_OPERATOR => Some(&mut i.mobile_operator),
                            _ => None,
                        };
                        if let Some(slot) = slot {
                            *slot = Some(text);
                        }
                    }
                }
                _ => {}
            }
        }
        let kind = if let Some((kind, ack)) = wipe {
            let status = ack.ok_or_else(|| invalid("RemoteWipe", "", "a Status child"))?;
            ProvisionRequestKind::WipeAck { kind, status }
        } else if policy_seen {
            let policy_type = policy_type.ok_or_else(|| invalid("Policy", "", "a PolicyType"))?;
            match (policy_key, policy_status) {
                (Some(policy_key), Some(status)) => ProvisionRequestKind::PolicyAck {
                    policy_type,
                    policy_key,
                    status,
                },
                (Some(_), None) => {
                    return Err(invalid("Policy", "", "a Status with the PolicyKey"));
                }
                (None, _) => ProvisionRequestKind::Initial { policy_type },
            }
        } else {
            ProvisionRequestKind::Empty
        };
        Ok(Self {
            kind,
            device_information: info,
        })
    }
}

fn small(command: &'static str, element: &'static str, v: &[u8]) -> Result<u8, EasError> {
    let n = parse_u32(command, element, v)?;
    u8::try_from(n).map_err(|_| invalid(element, &n.to_string(), "a status 0..=255"))
}

fn invalid(element: &'static str, value: &str, expected: &'static str) -> EasError {
    EasError::InvalidBodyValue {
        command: "Provision",
        element,
        value: clip(value),
        expected,
    }
}

/// The Policy of a Provision response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResponse {
    pub policy_type: String,
    /// 1 ok, 2 no policy for this client, 3 unknown PolicyType, 4 corrupt, 5 wrong key.
    pub status: u8,
    pub policy_key: Option<u32>,
    /// `Data/EASProvisionDoc` settings by MS-ASPROV element name, e.g.
    /// `("DevicePasswordEnabled", "0")`; `None` writes no Data.
    pub settings: Option<Vec<(&'static str, String)>>,
}

/// A Provision response the gateway sends itself. Children are written in schema order:
/// settings:DeviceInformation, Status, Policies, RemoteWipe / AccountOnlyRemoteWipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionResponse {
    /// Provision/Status: 1 ok, 2 protocol error, 3 server error, 139, 141, 145.
    pub status: u8,
    /// settings:DeviceInformation/settings:Status (1 = success) when the request carried
    /// DeviceInformation (14.1+).
    pub device_information_status: Option<u8>,
    pub policy: Option<PolicyResponse>,
    pub remote_wipe: Option<RemoteWipe>,
}

impl ProvisionResponse {
    /// Status 1 + `RemoteWipe`: the directive of MS-ASPROV 3.2.5.1.1.
    pub fn remote_wipe(kind: RemoteWipe) -> Self {
        Self {
            status: 1,
            device_information_status: None,
            policy: None,
            remote_wipe: Some(kind),
        }
    }

    /// Encode as EAS WBXML.
    pub fn encode(&self) -> Result<Vec<u8>, EasError> {
        let e = |err: wbxml::Error| wbxml_error("Provision", &err);
        let mut w = Writer::new();
        let start = |w: &mut Writer, t: Tag, content: bool| w.start(t.page, t.token, content);
        start(&mut w, tags::PROVISION, true).map_err(e)?;
        if let Some(s) = self.device_information_status {
            start(&mut w, tags::DEVICE_INFORMATION, true).map_err(e)?;
            text(&mut w, tags::SETTINGS_STATUS, &s.to_string()).map_err(e)?;
            w.end().map_err(e)?;
        }
        text(&mut w, tags::PROV_STATUS, &self.status.to_string()).map_err(e)?;
        if let Some(p) = &self.policy {
            start(&mut w, tags::POLICIES, true).map_err(e)?;
            start(&mut w, tags::POLICY, true).map_err(e)?;
            text(&mut w, tags::POLICY_TYPE, &p.policy_type).map_err(e)?;
            text(&mut w, tags::PROV_STATUS, &p.status.to_string()).map_err(e)?;
            if let Some(k) = p.policy_key {
                text(&mut w, tags::POLICY_KEY, &k.to_string()).map_err(e)?;
            }
            if let Some(settings) = &p.settings {
                start(&mut w, tags::DATA, true).map_err(e)?;
                start(&mut w, tags::EAS_PROVISION_DOC, !settings.is_empty()).map_err(e)?;
                for (name, value) in settings {
                    let tag = Tag::by_name("Provision", name)
                        .filter(|t| {
                            t.token > tags::EAS_PROVISION_DOC.token
                                && *t != tags::ACCOUNT_ONLY_REMOTE_WIPE
                        })
                        .ok_or_else(|| EasError::Build {
                            what: "EASProvisionDoc",
                            reason: format!("{name} is not a policy setting"),
                        })?;
                    text(&mut w, tag, value).map_err(e)?;
                }
                if !settings.is_empty() {
                    w.end().map_err(e)?;
                }
                w.end().map_err(e)?;
            }
            w.end().map_err(e)?;
            w.end().map_err(e)?;
        }
        match self.remote_wipe {
            Some(RemoteWipe::Full) => start(&mut w, tags::REMOTE_WIPE, false).map_err(e)?,
            Some(RemoteWipe::AccountOnly) => {
                start(&mut w, tags::ACCOUNT_ONLY_REMOTE_WIPE, false).map_err(e)?
            }
            None => {}
        }
        w.end().map_err(e)?;
        w.finish().map_err(e)
    }
}

/// `<tag>value</tag>`, or `<tag/>` for an empty value (inline strings cannot be empty-safe
/// for every peer; an empty element is what servers send).
fn text(w: &mut Writer, tag: Tag, value: &str) -> Result<(), wbxml::Error> {
    if value.is_empty() {
        w.start(tag.page, tag.token, false)
    } else {
        w.text_element(tag.page, tag.token, value)
    }
}

/// The gateway's answer to a Provision request of a device marked for wipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WipeAnswer {
    pub response: ProvisionResponse,
    /// Set when the request acknowledged the wipe: record it (and mark the device Wiped on
    /// success).
    pub ack: Option<WipeAck>,
}

impl WipeAnswer {
    pub fn encode(&self) -> Result<Vec<u8>, EasError> {
        self.response.encode()
    }
}

/// Answer a wiped device's Provision request: every request but a successful acknowledgement
/// gets the wipe directive again; a success acknowledgement gets Status 1 and ends the exchange.
pub fn answer_wipe(request: &ProvisionRequest, kind: RemoteWipe) -> WipeAnswer {
    let device_information_status = request.device_information.as_ref().map(|_| 1);
    match request.kind {
        ProvisionRequestKind::WipeAck {
            status: WipeAck::Succeeded,
            ..
        } => WipeAnswer {
            response: ProvisionResponse {
                status: 1,
                device_information_status,
                policy: None,
                remote_wipe: None,
            },
            ack: Some(WipeAck::Succeeded),
        },
        ProvisionRequestKind::WipeAck {
            status: WipeAck::Failed,
            ..
        } => WipeAnswer {
            response: ProvisionResponse {
                status: 2,
                device_information_status,
                policy: None,
                remote_wipe: Some(kind),
            },
            ack: Some(WipeAck::Failed),
        },
        _ => WipeAnswer {
            response: ProvisionResponse {
                device_information_status,
                ..ProvisionResponse::remote_wipe(kind)
            },
            ack: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wbxml::Element;

    fn doc(build: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.start(14, 0x05, true).unwrap();
        build(&mut w);
        w.end().unwrap();
        w.finish().unwrap()
    }

    fn policy(w: &mut Writer, key: Option<&str>, status: Option<&str>) {
        w.start(14, 0x06, true).unwrap();
        w.start(14, 0x07, true).unwrap();
        w.text_element(14, 0x08, POLICY_TYPE_WBXML).unwrap();
        if let Some(k) = key {
            w.text_element(14, 0x09, k).unwrap();
        }
        if let Some(s) = status {
            w.text_element(14, 0x0B, s).unwrap();
        }
        w.end().unwrap();
        w.end().unwrap();
    }

    #[test]
    fn classifies_requests() {
        assert_eq!(
            ProvisionRequest::parse(&[]).unwrap().kind,
            ProvisionRequestKind::Empty
        );
        let mut w = Writer::new();
        w.start(14, 0x05, false).unwrap();
        assert_eq!(
            ProvisionRequest::parse(&w.finish().unwrap()).unwrap().kind,
            ProvisionRequestKind::Empty
        );
        let r = ProvisionRequest::parse(&doc(|w| policy(w, None, None))).unwrap();
        assert_eq!(
            r.kind,
            ProvisionRequestKind::Initial {
                policy_type: POLICY_TYPE_WBXML.into()
            }
        );
        let r =
            ProvisionRequest::parse(&doc(|w| policy(w, Some("1307199584"), Some("1")))).unwrap();
        assert_eq!(
            r.kind,
            ProvisionRequestKind::PolicyAck {
                policy_type: POLICY_TYPE_WBXML.into(),
                policy_key: 1_307_199_584,
                status: 1
            }
        );
        for (status, ack) in [("1", WipeAck::Succeeded), ("2", WipeAck::Failed)] {
            let body = doc(|w| {
                w.start(14, 0x0C, true).unwrap();
                w.text_element(14, 0x0B, status).unwrap();
                w.end().unwrap();
            });
            assert_eq!(
                ProvisionRequest::parse(&body).unwrap().kind,
                ProvisionRequestKind::WipeAck {
                    kind: RemoteWipe::Full,
                    status: ack
                }
            );
        }
        let body = doc(|w| {
            w.start(14, 0x3B, true).unwrap();
            w.text_element(14, 0x0B, "1").unwrap();
            w.end().unwrap();
        });
        assert_eq!(
            ProvisionRequest::parse(&body).unwrap().kind,
            ProvisionRequestKind::WipeAck {
                kind: RemoteWipe::AccountOnly,
                status: WipeAck::Succeeded
            }
        );
    }

    #[test]
    fn request_errors() {
        let bad = [
            doc(|w| policy(w, Some("1"), None)),
            doc(|w| policy(w, Some("key"), Some("1"))),
            doc(|w| policy(w, None, Some("x"))),
            doc(|w| {
                w.start(14, 0x0C, false).unwrap();
            }),
            doc(|w| {
                w.start(14, 0x0C, true).unwrap();
                w.text_element(14, 0x0B, "3").unwrap();
                w.end().unwrap();
            }),
            doc(|w| {
                w.start(14, 0x06, true).unwrap();
                w.start(14, 0x07, true).unwrap();
                w.end().unwrap();
                w.end().unwrap();
            }),
        ];
        for (i, body) in bad.iter().enumerate() {
            assert!(
                matches!(
                    ProvisionRequest::parse(body),
                    Err(EasError::InvalidBodyValue { .. })
                ),
                "case {i}: {:?}",
                ProvisionRequest::parse(body)
            );
        }
        assert!(matches!(
            ProvisionRequest::parse(b"\x03\x01\x6a\x00\x00\x0d\x45\x01"),
            Err(EasError::UnexpectedRoot { .. })
        ));
    }

    #[test]
    fn wipe_exchange() {
        let initial = ProvisionRequest {
            kind: ProvisionRequestKind::Empty,
            device_information: None,
        };
        let a = answer_wipe(&initial, RemoteWipe::Full);
        assert_eq!(a.ack, None);
        assert_eq!(a.response, ProvisionResponse::remote_wipe(RemoteWipe::Full));
        let tree = Element::parse(&a.encode().unwrap()).unwrap();
        assert_eq!(tree.find("Status").and_then(Element::text), Some("1"));
        assert!(tree.find("RemoteWipe").is_some());

        let ok = ProvisionRequest {
            kind: ProvisionRequestKind::WipeAck {
                kind: RemoteWipe::Full,
                status: WipeAck::Succeeded,
            },
            device_information: Some(DeviceInformation::default()),
        };
        let a = answer_wipe(&ok, RemoteWipe::Full);
        assert_eq!(a.ack, Some(WipeAck::Succeeded));
        assert_eq!(a.response.remote_wipe, None);
        assert_eq!(a.response.device_information_status, Some(1));

        let failed = ProvisionRequest {
            kind: ProvisionRequestKind::WipeAck {
                kind: RemoteWipe::Full,
                status: WipeAck::Failed,
            },
            device_information: None,
        };
        let a = answer_wipe(&failed, RemoteWipe::Full);
        assert_eq!(a.ack, Some(WipeAck::Failed));
        assert_eq!(a.response.status, 2);
        assert_eq!(a.response.remote_wipe, Some(RemoteWipe::Full));
    }

    #[test]
    fn response_with_policy_and_settings() {
        let r = ProvisionResponse {
            status: 1,
            device_information_status: Some(1),
            policy: Some(PolicyResponse {
                policy_type: POLICY_TYPE_WBXML.into(),
                status: 1,
                policy_key: Some(42),
                settings: Some(vec![
                    ("DevicePasswordEnabled", "0".into()),
                    ("AttachmentsEnabled", "1".into()),
                ]),
            }),
            remote_wipe: Some(RemoteWipe::Full),
        };
        let tree = Element::parse(&r.encode().unwrap()).unwrap();
        assert_eq!(
            tree.find_path(&["Policies", "Policy", "PolicyKey"])
                .and_then(Element::text),
            Some("42")
        );
        assert_eq!(
            tree.find_path(&[
                "Policies",
                "Policy",
                "Data",
                "EASProvisionDoc",
                "AttachmentsEnabled"
            ])
            .and_then(Element::text),
            Some("1")
        );
        let bad = ProvisionResponse {
            policy: Some(PolicyResponse {
                policy_type: POLICY_TYPE_WBXML.into(),
                status: 1,
                policy_key: None,
                settings: Some(vec![("AccountOnlyRemoteWipe", String::new())]),
            }),
            ..r
        };
        assert!(matches!(bad.encode(), Err(EasError::Build { .. })));
    }
}
