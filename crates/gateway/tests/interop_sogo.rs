//! Issue 3 interop: a real ActiveSync server (SOGo 5.8 behind nginx, brought up by
//! `../shared/peers/sogo-up.sh`, see scripts/test.sh) reached through the gateway with device TLS
//! on. OPTIONS, FolderSync, Sync and a Ping go through the gateway and the direct path; status
//! and the decoded bodies are compared.
//!
//! The peer's address comes from `EASGATE_SOGO` (default `127.0.0.1:20080`). With no peer
//! listening the tests FAIL with instructions, unless `EASGATE_INTEROP=skip`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use support::sogo::peer;
use support::*;
use wbxml::Element;

const USER: &str = "user1";
/// `user1:pass1` (the peer's seeded account).
const BASIC: &str = "Basic dXNlcjE6cGFzczE=";

/// A gateway with device TLS on in front of the peer, with a short server response timeout
/// (20 s) so that only the long-poll rule can keep a 60 s Ping open.
async fn gateway_for(peer: SocketAddr) -> (RunningGateway, DeviceTls) {
    let tls = device_tls();
    let mut rt = runtime(&[addr_of(peer)]);
    rt.device_tls = Some(tls.server.clone());
    rt.timeouts.server_response = Duration::from_secs(20);
    (start(rt).await, tls)
}

/// One ActiveSync exchange on a fresh connection (through the gateway when `tls` is given).
async fn exchange(
    addr: SocketAddr,
    tls: Option<&DeviceTls>,
    req: Request<TBody>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut dev = device(addr, tls.map(|t| &t.cert), false).await;
    tokio::time::timeout(Duration::from_secs(150), dev.send(req))
        .await
        .expect("peer answered within 150 s")
}

fn post(host: &str, cmd: &str, dev: &str, xml: Option<&str>) -> Request<TBody> {
    let body = match xml {
        Some(x) => full(wbxml::xml::from_xml(x).expect("request XML encodes")),
        None => empty(),
    };
    Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd={cmd}&User={USER}&DeviceId={dev}&DeviceType=iPhone"
    ))
    .header("host", host)
    .header("authorization", BASIC)
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .header("ms-asprotocolversion", "14.1")
    .header("user-agent", "Apple-iPhone9C1/1402.100")
    .body(body)
    .unwrap()
}

fn options(host: &str, auth: bool) -> Request<TBody> {
    let mut b = Request::options("/Microsoft-Server-ActiveSync").header("host", host);
    if auth {
        b = b.header("authorization", BASIC);
    }
    b.body(empty()).unwrap()
}

const DOCTYPE: &str = "<?xml version=\"1.0\"?>\n<!DOCTYPE ActiveSync PUBLIC \"-//MICROSOFT//DTD ActiveSync//EN\" \"http://www.microsoft.com/\">\n";

fn folder_sync_xml() -> String {
    format!(
        "{DOCTYPE}<FolderSync xmlns=\"FolderHierarchy:\">\n<SyncKey>0</SyncKey>\n</FolderSync>\n"
    )
}

fn sync_xml(key: &str, collection: &str, get_changes: bool) -> String {
    let changes = if get_changes {
        "<DeletesAsMoves>1</DeletesAsMoves>\n<GetChanges>1</GetChanges>\n<WindowSize>100</WindowSize>\n\
         <Options>\n<FilterType>0</FilterType>\n<BodyPreference xmlns=\"AirSyncBase:\">\n<Type>1</Type>\n\
         <TruncationSize>5120</TruncationSize>\n</BodyPreference>\n</Options>\n"
    } else {
        ""
    };
    format!(
        "{DOCTYPE}<Sync xmlns=\"AirSync:\">\n<Collections>\n<Collection>\n<SyncKey>{key}</SyncKey>\n\
         <CollectionId>{collection}</CollectionId>\n{changes}</Collection>\n</Collections>\n</Sync>\n"
    )
}

fn ping_xml(heartbeat: u32, folder: &str) -> String {
    format!(
        "{DOCTYPE}<Ping xmlns=\"Ping:\">\n<HeartbeatInterval>{heartbeat}</HeartbeatInterval>\n<Folders>\n\
         <Folder>\n<Id>{folder}</Id>\n<Class>Email</Class>\n</Folder>\n</Folders>\n</Ping>\n"
    )
}

fn decode(body: &Bytes) -> Element {
    Element::parse(body).unwrap_or_else(|e| panic!("server body is WBXML: {e}"))
}

fn text_at<'a>(e: &'a Element, path: &[&str]) -> Option<&'a str> {
    e.find_path(path).and_then(Element::text)
}

/// The folder list of a FolderSync response: sorted (ServerId, DisplayName, Type).
fn folders(resp: &Element) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = resp
        .find("Changes")
        .map(|c| {
            c.find_all("Add")
                .map(|a| {
                    let f = |n| a.find(n).and_then(Element::text).unwrap_or("").to_string();
                    (f("ServerId"), f("DisplayName"), f("Type"))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The items of a Sync response: sorted (ServerId, Subject, attachment FileReferences).
fn items(resp: &Element) -> Vec<(String, String, Vec<String>)> {
    let mut v = Vec::new();
    if let Some(cmds) = resp.find_path(&["Collections", "Collection", "Commands"]) {
        for add in cmds.find_all("Add") {
            let id = add.find("ServerId").and_then(Element::text).unwrap_or("");
            let data = add.find("ApplicationData");
            let subject = data
                .and_then(|d| d.find("Subject"))
                .and_then(Element::text)
                .unwrap_or("");
            let refs = data
                .and_then(|d| d.find("Attachments"))
                .map(|a| {
                    a.find_all("Attachment")
                        .filter_map(|x| x.find("FileReference").and_then(Element::text))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            v.push((id.to_string(), subject.to_string(), refs));
        }
    }
    v.sort();
    v
}

/// FolderSync then a full Sync of the INBOX for one device; returns (folders, inbox id, items,
/// last sync key).
async fn sync_device(
    addr: SocketAddr,
    tls: Option<&DeviceTls>,
    host: &str,
    dev: &str,
) -> (
    Vec<(String, String, String)>,
    String,
    Vec<(String, String, Vec<String>)>,
    String,
) {
    let (st, hdr, body) = exchange(
        addr,
        tls,
        post(host, "FolderSync", dev, Some(&folder_sync_xml())),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "FolderSync via {host}");
    assert_eq!(hdr["content-type"], "application/vnd.ms-sync.wbxml");
    let fs = decode(&body);
    assert_eq!(text_at(&fs, &["Status"]), Some("1"), "FolderSync Status");
    let list = folders(&fs);
    let inbox = list
        .iter()
        .find(|(_, _, t)| t == "2")
        .map(|(id, _, _)| id.clone())
        .expect("an Inbox (Type 2)");

    let (st, _, body) = exchange(
        addr,
        tls,
        post(host, "Sync", dev, Some(&sync_xml("0", &inbox, false))),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "initial Sync via {host}");
    let first = decode(&body);
    let mut key = text_at(&first, &["Collections", "Collection", "SyncKey"])
        .expect("initial SyncKey")
        .to_string();

    let mut all = Vec::new();
    for _ in 0..10 {
        let (st, _, body) = exchange(
            addr,
            tls,
            post(host, "Sync", dev, Some(&sync_xml(&key, &inbox, true))),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "Sync via {host}");
        if body.is_empty() {
            break; // no changes: an empty 200 is a legal Sync answer
        }
        let resp = decode(&body);
        assert_eq!(
            text_at(&resp, &["Collections", "Collection", "Status"]),
            Some("1")
        );
        all.extend(items(&resp));
        key = text_at(&resp, &["Collections", "Collection", "SyncKey"])
            .unwrap_or(&key)
            .to_string();
        if resp
            .find_path(&["Collections", "Collection", "MoreAvailable"])
            .is_none()
        {
            break;
        }
    }
    all.sort();
    (list, inbox, all, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_through_the_gateway_matches_the_direct_path() {
    let Some(peer) = peer().await else { return };
    let (gw, tls) = gateway_for(peer).await;
    let direct_host = peer.to_string();

    let (d_st, d_hdr, _) = exchange(peer, None, options(&direct_host, true)).await;
    let (g_st, g_hdr, _) = exchange(gw.addr, Some(&tls), options("mail.example.com", true)).await;
    assert_eq!(d_st, StatusCode::OK);
    assert_eq!(g_st, d_st);
    for h in [
        "ms-asprotocolversions",
        "ms-asprotocolcommands",
        "ms-server-activesync",
    ] {
        assert!(d_hdr.contains_key(h), "direct OPTIONS has {h}");
        assert_eq!(g_hdr.get(h), d_hdr.get(h), "{h} through the gateway");
    }
    assert!(
        g_hdr
            .get_all("ms-asprotocolversions")
            .iter()
            .any(|v| v.to_str().unwrap_or("").contains("14.1"))
    );

    // Without credentials the server's 401 and its challenge reach the device untouched.
    let (d_st, d_hdr, _) = exchange(peer, None, options(&direct_host, false)).await;
    let (g_st, g_hdr, _) = exchange(gw.addr, Some(&tls), options("mail.example.com", false)).await;
    assert_eq!(
        (d_st, g_st),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(g_hdr.get("www-authenticate"), d_hdr.get("www-authenticate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foldersync_sync_and_ping_through_the_gateway() {
    let Some(peer) = peer().await else { return };
    let (gw, tls) = gateway_for(peer).await;
    let direct_host = peer.to_string();
    // Separate devices: the server keeps sync state per device.
    let stamp = std::process::id();
    let (dev_d, dev_g) = (format!("IOPD{stamp}"), format!("IOPG{stamp}"));

    let (d_folders, d_inbox, d_items, _) = sync_device(peer, None, &direct_host, &dev_d).await;
    let (g_folders, g_inbox, g_items, g_key) =
        sync_device(gw.addr, Some(&tls), "mail.example.com", &dev_g).await;
    assert_eq!(
        g_folders, d_folders,
        "same folder hierarchy through the gateway"
    );
    assert_eq!(g_inbox, d_inbox);
    assert!(!d_items.is_empty(), "the peer's INBOX is seeded");
    assert_eq!(g_items, d_items, "same INBOX items through the gateway");
    assert!(
        g_items.iter().any(|(_, _, refs)| !refs.is_empty()),
        "the seeded mail with an attachment comes through with its FileReference"
    );

    // Ping with a heartbeat above the gateway's 20 s server response timeout: SOGo parks it for
    // its cap (60 s) and answers Status 5 (or 1). Only the long-poll rule keeps it open. A
    // Status 2 ("changes") means the server had not settled the sync state yet: sync once more
    // with the last key and ping again (bounded).
    let mut key = g_key;
    let mut settled = false;
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let (st, _, body) = exchange(
            gw.addr,
            Some(&tls),
            post(
                "mail.example.com",
                "Ping",
                &dev_g,
                Some(&ping_xml(120, &g_inbox)),
            ),
        )
        .await;
        let waited = started.elapsed();
        assert_eq!(st, StatusCode::OK, "Ping through the gateway");
        let ping = decode(&body);
        let status = text_at(&ping, &["Status"]).unwrap_or("").to_string();
        eprintln!("Ping answered Status {status} after {waited:?}");
        if status == "2" {
            let (st, _, body) = exchange(
                gw.addr,
                Some(&tls),
                post(
                    "mail.example.com",
                    "Sync",
                    &dev_g,
                    Some(&sync_xml(&key, &g_inbox, true)),
                ),
            )
            .await;
            assert_eq!(st, StatusCode::OK);
            if !body.is_empty() {
                let resp = decode(&body);
                if let Some(k) = text_at(&resp, &["Collections", "Collection", "SyncKey"]) {
                    key = k.to_string();
                }
            }
            continue;
        }
        assert!(
            ["1", "5"].contains(&status.as_str()),
            "Ping Status {status}"
        );
        assert!(
            waited > Duration::from_secs(20),
            "the parked Ping outlived the 20 s server response timeout ({waited:?})"
        );
        if status == "5" {
            assert!(
                text_at(&ping, &["HeartbeatInterval"]).is_some(),
                "Status 5 names the allowed heartbeat"
            );
        }
        settled = true;
        break;
    }
    assert!(settled, "a Ping parked at the server within 3 tries");
    let metrics = gw.gw.metrics.render();
    assert!(metrics.contains("Ping"), "Ping counted in metrics");
}

/// A TCP relay in front of the peer that counts the bytes the gateway sends it, so a test can
/// prove that nothing of a blocked device's request reached the server.
async fn counting_relay(
    peer: SocketAddr,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let up = std::sync::Arc::new(AtomicU64::new(0));
    let counter = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(peer).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let upstream = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::SeqCst);
                                if sw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sw.shutdown().await;
                };
                let downstream = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(upstream, downstream);
            });
        }
    });
    (addr, up)
}

/// Issue 4 interop: an allowed device syncs with SOGo through the gateway; after a block through
/// the management API (TLS + bearer token) it gets the configured status (403) and nothing of
/// its request reaches SOGo; after an unblock it syncs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_and_unblock_a_device_in_front_of_sogo() {
    use std::sync::atomic::Ordering;
    let Some(peer) = peer().await else { return };
    let (relay, sent_to_sogo) = counting_relay(peer).await;
    let tls = device_tls();
    let mut rt = runtime(&[addr_of(relay)]);
    rt.device_tls = Some(tls.server.clone());
    let cert = management_tls(&mut rt);
    let gw = start(rt).await;
    let mgmt = start_management(gw.gw.clone(), cert).await;
    let dev = format!("IOPB{}", std::process::id());
    let folder_sync = || {
        post(
            "mail.example.com",
            "FolderSync",
            &dev,
            Some(&folder_sync_xml()),
        )
    };

    let (st, _, body) = exchange(gw.addr, Some(&tls), folder_sync()).await;
    assert_eq!(st, StatusCode::OK, "allowed device syncs");
    assert_eq!(text_at(&decode(&body), &["Status"]), Some("1"));
    assert!(sent_to_sogo.load(Ordering::SeqCst) > 0);

    mgmt.set_state(USER, &dev, "blocked").await;
    let before = sent_to_sogo.load(Ordering::SeqCst);
    let (st, _, _) = exchange(gw.addr, Some(&tls), folder_sync()).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "the configured blocked_response");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sent_to_sogo.load(Ordering::SeqCst),
        before,
        "nothing of the blocked device's request reached SOGo"
    );

    mgmt.set_state(USER, &dev, "allowed").await;
    let (st, _, body) = exchange(gw.addr, Some(&tls), folder_sync()).await;
    assert_eq!(st, StatusCode::OK, "syncs again after the unblock");
    assert_eq!(text_at(&decode(&body), &["Status"]), Some("1"));
    assert!(sent_to_sogo.load(Ordering::SeqCst) > before);
}

// ------------------------------------------------------------------ issue 5: attachment control

mod attachments_support;

/// An ActiveSync POST with a protocol version, extra query parameters and a raw body.
fn post_raw(
    host: &str,
    cmd: &str,
    dev: &str,
    version: &str,
    extra_query: &str,
    body: TBody,
) -> Request<TBody> {
    Request::post(format!(
        "/Microsoft-Server-ActiveSync?Cmd={cmd}&User={USER}&DeviceId={dev}&DeviceType=iPhone{extra_query}"
    ))
    .header("host", host)
    .header("authorization", BASIC)
    .header("content-type", "application/vnd.ms-sync.wbxml")
    .header("ms-asprotocolversion", version)
    .header("user-agent", "Apple-iPhone9C1/1402.100")
    .body(body)
    .unwrap()
}

/// A gateway with device TLS in front of the peer whose iPhones get `action`.
async fn attachment_gateway(
    peer: SocketAddr,
    keys: &attachments_support::Keys,
    action: &str,
) -> (RunningGateway, DeviceTls) {
    let tls = device_tls();
    let mut rt = runtime(&[addr_of(peer)]);
    rt.device_tls = Some(tls.server.clone());
    rt.timeouts.server_response = Duration::from_secs(20);
    keys.apply(
        &mut rt,
        keys.config("", &format!("[platform.ios_native]\naction = \"{action}\"")),
    );
    (start(rt).await, tls)
}

/// The seeded mail with `report.pdf` on the direct path: (inbox id, ServerId, FileReference).
async fn report_mail(peer: SocketAddr, dev: &str) -> (String, String, String) {
    let host = peer.to_string();
    let (_, inbox, items, _) = sync_device(peer, None, &host, dev).await;
    let (id, _, refs) = items
        .iter()
        .find(|(_, subject, refs)| subject.contains("report") && !refs.is_empty())
        .unwrap_or_else(|| panic!("the seeded mail with report.pdf is in the INBOX: {items:?}"));
    (inbox, id.clone(), refs[0].clone())
}

fn fetch_xml(file_ref: &str) -> String {
    format!(
        "{DOCTYPE}<ItemOperations xmlns=\"ItemOperations:\">\n<Fetch>\n<Store>Mailbox</Store>\n\
         <FileReference xmlns=\"AirSyncBase:\">{file_ref}</FileReference>\n</Fetch>\n</ItemOperations>\n"
    )
}

/// ItemOperations Fetch of `file_ref`: (Fetch Status, decoded Data).
async fn fetch(
    addr: SocketAddr,
    tls: Option<&DeviceTls>,
    host: &str,
    dev: &str,
    file_ref: &str,
) -> (String, Option<Vec<u8>>) {
    use base64::Engine as _;
    let (st, _, body) = exchange(
        addr,
        tls,
        post(host, "ItemOperations", dev, Some(&fetch_xml(file_ref))),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "ItemOperations via {host}");
    let doc = decode(&body);
    assert_eq!(text_at(&doc, &["Status"]), Some("1"));
    let status = text_at(&doc, &["Response", "Fetch", "Status"])
        .unwrap_or("")
        .to_string();
    let data = text_at(&doc, &["Response", "Fetch", "Properties", "Data"]).map(|d| {
        base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .expect("base64 Data")
    });
    (status, data)
}

/// GetAttachment (12.1; SOGo needs the WBXML Content-Type on the empty POST).
async fn get_attachment(
    addr: SocketAddr,
    tls: Option<&DeviceTls>,
    host: &str,
    dev: &str,
    file_ref: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let q = format!("&AttachmentName={}", file_ref.replace('/', "%2F"));
    let mut r = post_raw(host, "GetAttachment", dev, "12.1", &q, empty());
    r.headers_mut()
        .insert("content-length", http::HeaderValue::from_static("0"));
    exchange(addr, tls, r).await
}

fn smtp_dir() -> std::path::PathBuf {
    std::env::var_os("EAS_PEER_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/tmp/eas-peer"))
        .join("smtp")
}

/// Waits (bounded, 30 s) for the SMTP sink to store a mail containing `marker`.
async fn sent_mail_with(marker: &str) -> String {
    for _ in 0..300 {
        if let Ok(dir) = std::fs::read_dir(smtp_dir()) {
            let mut files: Vec<_> = dir
                .filter_map(Result::ok)
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .collect();
            files.sort();
            for (_, path) in files.iter().rev().take(20) {
                if let Ok(text) = std::fs::read(path) {
                    let text = String::from_utf8_lossy(&text).into_owned();
                    if text.contains(marker) {
                        return text;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no mail with {marker} reached the SMTP sink in {}",
        smtp_dir().display()
    );
}

/// A 14.1 SmartForward of `item` whose own MIME is a short text with `marker` as subject.
fn smart_forward_xml(inbox: &str, item: &str, marker: &str) -> String {
    use base64::Engine as _;
    let mime = format!(
        "From: user1@example.test\r\nTo: someone@example.test\r\nSubject: {marker}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee below\r\n"
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(mime);
    format!(
        "{DOCTYPE}<SmartForward xmlns=\"ComposeMail:\">\n<ClientId>{marker}</ClientId>\n<SaveInSentItems/>\n\
         <Source>\n<FolderId>{inbox}</FolderId>\n<ItemId>{item}</ItemId>\n</Source>\n<MIME>{b64}</MIME>\n</SmartForward>\n"
    )
}

/// Issue 5 interop, "remove": through the gateway SOGo's mail with report.pdf syncs without
/// attachments, ItemOperations and GetAttachment cannot fetch it, and a SmartForward of it
/// reaches the SMTP sink without it (the same SmartForward on the direct path carries it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_removed_in_front_of_sogo() {
    let Some(peer) = peer().await else { return };
    let keys = attachments_support::Keys::new();
    let (gw, tls) = attachment_gateway(peer, &keys, "remove").await;
    let stamp = std::process::id();
    let direct_host = peer.to_string();
    let (inbox, item, file_ref) = report_mail(peer, &format!("ATRD{stamp}")).await;
    let (st, _, pdf) =
        get_attachment(peer, None, &direct_host, &format!("ATRD{stamp}"), &file_ref).await;
    assert_eq!(st, StatusCode::OK, "direct GetAttachment works");
    assert!(pdf.starts_with(b"%PDF"), "the direct path fetches the PDF");

    let dev = format!("ATRG{stamp}");
    let host = "mail.example.com";
    let (_, g_inbox, g_items, _) = sync_device(gw.addr, Some(&tls), host, &dev).await;
    assert_eq!(g_inbox, inbox);
    assert!(
        g_items.iter().any(|(id, _, _)| *id == item),
        "the mail itself syncs"
    );
    assert!(
        g_items.iter().all(|(_, _, refs)| refs.is_empty()),
        "no attachment through the gateway: {g_items:?}"
    );

    let (status, data) = fetch(gw.addr, Some(&tls), host, &dev, &file_ref).await;
    assert_eq!(status, "15", "ItemOperations Fetch refused with Status 15");
    assert!(data.is_none());
    let (st, _, body) = get_attachment(gw.addr, Some(&tls), host, &dev, &file_ref).await;
    assert_eq!(
        st,
        StatusCode::INTERNAL_SERVER_ERROR,
        "GetAttachment refused"
    );
    assert!(body.is_empty());

    // Control: SOGo re-attaches the original's attachments on the direct path...
    let direct_marker = format!("easgate-direct-fwd-{stamp}");
    let (st, _, _) = exchange(
        peer,
        None,
        post(
            &direct_host,
            "SmartForward",
            &format!("ATRD{stamp}"),
            Some(&smart_forward_xml(&inbox, &item, &direct_marker)),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let direct_mail = sent_mail_with(&direct_marker).await;
    assert!(
        direct_mail.contains("report.pdf"),
        "direct SmartForward carries report.pdf"
    );
    // ...and not through the gateway (ReplaceMime).
    let marker = format!("easgate-gw-fwd-{stamp}");
    let (st, _, _) = exchange(
        gw.addr,
        Some(&tls),
        post(
            host,
            "SmartForward",
            &dev,
            Some(&smart_forward_xml(&inbox, &item, &marker)),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "SmartForward through the gateway");
    let mail = sent_mail_with(&marker).await;
    assert!(
        !mail.contains("report.pdf") && !mail.contains("application/pdf"),
        "the forwarded mail lacks the attachment:\n{mail}"
    );
    assert!(mail.contains("see below"), "the device's own text is sent");
}

/// Issue 5 interop, "encrypt": the attachment syncs as report.pdf.p7m, and the bytes fetched
/// through the gateway (ItemOperations and GetAttachment) decrypt with `openssl cms` to the PDF
/// the direct path fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_encrypted_in_front_of_sogo() {
    let Some(peer) = peer().await else { return };
    let keys = attachments_support::Keys::new();
    let (gw, tls) = attachment_gateway(peer, &keys, "encrypt").await;
    let stamp = std::process::id();
    let direct_host = peer.to_string();
    let d_dev = format!("ATED{stamp}");
    let (_, _, file_ref) = report_mail(peer, &d_dev).await;
    let (status, direct_pdf) = fetch(peer, None, &direct_host, &d_dev, &file_ref).await;
    assert_eq!(status, "1");
    let direct_pdf = direct_pdf.expect("direct Fetch has Data");
    assert!(direct_pdf.starts_with(b"%PDF"));

    let dev = format!("ATEG{stamp}");
    let host = "mail.example.com";
    let (_, _, g_items, _) = sync_device(gw.addr, Some(&tls), host, &dev).await;
    assert!(g_items.iter().any(|(_, _, refs)| refs.contains(&file_ref)));

    let (status, data) = fetch(gw.addr, Some(&tls), host, &dev, &file_ref).await;
    assert_eq!(status, "1");
    let der = data.expect("encrypted Data");
    assert_ne!(der, direct_pdf);
    assert_eq!(
        keys.decrypt(&der),
        direct_pdf,
        "ItemOperations bytes decrypt to the PDF"
    );

    let (st, hdr, body) = get_attachment(gw.addr, Some(&tls), host, &dev, &file_ref).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(hdr["content-type"], "application/pkcs7-mime");
    assert_eq!(
        keys.decrypt(&body),
        direct_pdf,
        "GetAttachment bytes decrypt to the PDF"
    );
}
