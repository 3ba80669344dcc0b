//! The responses the gateway builds itself decode, with libwbxml2's `wbxml2xml -l ACTIVESYNC`
//! (Debian `libwbxml2-utils`), to the XML a real server sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::process::Command as Process;

use eas::provision::{POLICY_TYPE_WBXML, PolicyResponse};
use eas::status::{ProvisionDemand, command_status_body, provision_demand};
use eas::{
    Command, CommonStatus, ProtocolVersion, ProvisionRequest, ProvisionRequestKind,
    ProvisionResponse, RemoteWipe, WipeAck, provision::answer_wipe,
};

const PROLOG: &str = "<?xml version=\"1.0\"?><!DOCTYPE ActiveSync PUBLIC \"-//MICROSOFT//DTD ActiveSync//EN\" \"http://www.microsoft.com/\">";

/// `wbxml2xml -l ACTIVESYNC -m 0` of `wbxml`, prolog stripped. Also checks that easgate's own
/// XML bridge prints the same document as libwbxml's indented mode (`-m 1`).
fn libwbxml_xml(wbxml: &[u8]) -> String {
    let indented = run_wbxml2xml(wbxml, "1");
    assert_eq!(wbxml::xml::to_xml(wbxml).unwrap(), indented);
    let xml = run_wbxml2xml(wbxml, "0");
    xml.strip_prefix(PROLOG)
        .unwrap_or_else(|| panic!("unexpected prolog: {xml}"))
        .trim_end()
        .to_owned()
}

fn run_wbxml2xml(wbxml: &[u8], mode: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wbxml");
    let output = dir.path().join("out.xml");
    std::fs::write(&input, wbxml).unwrap();
    let status = Process::new("wbxml2xml")
        .args(["-l", "ACTIVESYNC", "-m", mode, "-o"])
        .arg(&output)
        .arg(&input)
        .output()
        .expect("wbxml2xml (Debian libwbxml2-utils) must be installed");
    assert!(status.status.success(), "wbxml2xml failed: {status:?}");
    std::fs::read_to_string(&output).unwrap()
}

#[test]
fn remote_wipe_directive() {
    let body = ProvisionResponse::remote_wipe(RemoteWipe::Full)
        .encode()
        .unwrap();
    assert_eq!(
        libwbxml_xml(&body),
        r#"<Provision xmlns="Provision:"><Status>1</Status><RemoteWipe/></Provision>"#
    );
}

#[test]
fn wipe_exchange_answers() {
    let initial = ProvisionRequest {
        kind: ProvisionRequestKind::Initial {
            policy_type: POLICY_TYPE_WBXML.into(),
        },
        device_information: Some(Default::default()),
    };
    let a = answer_wipe(&initial, RemoteWipe::Full);
    assert_eq!(
        libwbxml_xml(&a.encode().unwrap()),
        concat!(
            r#"<Provision xmlns="Provision:"><DeviceInformation xmlns="Settings:"><Status>1</Status>"#,
            r#"</DeviceInformation><Status>1</Status><RemoteWipe/></Provision>"#
        )
    );
    let failed = ProvisionRequest {
        kind: ProvisionRequestKind::WipeAck {
            kind: RemoteWipe::Full,
            status: WipeAck::Failed,
        },
        device_information: None,
    };
    let a = answer_wipe(&failed, RemoteWipe::Full);
    assert_eq!(a.ack, Some(WipeAck::Failed));
    assert_eq!(
        libwbxml_xml(&a.encode().unwrap()),
        r#"<Provision xmlns="Provision:"><Status>2</Status><RemoteWipe/></Provision>"#
    );
    let done = ProvisionRequest {
        kind: ProvisionRequestKind::WipeAck {
            kind: RemoteWipe::Full,
            status: WipeAck::Succeeded,
        },
        device_information: None,
    };
    assert_eq!(
        libwbxml_xml(&answer_wipe(&done, RemoteWipe::Full).encode().unwrap()),
        r#"<Provision xmlns="Provision:"><Status>1</Status></Provision>"#
    );
}

#[test]
fn policy_with_settings_and_wipe() {
    let body = ProvisionResponse {
        status: 1,
        device_information_status: None,
        policy: Some(PolicyResponse {
            policy_type: POLICY_TYPE_WBXML.into(),
            status: 1,
            policy_key: Some(3_942_919_513),
            settings: Some(vec![
                ("DevicePasswordEnabled", "0".into()),
                ("AttachmentsEnabled", "1".into()),
                ("MaxAttachmentSize", String::new()),
            ]),
        }),
        remote_wipe: Some(RemoteWipe::Full),
    }
    .encode()
    .unwrap();
    assert_eq!(
        libwbxml_xml(&body),
        concat!(
            r#"<Provision xmlns="Provision:"><Status>1</Status><Policies><Policy>"#,
            r#"<PolicyType>MS-EAS-Provisioning-WBXML</PolicyType><Status>1</Status>"#,
            r#"<PolicyKey>3942919513</PolicyKey><Data><EASProvisionDoc>"#,
            r#"<DevicePasswordEnabled>0</DevicePasswordEnabled><AttachmentsEnabled>1</AttachmentsEnabled>"#,
            r#"<MaxAttachmentSize/></EASProvisionDoc></Data></Policy></Policies><RemoteWipe/></Provision>"#
        )
    );
}

#[test]
fn command_status_responses() {
    let cases = [
        (
            Command::FolderSync,
            CommonStatus::DeviceNotProvisioned,
            r#"<FolderSync xmlns="FolderHierarchy:"><Status>142</Status></FolderSync>"#,
        ),
        (
            Command::Sync,
            CommonStatus::InvalidPolicyKey,
            r#"<Sync xmlns="AirSync:"><Status>144</Status></Sync>"#,
        ),
        (
            Command::Ping,
            CommonStatus::DeviceIsBlockedForThisUser,
            r#"<Ping xmlns="Ping:"><Status>129</Status></Ping>"#,
        ),
        (
            Command::ItemOperations,
            CommonStatus::RemoteWipeRequested,
            r#"<ItemOperations xmlns="ItemOperations:"><Status>140</Status></ItemOperations>"#,
        ),
        (
            Command::SendMail,
            CommonStatus::DeviceNotProvisioned,
            r#"<SendMail xmlns="ComposeMail:"><Status>142</Status></SendMail>"#,
        ),
        (
            Command::Settings,
            CommonStatus::UserDisabledForSync,
            r#"<Settings xmlns="Settings:"><Status>126</Status></Settings>"#,
        ),
        (
            Command::GetItemEstimate,
            CommonStatus::PolicyRefresh,
            r#"<GetItemEstimate xmlns="GetItemEstimate:"><Status>143</Status></GetItemEstimate>"#,
        ),
        (
            Command::Search,
            CommonStatus::DeviceNotProvisioned,
            r#"<Search xmlns="Search:"><Status>142</Status></Search>"#,
        ),
        (
            Command::MoveItems,
            CommonStatus::DeviceNotProvisioned,
            r#"<MoveItems xmlns="Move:"><Status>142</Status></MoveItems>"#,
        ),
        (
            Command::FolderCreate,
            CommonStatus::DeviceNotProvisioned,
            r#"<FolderCreate xmlns="FolderHierarchy:"><Status>142</Status></FolderCreate>"#,
        ),
        (
            Command::ResolveRecipients,
            CommonStatus::DeviceNotProvisioned,
            r#"<ResolveRecipients xmlns="ResolveRecipients:"><Status>142</Status></ResolveRecipients>"#,
        ),
        (
            Command::ValidateCert,
            CommonStatus::DeviceNotProvisioned,
            r#"<ValidateCert xmlns="ValidateCert:"><Status>142</Status></ValidateCert>"#,
        ),
        (
            Command::Provision,
            CommonStatus::LegacyDeviceOnStrictPolicy,
            r#"<Provision xmlns="Provision:"><Status>141</Status></Provision>"#,
        ),
    ];
    for (cmd, status, xml) in cases {
        let body = command_status_body(cmd, status.code()).unwrap();
        assert_eq!(libwbxml_xml(&body), xml, "{cmd}");
    }
}

#[test]
fn provision_demand_for_14_is_wbxml_status() {
    let ProvisionDemand::Body(body) = provision_demand(
        Some(ProtocolVersion::V14_1),
        Some(Command::Ping),
        CommonStatus::RemoteWipeRequested,
    ) else {
        panic!("14.1 gets a WBXML status");
    };
    assert_eq!(
        libwbxml_xml(&body),
        r#"<Ping xmlns="Ping:"><Status>140</Status></Ping>"#
    );
}
