//! Attachment control engine (issue 5): every place, every action, with the real SOGo captures
//! in `shared/eas-samples/` and bodies built with `crates/wbxml`; encrypt tests decrypt with the
//! real `openssl cms -decrypt`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Arc;

use base64::Engine as _;
use eas::attachment::compose::{self, ComposeFix};
use eas::attachment::wbxml_rewrite::{self, GetAttachmentOutcome};
use eas::attachment::{
    AttachmentControl, AttachmentControlConfig, AttachmentError, Decision, Exclusions,
    PlatformClass, Policy, Recipients, mime,
};
use wbxml::{Action as WAction, Element, Event, Limits, Reader, Tag};

fn shared() -> PathBuf {
    std::env::var_os("EASGATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

fn sample(name: &str) -> Vec<u8> {
    let p = shared().join("eas-samples").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const NONE: &dyn Fn(&str) -> bool = &|_| false;

/// RSA key + self-signed cert made by the openssl CLI.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        Self::with(&["-newkey", "rsa:2048"])
    }

    fn ec() -> Self {
        Self::with(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
    }

    fn with(key_args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = Proc::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(key_args)
            .args(["-subj", "/CN=attachment-reader"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .output()
            .expect("openssl CLI");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        Keys { dir }
    }

    fn recipients(&self) -> Arc<Recipients> {
        let pem = std::fs::read(self.dir.path().join("cert.pem")).unwrap();
        Arc::new(Recipients::from_pem(&pem).unwrap())
    }

    fn policy(&self) -> Policy {
        Policy::new(Decision::Encrypt(self.recipients()))
    }

    /// `openssl cms -decrypt` of DER.
    fn decrypt(&self, der: &[u8]) -> Vec<u8> {
        let input = self.dir.path().join("in.der");
        let output = self.dir.path().join("out.bin");
        std::fs::write(&input, der).unwrap();
        let st = Proc::new("openssl")
            .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-in"])
            .arg(&input)
            .arg("-recip")
            .arg(self.dir.path().join("cert.pem"))
            .arg("-inkey")
            .arg(self.dir.path().join("key.pem"))
            .arg("-out")
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        std::fs::read(output).unwrap()
    }
}

fn remove() -> Policy {
    Policy::new(Decision::Remove)
}

fn tags(doc: &[u8]) -> Vec<Tag> {
    Reader::new(doc)
        .unwrap()
        .filter_map(|e| match e.unwrap() {
            Event::Start { page, token, .. } => Some(Tag::new(page, token)),
            _ => None,
        })
        .collect()
}

fn texts_of(doc: &[u8], page: u8, token: u8) -> Vec<String> {
    let mut r = Reader::new(doc).unwrap();
    let mut out = Vec::new();
    let mut want = false;
    while let Some(e) = r.next_event().unwrap() {
        match e {
            Event::Start {
                page: p, token: t, ..
            } => want = (p, t) == (page, token),
            Event::Text(t) if want => out.push(String::from_utf8_lossy(t).into_owned()),
            _ => want = false,
        }
    }
    out
}

const ASB_ATTACHMENTS: Tag = Tag::new(17, 0x0E);
const ASB_ATTACHMENT: Tag = Tag::new(17, 0x0F);

// ---------------------------------------------------------------- config

#[test]
fn config_from_the_issue_parses_validates_and_classifies() {
    let toml_text = r#"
[attachment_control]
enabled = true
exclusions = "ics,vcf"
max_nesting = 4
max_body_bytes = 33554432
on_oversize = "block"
[attachment_control.platform.ios_native]
action = "remove"
[attachment_control.platform.secure_apps]
action = "encrypt"
[attachment_control.platform.other]
action = "deliver"
[attachment_control.encryption]
recipients = ["certs/attachment-reader.pem"]
"#;
    #[derive(serde::Deserialize)]
    struct File {
        attachment_control: AttachmentControlConfig,
    }
    let cfg = toml::from_str::<File>(toml_text)
        .unwrap()
        .attachment_control;
    cfg.validate().unwrap();
    let keys = Keys::new();
    let ctl = AttachmentControl::new(&cfg, Some(keys.recipients())).unwrap();
    let p = ctl.policy_for(Some("iPhone"), Some("Apple-iPhone14C2/2001.48"));
    assert!(matches!(p.decision, Decision::Remove));
    assert!(p.exclusions.matches("Invite.ICS"));
    let p = ctl.policy_for(Some("Outlook"), Some("Outlook-iOS/2.0"));
    assert!(matches!(p.decision, Decision::Encrypt(_)));
    let p = ctl.policy_for(Some("Android"), Some("Android-Mail/2024.01"));
    assert!(p.decision.is_deliver());
    assert_eq!(ctl.classify(Some("iPad"), None), PlatformClass::IosNative);

    // Disabled = deliver whatever the class.
    let off = AttachmentControl::new(&AttachmentControlConfig::default(), None).unwrap();
    assert!(off.policy_for(Some("iPhone"), None).decision.is_deliver());
    // Encrypt without certificates is refused.
    assert!(AttachmentControl::new(&cfg, None).is_err());
}

#[test]
fn config_validation_names_fields() {
    let cfg = AttachmentControlConfig {
        enabled: true,
        exclusions: "ics, bad/ext".into(),
        max_nesting: 99,
        max_body_bytes: 10,
        rules: vec![eas::attachment::PlatformRule {
            class: PlatformClass::Other,
            device_type: None,
            user_agent: None,
        }],
        ..Default::default()
    };
    let errs = cfg.validate().unwrap_err();
    let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
    for f in [
        "attachment_control.exclusions",
        "attachment_control.max_nesting",
        "attachment_control.max_body_bytes",
        "attachment_control.encryption.recipients",
        "attachment_control.rules[0]",
    ] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
    let toml_bad = "[attachment_control]\nplatform.other.action = \"shred\"\n";
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct File {
        attachment_control: AttachmentControlConfig,
    }
    assert!(toml::from_str::<File>(toml_bad).is_err());
}

// ---------------------------------------------------------------- Sync (captured)

#[test]
fn sync_capture_deliver_is_byte_identical() {
    let input = sample("sync-response-attachment.wbxml");
    let r = wbxml_rewrite::rewrite_response(&input, &Policy::new(Decision::Deliver), NONE).unwrap();
    assert!(matches!(r.body, Cow::Borrowed(_)));
    assert_eq!(&*r.body, &input[..]);
}

#[test]
fn sync_capture_remove_drops_attachments_and_nothing_else() {
    let input = sample("sync-response-attachment.wbxml");
    let r = wbxml_rewrite::rewrite_response(&input, &remove(), NONE).unwrap();
    assert_eq!(r.summary.removed, 2);
    assert!(!tags(&r.body).contains(&ASB_ATTACHMENT));
    // Same bytes as wbxml's generic rewrite dropping the Attachments elements.
    let expected = wbxml::rewrite(&input, &Limits::default(), |t, _| {
        if t == ASB_ATTACHMENTS {
            WAction::Drop
        } else {
            WAction::Keep
        }
    })
    .unwrap();
    assert_eq!(&*r.body, &expected[..]);
    assert_eq!(r.content_length(), expected.len());
    assert!(
        wbxml::xml::to_xml(&r.body)
            .unwrap()
            .contains("report with attachment")
    );
}

#[test]
fn sync_capture_exclusions_keep_matching_names_and_report_their_refs() {
    let input = sample("sync-response-attachment.wbxml");
    let mut p = remove();
    p.exclusions = Exclusions::parse("TXT");
    let r = wbxml_rewrite::rewrite_response(&input, &p, NONE).unwrap();
    assert_eq!((r.summary.removed, r.summary.excluded), (1, 1));
    assert_eq!(r.summary.excluded_refs, vec!["mail/INBOX/3/2".to_owned()]);
    let names = texts_of(&r.body, 17, 0x10);
    assert_eq!(names, vec!["note.txt".to_owned()]);
}

#[test]
fn sync_capture_encrypt_renames_to_p7m() {
    let keys = Keys::new();
    let input = sample("sync-response-attachment.wbxml");
    let r = wbxml_rewrite::rewrite_response(&input, &keys.policy(), NONE).unwrap();
    assert_eq!(r.summary.encrypted, 2);
    let names = texts_of(&r.body, 17, 0x10);
    assert_eq!(names, vec!["report.pdf.p7m", "note.txt.p7m"]);
    assert_eq!(
        texts_of(&r.body, 17, 0x11),
        vec!["mail/INBOX/2/2", "mail/INBOX/3/2"]
    );
    assert_eq!(r.body.len(), input.len() + 8);
}

#[test]
fn oversize_and_garbage_are_errors_for_on_oversize() {
    let input = sample("sync-response-attachment.wbxml");
    let mut p = remove();
    p.max_body_bytes = 100;
    let e = wbxml_rewrite::rewrite_response(&input, &p, NONE).unwrap_err();
    assert!(matches!(e, AttachmentError::TooLarge { .. }));
    assert!(e.applies_on_oversize());
    let e =
        wbxml_rewrite::rewrite_response(&input[..input.len() - 3], &remove(), NONE).unwrap_err();
    assert!(matches!(e, AttachmentError::Wbxml { .. }), "{e}");
    assert!(e.applies_on_oversize());
    let eas_err: eas::EasError = e.into();
    assert_eq!(eas_err.fault(), eas::Fault::Server);
}

// ---------------------------------------------------------------- ItemOperations (captured)

fn pdf_bytes() -> Vec<u8> {
    let doc = sample("itemoperations-fetch-attachment-response.wbxml");
    let b64 = texts_of(&doc, 20, 0x0C).pop().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn itemoperations_inline_remove_answers_status_15() {
    let input = sample("itemoperations-fetch-attachment-response.wbxml");
    let r = wbxml_rewrite::rewrite_response(&input, &remove(), NONE).unwrap();
    assert_eq!(r.summary.removed, 1);
    let tree = Element::parse(&r.body).unwrap();
    assert_eq!(tree.find("Status").and_then(Element::text), Some("1"));
    let fetch = tree.find_path(&["Response", "Fetch"]).unwrap();
    assert_eq!(fetch.find("Status").and_then(Element::text), Some("15"));
    assert_eq!(
        fetch.find("FileReference").and_then(Element::text),
        Some("mail/INBOX/2/2")
    );
    assert!(fetch.find("Properties").is_none());
    // Excluded reference (seen in Sync as e.g. invite.ics): delivered unchanged.
    let r = wbxml_rewrite::rewrite_response(&input, &remove(), &|r| r == "mail/INBOX/2/2").unwrap();
    assert_eq!(&*r.body, &input[..]);
    assert_eq!(r.summary.excluded, 1);
}

#[test]
fn itemoperations_inline_encrypt_decrypts_to_the_original_pdf() {
    let keys = Keys::new();
    let input = sample("itemoperations-fetch-attachment-response.wbxml");
    let r = wbxml_rewrite::rewrite_response(&input, &keys.policy(), NONE).unwrap();
    assert_eq!(r.summary.encrypted, 1);
    let tree = Element::parse(&r.body).unwrap();
    let props = tree
        .find_path(&["Response", "Fetch", "Properties"])
        .unwrap();
    assert_eq!(
        props.find("ContentType").and_then(Element::text),
        Some("application/pkcs7-mime")
    );
    let der = base64::engine::general_purpose::STANDARD
        .decode(props.find("Data").and_then(Element::text).unwrap())
        .unwrap();
    assert_eq!(keys.decrypt(&der), pdf_bytes());
}

#[test]
fn itemoperations_multipart_remove_and_encrypt() {
    let input = sample("itemoperations-fetch-attachment-multipart-response.bin");
    let orig = eas::Multipart::parse(&input).unwrap();
    assert_eq!(orig.part(1).unwrap(), &pdf_bytes()[..]);

    let r = wbxml_rewrite::rewrite_multipart(&input, &remove(), NONE).unwrap();
    let m = eas::Multipart::parse(&r.body).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m.part(1), Some(&b""[..]));
    let tree = Element::parse(m.wbxml()).unwrap();
    let fetch = tree.find_path(&["Response", "Fetch"]).unwrap();
    assert_eq!(fetch.find("Status").and_then(Element::text), Some("15"));
    assert!(fetch.find("Properties").is_none());

    let keys = Keys::new();
    let r = wbxml_rewrite::rewrite_multipart(&input, &keys.policy(), NONE).unwrap();
    let m = eas::Multipart::parse(&r.body).unwrap();
    let tree = Element::parse(m.wbxml()).unwrap();
    let props = tree
        .find_path(&["Response", "Fetch", "Properties"])
        .unwrap();
    assert_eq!(props.find("Part").and_then(Element::text), Some("1"));
    assert_eq!(
        props.find("ContentType").and_then(Element::text),
        Some("application/pkcs7-mime")
    );
    assert_eq!(keys.decrypt(m.part(1).unwrap()), pdf_bytes());

    let r =
        wbxml_rewrite::rewrite_multipart(&input, &Policy::new(Decision::Deliver), NONE).unwrap();
    assert_eq!(&*r.body, &input[..]);
}

#[test]
fn get_attachment_remove_refuses_and_encrypt_decrypts() {
    let pdf = pdf_bytes();
    let name = "mail/INBOX/2/2";
    assert_eq!(
        wbxml_rewrite::get_attachment_precheck(name, &remove(), NONE),
        Some(500)
    );
    let (o, s) = wbxml_rewrite::get_attachment(&pdf, name, &remove(), NONE).unwrap();
    assert_eq!(o, GetAttachmentOutcome::Refuse { http_status: 500 });
    assert_eq!(s.removed, 1);
    let (o, _) = wbxml_rewrite::get_attachment(&pdf, name, &remove(), &|_| true).unwrap();
    assert_eq!(o, GetAttachmentOutcome::Deliver(Cow::Borrowed(&pdf[..])));
    let keys = Keys::new();
    assert_eq!(
        wbxml_rewrite::get_attachment_precheck(name, &keys.policy(), NONE),
        None
    );
    let (o, _) = wbxml_rewrite::get_attachment(&pdf, name, &keys.policy(), NONE).unwrap();
    let GetAttachmentOutcome::Encrypted { body, content_type } = o else {
        panic!("{o:?}")
    };
    assert_eq!(content_type, "application/pkcs7-mime");
    assert_eq!(keys.decrypt(&body), pdf);
}

// ---------------------------------------------------------------- MIME

fn sendmail_mime() -> Vec<u8> {
    let doc = Element::parse(&sample("sendmail-request.wbxml")).unwrap();
    doc.find("Mime").and_then(Element::opaque).unwrap().to_vec()
}

fn part_body<'a>(msg: &'a [u8], after: &str) -> &'a [u8] {
    let s = std::str::from_utf8(msg).unwrap();
    let at = s.find(after).unwrap();
    let start = at + s[at..].find("\r\n\r\n").unwrap() + 4;
    let end = start + s[start..].find("\r\n--").unwrap();
    &msg[start..end]
}

#[test]
fn mime_remove_replaces_the_attachment_by_a_note_and_keeps_the_rest() {
    let msg = sendmail_mime();
    assert_eq!(mime::attachment_names(&msg, 4), vec!["secret.bin"]);
    let r = mime::rewrite_mime(&msg, &remove()).unwrap();
    assert_eq!(r.summary.removed, 1);
    let out = std::str::from_utf8(&r.body).unwrap();
    assert!(
        !out.contains("secret attachment") && !out.contains("c2VjcmV0IGF0dGFjaG1lbnQgYnl0ZXMK")
    );
    assert!(out.contains("[Attachment \"secret.bin\" removed by the email security gateway.]"));
    // Everything up to the attachment part's headers is byte-identical.
    let cut = std::str::from_utf8(&msg)
        .unwrap()
        .find("Content-Type: application/octet-stream")
        .unwrap();
    assert_eq!(&r.body[..cut], &msg[..cut]);
    assert!(out.ends_with("--\r\n"));
    assert!(mime::attachment_names(&r.body, 4).is_empty());
    // Deliver and excluded: unchanged.
    let mut p = remove();
    p.exclusions = Exclusions::parse("bin");
    let r = mime::rewrite_mime(&msg, &p).unwrap();
    assert!(matches!(r.body, Cow::Borrowed(_)));
    assert_eq!(r.summary.excluded, 1);
}

#[test]
fn mime_encrypt_replaces_the_body_with_cms_of_the_decoded_bytes() {
    let keys = Keys::new();
    let msg = sendmail_mime();
    let r = mime::rewrite_mime(&msg, &keys.policy()).unwrap();
    assert_eq!(r.summary.encrypted, 1);
    let out = std::str::from_utf8(&r.body).unwrap();
    assert!(out.contains("Content-Type: application/pkcs7-mime; name=\"secret.bin.p7m\""));
    assert!(out.contains("filename=\"secret.bin.p7m\""));
    let b64 = part_body(&r.body, "secret.bin.p7m");
    let der = mime::base64_lenient(b64);
    assert_eq!(keys.decrypt(&der), b"secret attachment bytes\n");
}

fn nested_message(inner_attachment_qp: bool) -> Vec<u8> {
    let (cte, body) = if inner_attachment_qp {
        ("quoted-printable", "caf=C3=A9 =\r\nand more=3D\r\n")
    } else {
        ("base64", "aGVsbG8gd29ybGQ=\r\n")
    };
    format!(
        "From: a@example.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n--outer\r\n\
Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n\
From: b@example.test\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--inner\r\n\
Content-Type: application/octet-stream; name*=UTF-8''r%C3%A9sum%C3%A9.docx\r\n\
Content-Transfer-Encoding: {cte}\r\n\r\n{body}--inner--\r\n\
--outer\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Disposition: inline\r\n\
Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--outer--\r\nepilogue\r\n"
    )
    .into_bytes()
}

#[test]
fn mime_recurses_into_rfc822_up_to_max_nesting() {
    let msg = nested_message(false);
    assert_eq!(mime::attachment_names(&msg, 4), vec!["résumé.docx", ""]);
    let r = mime::rewrite_mime(&msg, &remove()).unwrap();
    assert_eq!(r.summary.removed, 2, "inner docx and the inline image");
    let out = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(out.contains("inner text") && out.contains("<p>hi</p>") && out.contains("epilogue"));
    assert!(out.contains("Subject: inner"));
    assert!(!out.contains("aGVsbG8gd29ybGQ") && !out.contains("iVBORw0KGgo"));
    assert!(out.contains("removed by the email security gateway"));

    // max_nesting 0: the whole embedded message is one attachment.
    let mut p = remove();
    p.max_nesting = 0;
    let r = mime::rewrite_mime(&msg, &p).unwrap();
    let out = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(!out.contains("inner text"));
    assert!(out.contains("[Attachment \"fwd.eml\" removed"));
}

#[test]
fn mime_encrypt_decodes_quoted_printable_first() {
    let keys = Keys::new();
    let msg = nested_message(true);
    let r = mime::rewrite_mime(&msg, &keys.policy()).unwrap();
    assert_eq!(r.summary.encrypted, 2);
    let out = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(
        out.contains("name*=UTF-8''r%C3%A9sum%C3%A9.docx.p7m"),
        "{out}"
    );
    let b64 = part_body(&r.body, "sum%C3%A9.docx.p7m\r\n");
    assert_eq!(
        keys.decrypt(&mime::base64_lenient(b64)),
        "café and more=".as_bytes()
    );
}

#[test]
fn mime_without_attachments_and_garbage_never_fail() {
    let plain = b"Subject: x\r\n\r\nhello\r\n";
    let r = mime::rewrite_mime(plain, &remove()).unwrap();
    assert!(matches!(r.body, Cow::Borrowed(_)));
    for junk in [
        &b""[..],
        b"\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x",
        b"Content-Type: multipart/mixed\r\n\r\n--x--",
    ] {
        let _ = mime::rewrite_mime(junk, &remove()).unwrap();
    }
    // A whole message that is one attachment keeps its non-Content headers.
    let single = b"From: a@x\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n";
    let r = mime::rewrite_mime(single, &remove()).unwrap();
    let out = std::str::from_utf8(&r.body).unwrap();
    assert!(out.starts_with("From: a@x\r\nContent-Type: text/plain"));
    assert!(!out.contains("JVBERi0"));
}

// ---------------------------------------------------------------- MIME inside WBXML

fn sync_with(items: Vec<Element>) -> Vec<u8> {
    let mut commands = Element::named("AirSync", "Commands").unwrap();
    for (i, app) in items.into_iter().enumerate() {
        commands = commands.with_child(
            Element::named("AirSync", "Add")
                .unwrap()
                .with_text_child("ServerId", (i + 1).to_string())
                .unwrap()
                .with_child(app),
        );
    }
    Element::named("AirSync", "Sync")
        .unwrap()
        .with_child(
            Element::named("AirSync", "Collections")
                .unwrap()
                .with_child(
                    Element::named("AirSync", "Collection")
                        .unwrap()
                        .with_text_child("SyncKey", "1-2")
                        .unwrap()
                        .with_text_child("CollectionId", "mail%2Finbox")
                        .unwrap()
                        .with_text_child("Status", "1")
                        .unwrap()
                        .with_child(commands),
                ),
        )
        .encode()
        .unwrap()
}

fn el(ns: &str, name: &str) -> Element {
    Element::named(ns, name).unwrap()
}

#[test]
fn body_type_4_and_email_25_mimedata_are_rewritten() {
    let mime_msg = String::from_utf8(sendmail_mime()).unwrap();
    let app = el("AirSync", "ApplicationData")
        .with_child(el("Email", "Subject").with_text("mime"))
        .with_child(
            el("AirSyncBase", "Body")
                .with_child(el("AirSyncBase", "Type").with_text("4"))
                .with_child(el("AirSyncBase", "EstimatedDataSize").with_text("900"))
                .with_child(el("AirSyncBase", "Data").with_text(mime_msg.clone())),
        );
    // 2.5: Email Attachments + MIMEData.
    let app25 = el("AirSync", "ApplicationData")
        .with_child(
            el("Email", "Attachments").with_child(
                el("Email", "Attachment")
                    .with_child(el("Email", "AttName").with_text("plan.xlsx"))
                    .with_child(el("Email", "Att0Id").with_text("att-1"))
                    .with_child(el("Email", "AttSize").with_text("100")),
            ),
        )
        .with_child(el("Email", "MIMEData").with_text(mime_msg.clone()));
    // Type 1 body that merely looks like MIME: untouched.
    let app_text = el("AirSync", "ApplicationData").with_child(
        el("AirSyncBase", "Body")
            .with_child(el("AirSyncBase", "Type").with_text("1"))
            .with_child(el("AirSyncBase", "Data").with_text(mime_msg.clone())),
    );
    let doc = sync_with(vec![app, app25, app_text]);
    let r = wbxml_rewrite::rewrite_response(&doc, &remove(), NONE).unwrap();
    assert_eq!(r.summary.removed, 3);
    let tree = Element::parse(&r.body).unwrap();
    let adds: Vec<_> = tree
        .find_path(&["Collections", "Collection", "Commands"])
        .unwrap()
        .find_all("Add")
        .collect();
    let data1 = adds[0]
        .find_path(&["ApplicationData", "Body", "Data"])
        .and_then(Element::text)
        .unwrap();
    assert!(data1.contains("removed by the email security gateway") && !data1.contains("c2VjcmV0"));
    let app25 = adds[1].find("ApplicationData").unwrap();
    assert!(app25.find("Attachments").is_none());
    assert!(
        !app25
            .find("MIMEData")
            .and_then(Element::text)
            .unwrap()
            .contains("c2VjcmV0")
    );
    let data3 = adds[2]
        .find_path(&["ApplicationData", "Body", "Data"])
        .and_then(Element::text)
        .unwrap();
    assert_eq!(data3, mime_msg);

    // Encrypt in 2.5 metadata: AttName renamed.
    let keys = Keys::new();
    let r = wbxml_rewrite::rewrite_response(&doc, &keys.policy(), NONE).unwrap();
    assert_eq!(texts_of(&r.body, 2, 0x07), vec!["plan.xlsx.p7m"]);
}

// ---------------------------------------------------------------- SmartForward / SmartReply

#[test]
fn smartforward_gets_replacemime_and_stays_otherwise_identical() {
    let input = sample("smartforward-request.wbxml");
    let r = compose::rewrite_compose_request(&input, &remove(), ComposeFix::ReplaceMime, false)
        .unwrap();
    assert!(!r.retarget_to_sendmail);
    let order: Vec<&str> = tags(&r.body).iter().map(|t| t.name()).collect();
    let mime_at = order.iter().position(|n| *n == "Mime").unwrap();
    assert_eq!(order[mime_at - 1], "ReplaceMime");
    // Exactly one token (ReplaceMime without content) was added.
    assert_eq!(r.body.len(), input.len() + 1);
    let again =
        compose::rewrite_compose_request(&r.body, &remove(), ComposeFix::ReplaceMime, false)
            .unwrap();
    assert!(matches!(again.body, Cow::Borrowed(_)));
    let d = compose::rewrite_compose_request(
        &input,
        &Policy::new(Decision::Deliver),
        ComposeFix::ReplaceMime,
        false,
    )
    .unwrap();
    assert_eq!(&*d.body, &input[..]);

    // SendMail conversion: root renamed, Source dropped, MIME kept.
    let r =
        compose::rewrite_compose_request(&input, &remove(), ComposeFix::SendMail, false).unwrap();
    assert!(r.retarget_to_sendmail);
    let tree = Element::parse(&r.body).unwrap();
    assert!(tree.is("ComposeMail", "SendMail"));
    assert!(tree.find("Source").is_none() && tree.find("Mime").is_some());

    // SendMail request: untouched unless the device MIME is stripped.
    let sm = sample("sendmail-request.wbxml");
    let r =
        compose::rewrite_compose_request(&sm, &remove(), ComposeFix::ReplaceMime, false).unwrap();
    assert!(matches!(r.body, Cow::Borrowed(_)));
    let r =
        compose::rewrite_compose_request(&sm, &remove(), ComposeFix::ReplaceMime, true).unwrap();
    assert_eq!(r.summary.removed, 1);
    let m = Element::parse(&r.body).unwrap();
    assert!(
        mime::attachment_names(m.find("Mime").and_then(Element::opaque).unwrap(), 4).is_empty()
    );
}

#[test]
fn legacy_smartforward_goes_out_as_sendmail() {
    let body = b"From: a@x\r\nSubject: Fwd\r\n\r\nsee below\r\n";
    let (r, retarget) = compose::rfc822_compose(body, &remove(), false).unwrap();
    assert!(retarget);
    assert_eq!(&*r.body, &body[..]);
    let (_, retarget) =
        compose::rfc822_compose(body, &Policy::new(Decision::Deliver), false).unwrap();
    assert!(!retarget);
    let q = compose::retarget_query_to_sendmail(
        "Cmd=SmartForward&User=user1&DeviceId=DEV1&DeviceType=iPhone&ItemId=2&CollectionId=INBOX&SaveInSent=T",
    )
    .unwrap();
    assert_eq!(
        q,
        "Cmd=SendMail&User=user1&DeviceId=DEV1&DeviceType=iPhone&SaveInSent=T"
    );
    // base64 query (12.1 SmartForward with ItemId) → SendMail without ItemId.
    let mut b = eas::Base64Query::decode("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l").unwrap();
    b.command_code = 2;
    b.item_id = Some("2".into());
    let q = compose::retarget_query_to_sendmail(&b.encode().unwrap()).unwrap();
    let d = eas::Base64Query::decode(&q).unwrap();
    assert_eq!(d.command_code, 1);
    assert!(d.item_id.is_none());
}

// ---------------------------------------------------------------- more places

#[test]
fn two_recipients_each_decrypt() {
    let (a, b) = (Keys::new(), Keys::new());
    let mut both =
        Recipients::from_pem(&std::fs::read(a.dir.path().join("cert.pem")).unwrap()).unwrap();
    both.extend(
        Recipients::from_pem(&std::fs::read(b.dir.path().join("cert.pem")).unwrap()).unwrap(),
    );
    assert_eq!(both.len(), 2);
    let der = eas::attachment::encrypt::envelope(b"for both", &both).unwrap();
    assert_eq!(a.decrypt(&der), b"for both");
    assert_eq!(b.decrypt(&der), b"for both");
    let empty = eas::attachment::encrypt::envelope(b"", &both).unwrap();
    assert_eq!(a.decrypt(&empty), b"");
}

#[test]
fn ec_p256_recipients_use_ecdh_and_decrypt() {
    let ec = Keys::ec();
    let rsa = Keys::new();
    let der = eas::attachment::encrypt::envelope(b"ecdh works", &ec.recipients()).unwrap();
    assert_eq!(ec.decrypt(&der), b"ecdh works");
    // Mixed RSA + EC recipients in one EnvelopedData (version 2).
    let mut both = (*ec.recipients()).clone();
    both.extend((*rsa.recipients()).clone());
    let pdf = pdf_bytes();
    let der = eas::attachment::encrypt::envelope(&pdf, &both).unwrap();
    assert_eq!(ec.decrypt(&der), pdf);
    assert_eq!(rsa.decrypt(&der), pdf);
    // P-384 is refused when loading, with the recipient index.
    let p384 = Keys::with(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"]);
    let pem = std::fs::read(p384.dir.path().join("cert.pem")).unwrap();
    assert!(matches!(
        Recipients::from_pem(&pem),
        Err(AttachmentError::Certificate { index: 0, .. })
    ));
}

#[test]
fn search_results_and_item_fetches_lose_their_attachments() {
    let att = || {
        el("AirSyncBase", "Attachments").with_child(
            el("AirSyncBase", "Attachment")
                .with_child(el("AirSyncBase", "DisplayName").with_text("q3.pdf"))
                .with_child(el("AirSyncBase", "FileReference").with_text("mail/INBOX/9/2")),
        )
    };
    let search = Element::named("Search", "Search")
        .unwrap()
        .with_text_child("Status", "1")
        .unwrap()
        .with_child(
            el("Search", "Response").with_child(
                el("Search", "Store")
                    .with_child(el("Search", "Status").with_text("1"))
                    .with_child(
                        el("Search", "Result")
                            .with_child(el("Search", "LongId").with_text("L1"))
                            .with_child(
                                el("Search", "Properties")
                                    .with_child(el("Email", "Subject").with_text("Q3"))
                                    .with_child(att()),
                            ),
                    ),
            ),
        )
        .encode()
        .unwrap();
    let r = wbxml_rewrite::rewrite_response(&search, &remove(), NONE).unwrap();
    assert_eq!(r.summary.removed, 1);
    assert!(!tags(&r.body).contains(&ASB_ATTACHMENTS));

    // ItemOperations Fetch of an item (ServerId): the item's attachment list is rewritten, the
    // Fetch itself is not refused (it is not an attachment fetch).
    let item_fetch = el("ItemOperations", "ItemOperations")
        .with_child(el("ItemOperations", "Status").with_text("1"))
        .with_child(
            el("ItemOperations", "Response").with_child(
                el("ItemOperations", "Fetch")
                    .with_child(el("ItemOperations", "Status").with_text("1"))
                    .with_child(el("AirSync", "CollectionId").with_text("INBOX"))
                    .with_child(el("AirSync", "ServerId").with_text("9"))
                    .with_child(
                        el("ItemOperations", "Properties")
                            .with_child(el("Email", "Subject").with_text("Q3"))
                            .with_child(att()),
                    ),
            ),
        )
        .encode()
        .unwrap();
    let r = wbxml_rewrite::rewrite_response(&item_fetch, &remove(), NONE).unwrap();
    let tree = Element::parse(&r.body).unwrap();
    let fetch = tree.find_path(&["Response", "Fetch"]).unwrap();
    assert_eq!(fetch.find("Status").and_then(Element::text), Some("1"));
    assert!(fetch.find_path(&["Properties", "Attachments"]).is_none());
    assert_eq!(
        fetch
            .find_path(&["Properties", "Subject"])
            .and_then(Element::text),
        Some("Q3")
    );
}

#[test]
fn ranged_fetch_under_encrypt_is_refused_and_doclib_fetch_is_covered() {
    let keys = Keys::new();
    let fetch = |reference: Element, range: bool| {
        let mut props = el("ItemOperations", "Properties");
        if range {
            props = props.with_child(el("ItemOperations", "Range").with_text("0-9"));
        }
        props = props.with_child(el("ItemOperations", "Data").with_text("aGVsbG8="));
        el("ItemOperations", "ItemOperations")
            .with_child(el("ItemOperations", "Status").with_text("1"))
            .with_child(
                el("ItemOperations", "Response").with_child(
                    el("ItemOperations", "Fetch")
                        .with_child(el("ItemOperations", "Status").with_text("1"))
                        .with_child(reference)
                        .with_child(props),
                ),
            )
            .encode()
            .unwrap()
    };
    let doc = fetch(el("AirSyncBase", "FileReference").with_text("f/1"), true);
    let r = wbxml_rewrite::rewrite_response(&doc, &keys.policy(), NONE).unwrap();
    assert_eq!(r.summary.removed, 1);
    assert_eq!(texts_of(&r.body, 20, 0x0D), vec!["1", "15"]);

    let doc = fetch(
        el("DocumentLibrary", "LinkId").with_text("\\\\srv\\share\\a.docx"),
        false,
    );
    let r = wbxml_rewrite::rewrite_response(&doc, &remove(), NONE).unwrap();
    assert_eq!(texts_of(&r.body, 20, 0x0D), vec!["1", "15"]);
    let r = wbxml_rewrite::rewrite_response(&doc, &keys.policy(), NONE).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(texts_of(&r.body, 20, 0x0C).pop().unwrap())
        .unwrap();
    assert_eq!(keys.decrypt(&der), b"hello");
}

#[test]
fn config_generations_are_independent() {
    // The gateway swaps a new AttachmentControl in on reload; a request uses the generation
    // it read, the next request the new one (no restart, parked Pings untouched).
    let mut cfg = AttachmentControlConfig {
        enabled: true,
        ..Default::default()
    };
    cfg.platform.secure_apps.action = eas::attachment::Action::Remove;
    let g1 = AttachmentControl::new(&cfg, None).unwrap();
    cfg.platform.ios_native.action = eas::attachment::Action::Deliver;
    let g2 = AttachmentControl::new(&cfg, None).unwrap();
    assert!(matches!(
        g1.policy_for(Some("iPhone"), None).decision,
        Decision::Remove
    ));
    assert!(g2.policy_for(Some("iPhone"), None).decision.is_deliver());
}

#[test]
fn places_and_smartreply() {
    use eas::Command;
    use eas::attachment::Place;
    assert_eq!(Place::of(Command::Sync), Place::Response);
    assert_eq!(Place::of(Command::ItemOperations), Place::Response);
    assert_eq!(Place::of(Command::Search), Place::Response);
    assert_eq!(Place::of(Command::GetAttachment), Place::GetAttachment);
    assert_eq!(Place::of(Command::SmartReply), Place::ComposeRequest);
    assert_eq!(Place::of(Command::Ping), Place::None);
    // SmartReply gets ReplaceMime like SmartForward; one without Mime is refused.
    let reply = el("ComposeMail", "SmartReply")
        .with_child(el("ComposeMail", "ClientId").with_text("r1"))
        .with_child(
            el("ComposeMail", "Source").with_child(el("ComposeMail", "ItemId").with_text("2")),
        )
        .with_child(el("ComposeMail", "Mime").with_opaque(b"Subject: re\r\n\r\nok\r\n".to_vec()))
        .encode()
        .unwrap();
    let r = compose::rewrite_compose_request(&reply, &remove(), ComposeFix::ReplaceMime, false)
        .unwrap();
    assert!(
        Element::parse(&r.body)
            .unwrap()
            .find("ReplaceMime")
            .is_some()
    );
    let no_mime = el("ComposeMail", "SmartReply")
        .with_child(el("ComposeMail", "ClientId").with_text("r1"))
        .encode()
        .unwrap();
    let e = compose::rewrite_compose_request(&no_mime, &remove(), ComposeFix::ReplaceMime, false)
        .unwrap_err();
    assert_eq!(e.fault(), eas::Fault::Device);
    assert!(!e.applies_on_oversize());
}
