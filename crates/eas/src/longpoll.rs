//! Long-poll facts: how long a Ping or Sync request may be held by the server, read from the
//! request body with the streaming reader (bounded, nothing copied). The gateway sets its
//! upstream timeout from them.
//!
//! Both commands may be sent with an empty body, which makes the server reuse the parameters
//! of the last request (MS-ASCMD 3.1.5.8 for Ping, 2.2.1.21 for Sync). This module says *that*
//! the body is empty; remembering the last heartbeat per device is the caller's job.

use std::time::Duration;

use wbxml::Limits;

use crate::body::{BodyReader, SMALL_BODY, parse_u32, tags};
use crate::command::Command;
use crate::error::EasError;

/// What a Ping request body says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingBody {
    /// No body: the server reuses the cached HeartbeatInterval and folder list.
    Empty,
    /// A Ping document. `heartbeat` is `None` when the element is absent (the server then
    /// reuses its cached interval); `folders` counts `Folders/Folder` entries.
    Request {
        heartbeat: Option<u32>,
        folders: usize,
    },
}

impl PingBody {
    /// The requested heartbeat, when the body states one.
    pub fn heartbeat(&self) -> Option<Duration> {
        match self {
            Self::Request {
                heartbeat: Some(s), ..
            } => Some(Duration::from_secs(u64::from(*s))),
            _ => None,
        }
    }
}

/// Read a Ping request body.
pub fn ping_body(body: &[u8]) -> Result<PingBody, EasError> {
    if body.is_empty() {
        return Ok(PingBody::Empty);
    }
    let (mut r, has_content) =
        BodyReader::open("Ping", body, &SMALL_BODY, tags::PING, "Ping:Ping")?;
    let mut heartbeat = None;
    let mut folders = 0usize;
    if has_content {
        while let Some((tag, has_content)) = r.next_start()? {
            let depth = r.path().len() + usize::from(!has_content);
            match (depth, tag) {
                (2, t) if t == tags::PING_HEARTBEAT => {
                    let v = r.leaf_of(has_content, "HeartbeatInterval")?;
                    if heartbeat.is_some() {
                        return Err(duplicate("Ping", "HeartbeatInterval"));
                    }
                    heartbeat = Some(parse_u32("Ping", "HeartbeatInterval", v)?);
                }
                (3, t)
                    if t == tags::PING_FOLDER && r.path().get(1) == Some(&tags::PING_FOLDERS) =>
                {
                    folders += 1;
                    if has_content {
                        r.skip()?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(PingBody::Request { heartbeat, folders })
}

/// How long the server may hold a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongPoll {
    /// Empty body (or a Ping without HeartbeatInterval): the server reuses the last request's
    /// interval, which the caller remembers per device.
    ReuseLast,
    /// The body asks the server to hold the request up to this long.
    Hold(Duration),
    /// Not a long poll: the server answers promptly.
    No,
}

/// Sync's `Wait` (minutes) / `HeartbeatInterval` (seconds) as a [`LongPoll`]. A client must not
/// send both; if one does, the longer is reported (the safe choice for a timeout).
pub fn sync_long_poll(body: &[u8]) -> Result<LongPoll, EasError> {
    if body.is_empty() {
        return Ok(LongPoll::ReuseLast);
    }
    // Sync bodies carry uploaded items: default (large) document limits, still bounded.
    let limits = Limits {
        max_depth: 32,
        ..Limits::default()
    };
    let (mut r, has_content) = BodyReader::open("Sync", body, &limits, tags::SYNC, "AirSync:Sync")?;
    let mut hold: Option<u64> = None;
    if has_content {
        while let Some((tag, has_content)) = r.next_start()? {
            if !has_content || r.path().len() != 2 {
                continue;
            }
            let secs = if tag == tags::SYNC_WAIT {
                u64::from(parse_u32("Sync", "Wait", r.leaf("Wait")?)?) * 60
            } else if tag == tags::SYNC_HEARTBEAT {
                u64::from(parse_u32(
                    "Sync",
                    "HeartbeatInterval",
                    r.leaf("HeartbeatInterval")?,
                )?)
            } else {
                // Collections and friends: skipped without looking inside.
                r.skip()?;
                continue;
            };
            hold = Some(hold.map_or(secs, |h| h.max(secs)));
        }
    }
    Ok(match hold {
        Some(s) => LongPoll::Hold(Duration::from_secs(s)),
        None => LongPoll::No,
    })
}

/// The long-poll fact of any request body: Ping and Sync are read, everything else is `No`.
pub fn long_poll(command: Command, body: &[u8]) -> Result<LongPoll, EasError> {
    match command {
        Command::Ping => Ok(match ping_body(body)? {
            PingBody::Empty
            | PingBody::Request {
                heartbeat: None, ..
            } => LongPoll::ReuseLast,
            PingBody::Request {
                heartbeat: Some(s), ..
            } => LongPoll::Hold(Duration::from_secs(u64::from(s))),
        }),
        Command::Sync => sync_long_poll(body),
        _ => Ok(LongPoll::No),
    }
}

fn duplicate(command: &'static str, element: &'static str) -> EasError {
    EasError::InvalidBodyValue {
        command,
        element,
        value: String::new(),
        expected: "at most one such element",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wbxml::Writer;

    /// Ping page 13: Ping 0x05, HeartbeatInterval 0x08, Folders 0x09, Folder 0x0A, Id 0x0B.
    fn ping(heartbeat: Option<&str>, folders: usize) -> Vec<u8> {
        let mut w = Writer::new();
        w.start(13, 0x05, true).unwrap();
        if let Some(h) = heartbeat {
            w.text_element(13, 0x08, h).unwrap();
        }
        if folders > 0 {
            w.start(13, 0x09, true).unwrap();
            for i in 0..folders {
                w.start(13, 0x0A, true).unwrap();
                w.text_element(13, 0x0B, &i.to_string()).unwrap();
                w.text_element(13, 0x0C, "Email").unwrap();
                w.end().unwrap();
            }
            w.end().unwrap();
        }
        w.end().unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn ping_facts() {
        assert_eq!(ping_body(&[]), Ok(PingBody::Empty));
        assert_eq!(
            ping_body(&ping(Some("480"), 1)),
            Ok(PingBody::Request {
                heartbeat: Some(480),
                folders: 1
            })
        );
        assert_eq!(
            ping_body(&ping(None, 3)),
            Ok(PingBody::Request {
                heartbeat: None,
                folders: 3
            })
        );
        assert_eq!(
            ping_body(&ping(Some("60"), 0)).unwrap().heartbeat(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(PingBody::Empty.heartbeat(), None);
    }

    #[test]
    fn ping_errors() {
        assert!(matches!(
            ping_body(&ping(Some("soon"), 1)),
            Err(EasError::InvalidBodyValue {
                element: "HeartbeatInterval",
                ..
            })
        ));
        assert!(matches!(
            ping_body(b"\x03\x01\x6a\x00\x00\x0d\x45"),
            Err(EasError::Wbxml {
                command: "Ping",
                ..
            })
        ));
        assert!(matches!(ping_body(b"garbage"), Err(EasError::Wbxml { .. })));
        // A Sync document sent as Ping.
        let mut w = Writer::new();
        w.start(0, 0x05, false).unwrap();
        assert!(matches!(
            ping_body(&w.finish().unwrap()),
            Err(EasError::UnexpectedRoot { .. })
        ));
        // Two heartbeats.
        let mut w = Writer::new();
        w.start(13, 0x05, true).unwrap();
        w.text_element(13, 0x08, "60").unwrap();
        w.text_element(13, 0x08, "70").unwrap();
        w.end().unwrap();
        assert!(matches!(
            ping_body(&w.finish().unwrap()),
            Err(EasError::InvalidBodyValue { .. })
        ));
    }

    fn sync(children: &[(u8, &str)]) -> Vec<u8> {
        let mut w = Writer::new();
        w.start(0, 0x05, true).unwrap();
        // Collections/Collection/SyncKey first, as clients send it.
        w.start(0, 0x1C, true).unwrap();
        w.start(0, 0x0F, true).unwrap();
        w.text_element(0, 0x0B, "1").unwrap();
        w.end().unwrap();
        w.end().unwrap();
        for (token, text) in children {
            w.text_element(0, *token, text).unwrap();
        }
        w.end().unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn sync_facts() {
        assert_eq!(sync_long_poll(&[]), Ok(LongPoll::ReuseLast));
        assert_eq!(sync_long_poll(&sync(&[])), Ok(LongPoll::No));
        assert_eq!(
            sync_long_poll(&sync(&[(0x24, "5")])),
            Ok(LongPoll::Hold(Duration::from_secs(300)))
        );
        assert_eq!(
            sync_long_poll(&sync(&[(0x29, "900")])),
            Ok(LongPoll::Hold(Duration::from_secs(900)))
        );
        assert_eq!(
            sync_long_poll(&sync(&[(0x29, "100"), (0x24, "2")])),
            Ok(LongPoll::Hold(Duration::from_secs(120)))
        );
        assert!(matches!(
            sync_long_poll(&sync(&[(0x24, "x")])),
            Err(EasError::InvalidBodyValue {
                element: "Wait",
                ..
            })
        ));
    }

    #[test]
    fn long_poll_by_command() {
        assert_eq!(long_poll(Command::Ping, &[]), Ok(LongPoll::ReuseLast));
        assert_eq!(
            long_poll(Command::Ping, &ping(None, 1)),
            Ok(LongPoll::ReuseLast)
        );
        assert_eq!(
            long_poll(Command::Ping, &ping(Some("480"), 1)),
            Ok(LongPoll::Hold(Duration::from_secs(480)))
        );
        assert_eq!(
            long_poll(Command::FolderSync, b"anything"),
            Ok(LongPoll::No)
        );
        assert_eq!(long_poll(Command::Sync, &[]), Ok(LongPoll::ReuseLast));
    }
}
