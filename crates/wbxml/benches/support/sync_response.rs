//! A realistic Sync response, generated deterministically: the shape SOGo sends
//! (`shared/eas-samples/sync-response-attachment.wbxml`) with `mails` Email Add items, each with
//! an HTML body of about 9.5 KB (1 MB in all for 100 mails) and two attachments, page switches as in the real one.
//! Shared by the criterion bench and the `sync_response` example (scripts/bench-wbxml.sh).

use wbxml::Element;

fn el(ns: &str, name: &str) -> Element {
    Element::named(ns, name).expect("tag in the tables")
}

fn leaf(ns: &str, name: &str, text: impl Into<String>) -> Element {
    el(ns, name).with_text(text)
}

fn html_body(i: usize, target: usize) -> String {
    let mut html = String::with_capacity(target + 500);
    html.push_str(
        "<html><head><meta charset=\"utf-8\"><title>Quarterly report</title></head><body>\r\n",
    );
    let mut p = 0;
    while html.len() < target {
        html.push_str(&format!(
            "<p style=\"font-family:Calibri,sans-serif;font-size:11pt\">Paragraph {p} of message {i}: \
             the figures for region {} are attached; please review the totals &amp; reply before Friday. \
             Kind regards, <b>Alice</b></p>\r\n",
            (i * 7 + p) % 13
        ));
        p += 1;
    }
    html.push_str("</body></html>");
    html
}

fn attachment(i: usize, n: usize) -> Element {
    el("AirSyncBase", "Attachment")
        .with_child(leaf(
            "AirSyncBase",
            "DisplayName",
            format!("report-{i}-{n}.pdf"),
        ))
        .with_child(leaf(
            "AirSyncBase",
            "FileReference",
            format!("mail/INBOX/{}/{}", i + 1, n + 2),
        ))
        .with_child(leaf("AirSyncBase", "Method", "1"))
        .with_child(leaf(
            "AirSyncBase",
            "EstimatedDataSize",
            format!("{}", 5000 + 37 * i + n),
        ))
}

fn add(i: usize, body_bytes: usize) -> Element {
    let body = html_body(i, body_bytes);
    let size = body.len().to_string();
    let data = el("AirSync", "ApplicationData")
        .with_child(leaf("Email", "To", "\"User One\" <user1@example.test>"))
        .with_child(leaf("Email", "DisplayTo", "User One"))
        .with_child(leaf(
            "Email",
            "From",
            format!("\"Sender {i}\" <sender{i}@example.test>"),
        ))
        .with_child(leaf("Email", "Subject", format!("Quarterly report {i}")))
        .with_child(leaf(
            "Email",
            "ThreadTopic",
            format!("Quarterly report {i}"),
        ))
        .with_child(leaf(
            "Email",
            "DateReceived",
            format!("2024-01-{:02}T10:{:02}:00.000Z", 1 + i % 28, i % 60),
        ))
        .with_child(leaf("Email", "Importance", "1"))
        .with_child(leaf("Email", "Read", "0"))
        .with_child(leaf("Email", "MessageClass", "IPM.Note"))
        .with_child(leaf("Email", "ContentClass", "urn:content-classes:message"))
        .with_child(leaf(
            "Email",
            "ReplyTo",
            format!("Sender {i} <sender{i}@example.test>"),
        ))
        .with_child(leaf("Email", "InternetCPID", "65001"))
        .with_child(
            el("AirSyncBase", "Body")
                .with_child(leaf("AirSyncBase", "Type", "2"))
                .with_child(leaf("AirSyncBase", "Truncated", "0"))
                .with_child(el("AirSyncBase", "Preview"))
                .with_child(leaf("AirSyncBase", "Data", body))
                .with_child(leaf("AirSyncBase", "EstimatedDataSize", size)),
        )
        .with_child(
            el("AirSyncBase", "Attachments")
                .with_child(attachment(i, 0))
                .with_child(attachment(i, 1)),
        )
        .with_child(el("Email", "Flag").with_child(leaf("Email", "Status", "0")))
        .with_child(el("Email", "Categories"))
        .with_child(
            el("Email2", "ConversationId")
                .with_opaque(format!("<msg-{i}@example.test>").into_bytes()),
        )
        .with_child(leaf("Email2", "LastVerbExecuted", "0"))
        .with_child(leaf("AirSyncBase", "NativeBodyType", "2"));
    el("AirSync", "Add")
        .with_child(leaf("AirSync", "ServerId", format!("{}", i + 1)))
        .with_child(data)
}

/// The Sync response with `mails` mails (100 gives about 1 MB).
pub fn sync_response(mails: usize) -> Vec<u8> {
    sync_response_with_bodies(mails, 9300)
}

/// Same with HTML bodies of about `body_bytes` (small bodies: a token-dense document).
pub fn sync_response_with_bodies(mails: usize, body_bytes: usize) -> Vec<u8> {
    let mut commands = el("AirSync", "Commands");
    for i in 0..mails {
        commands = commands.with_child(add(i, body_bytes));
    }
    let collection = el("AirSync", "Collection")
        .with_child(leaf("AirSync", "Class", "Email"))
        .with_child(leaf("AirSync", "SyncKey", "1-3"))
        .with_child(leaf(
            "AirSync",
            "CollectionId",
            "mail%2F4c95e7063c3d076b3a3d000083ecc375",
        ))
        .with_child(leaf("AirSync", "Status", "1"))
        .with_child(commands);
    el("AirSync", "Sync")
        .with_child(el("AirSync", "Collections").with_child(collection))
        .encode()
        .expect("valid document")
}
