//! Shared by the attachment control end-to-end tests (`attachments_*.rs`): the real captures in
//! `shared/eas-samples/`, an RSA reader key + certificate made by the openssl CLI, `openssl cms
//! -decrypt`, and a gateway runtime with `[attachment_control]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command as Proc;

use eas::attachment::AttachmentControlConfig;
use gateway::model::Runtime;
use http::Request;

use crate::support::TBody;

pub fn shared() -> PathBuf {
    std::env::var_os("EASGATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
}

pub fn sample(name: &str) -> Vec<u8> {
    let p = shared().join("eas-samples").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// An RSA key and self-signed certificate (`reader.pem`, `reader.key`) made by the openssl CLI
/// in a temporary directory, which is also the "config directory" recipients resolve against.
pub struct Keys {
    pub dir: tempfile::TempDir,
}

impl Keys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Proc::new("openssl")
            .args([
                "req", "-x509", "-nodes", "-days", "2", "-newkey", "rsa:2048",
            ])
            .args(["-subj", "/CN=attachment-reader"])
            .arg("-keyout")
            .arg(dir.path().join("reader.key"))
            .arg("-out")
            .arg(dir.path().join("reader.pem"))
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Keys { dir }
    }

    /// `openssl cms -decrypt` of DER CMS EnvelopedData.
    pub fn decrypt(&self, der: &[u8]) -> Vec<u8> {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let input = self.dir.path().join(format!("in-{n}.der"));
        let output = self.dir.path().join(format!("out-{n}.bin"));
        std::fs::write(&input, der).unwrap();
        let st = Proc::new("openssl")
            .args(["cms", "-decrypt", "-binary", "-inform", "DER", "-in"])
            .arg(&input)
            .arg("-recip")
            .arg(self.dir.path().join("reader.pem"))
            .arg("-inkey")
            .arg(self.dir.path().join("reader.key"))
            .arg("-out")
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "openssl cms -decrypt: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        std::fs::read(output).unwrap()
    }

    /// `[attachment_control]` enabled with `keys` (top-level keys, e.g. `on_oversize = "deliver"`)
    /// and `tables` (e.g. `[platform.other]\naction = "deliver"`), encrypting to `reader.pem`.
    pub fn config(&self, keys: &str, tables: &str) -> AttachmentControlConfig {
        toml::from_str(&format!(
            "enabled = true\n{keys}\n{tables}\n[encryption]\nrecipients = [\"reader.pem\"]\n"
        ))
        .expect("[attachment_control] snippet")
    }

    /// Applies `cfg` to `rt` the way a reload does (validated, certificates loaded).
    pub fn apply(&self, rt: &mut Runtime, cfg: AttachmentControlConfig) {
        rt.attachments = gateway::attachments::compile(&cfg, self.dir.path()).expect("valid");
        rt.source.attachment_control = cfg;
    }
}

/// Default platform classes: DeviceType `iPhone` → ios_native (remove), `Outlook` →
/// secure_apps (encrypt), `SmartPhone` → other (remove unless configured).
pub fn req(
    cmd: &str,
    device_type: &str,
    extra_query: &str,
    version: &str,
    body: TBody,
) -> Request<TBody> {
    Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd={cmd}&User=user1&DeviceId=ATT{device_type}&DeviceType={device_type}{extra_query}"
    ))
    .header("host", "gw.test")
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .header("ms-asprotocolversion", version)
    .header("accept-encoding", "gzip")
    .body(body)
    .unwrap()
}

/// The body of the MIME part whose headers contain `after` (CRLF message).
pub fn part_body<'a>(msg: &'a [u8], after: &str) -> &'a [u8] {
    let s = std::str::from_utf8(msg).unwrap();
    let at = s.find(after).unwrap();
    let start = at + s[at..].find("\r\n\r\n").unwrap() + 4;
    let end = start + s[start..].find("\r\n--").unwrap();
    &msg[start..end]
}

/// The text of every element named `name` (depth-first).
pub fn texts(e: &wbxml::Element, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(e: &wbxml::Element, name: &str, out: &mut Vec<String>) {
        if e.name() == name
            && let Some(t) = e.text()
        {
            out.push(t.to_string());
        }
        for c in e.elements() {
            walk(c, name, out);
        }
    }
    walk(e, name, &mut out);
    out
}

/// True if an element named `name` exists anywhere.
pub fn has(e: &wbxml::Element, name: &str) -> bool {
    e.name() == name || e.elements().any(|c| has(c, name))
}
