//! What the data plane needs to know about an ActiveSync request: the command (to spot long
//! polls), the user and device (for audit and the heartbeat memory) and the heartbeat a Ping or
//! Sync body asks for. Kept in one module so the body/query semantics can move to the `eas`
//! crate without touching the request path.

use base64::Engine as _;

/// The commands the gateway treats specially; everything else is `Other` (the raw name is still
/// in the query for the audit line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Ping,
    Sync,
    Other,
    /// No `Cmd` (OPTIONS, or an unparsable query).
    None,
}

/// Per-request facts from the query string, read once for audit and long-poll handling.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueryFacts {
    pub command: Option<String>,
    pub user: Option<String>,
    pub device_id: Option<String>,
    pub device_type: Option<String>,
}

/// MS-ASHTTP 2.2.1.1.1.1.2 command codes of the base64 query, by code.
const COMMANDS: [&str; 24] = [
    "Sync",
    "SendMail",
    "SmartForward",
    "SmartReply",
    "GetAttachment",
    "GetHierarchy",
    "CreateCollection",
    "DeleteCollection",
    "MoveCollection",
    "FolderSync",
    "FolderCreate",
    "FolderDelete",
    "FolderUpdate",
    "MoveItems",
    "GetItemEstimate",
    "MeetingResponse",
    "Search",
    "Settings",
    "Ping",
    "ItemOperations",
    "Provision",
    "ResolveRecipients",
    "ValidateCert",
    "Find",
];

/// The command of a request without allocating (hot path: every request).
pub fn command(query: Option<&str>) -> Command {
    Command::of_name(command_name(query))
}

impl Command {
    /// The command named by a [`command_name`] label.
    pub fn of_name(name: &str) -> Command {
        match name {
            "Ping" => Command::Ping,
            "Sync" => Command::Sync,
            "-" => Command::None,
            _ => Command::Other,
        }
    }
}

/// The command name as a static label (metrics): a known MS-ASHTTP name, `Other` for an
/// unknown one, `-` without a command.
pub fn command_name(query: Option<&str>) -> &'static str {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return "-";
    };
    let bytes = q.as_bytes();
    // `Cmd=` first (how devices write it) cannot be base64: `=` there is not padding.
    let plain_cmd_first = bytes.len() > 4 && bytes[..4].eq_ignore_ascii_case(b"cmd=");
    if !plain_cmd_first && is_base64_query(q) {
        // First 4 base64 chars decode to [version, command, locale low byte].
        let mut buf = [0u8; 3];
        let Some(head) = q.get(..4) else { return "-" };
        return match base64::engine::general_purpose::STANDARD.decode_slice(head, &mut buf) {
            Ok(3) => COMMANDS.get(buf[1] as usize).copied().unwrap_or("Other"),
            _ => "-",
        };
    }
    for pair in bytes.split(|&b| b == b'&') {
        if pair.len() >= 4 && pair[..4].eq_ignore_ascii_case(b"cmd=") {
            let v = &pair[4..];
            return COMMANDS
                .iter()
                .find(|c| c.as_bytes().eq_ignore_ascii_case(v))
                .copied()
                .unwrap_or("Other");
        }
    }
    "-"
}

/// A plain query always has `=`; a base64 one never does except as padding at the end.
fn is_base64_query(q: &str) -> bool {
    !q.trim_end_matches('=').contains('=')
}

/// Command, user, DeviceId and DeviceType from a plain or base64 query (MS-ASHTTP 2.2.1.1.1).
/// Used off the hot path (when the audit line is written).
pub fn query_facts(query: Option<&str>) -> QueryFacts {
    let Some(q) = query else {
        return QueryFacts::default();
    };
    if is_base64_query(q) {
        base64_facts(q).unwrap_or_default()
    } else {
        plain_facts(q)
    }
}

fn plain_facts(q: &str) -> QueryFacts {
    let mut f = QueryFacts::default();
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // Compared in place: this runs once per audit line.
        let slot = if k.eq_ignore_ascii_case("cmd") {
            &mut f.command
        } else if k.eq_ignore_ascii_case("user") {
            &mut f.user
        } else if k.eq_ignore_ascii_case("deviceid") {
            &mut f.device_id
        } else if k.eq_ignore_ascii_case("devicetype") {
            &mut f.device_type
        } else {
            continue;
        };
        *slot = Some(percent_decode(v));
    }
    f
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn base64_facts(q: &str) -> Option<QueryFacts> {
    let q = percent_decode(q);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(q.as_bytes())
        .ok()?;
    let mut r = Reader { b: &bytes, i: 0 };
    let _version = r.u8()?;
    let cmd = r.u8()?;
    r.take(2)?; // locale
    let n = r.u8()? as usize;
    let device_id = r.take(n)?;
    let n = r.u8()? as usize;
    r.take(n)?; // policy key
    let n = r.u8()? as usize;
    let device_type = r.take(n)?;
    let mut f = QueryFacts {
        command: Some(
            COMMANDS
                .get(cmd as usize)
                .map_or_else(|| cmd.to_string(), |c| (*c).to_string()),
        ),
        device_id: Some(String::from_utf8_lossy(device_id).into_owned()),
        device_type: Some(String::from_utf8_lossy(device_type).into_owned()),
        user: None,
    };
    while let Some(tag) = r.u8() {
        let n = r.u8()? as usize;
        let v = r.take(n)?;
        if tag == 8 {
            f.user = Some(String::from_utf8_lossy(v).into_owned());
        }
    }
    Some(f)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.i)?;
        self.i += 1;
        Some(v)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.i..self.i.checked_add(n)?)?;
        self.i += n;
        Some(v)
    }
}

/// What a long-poll body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongPoll {
    /// Not a long poll (a Sync without Wait/HeartbeatInterval).
    No,
    /// Long poll with this heartbeat in seconds.
    Heartbeat(u32),
    /// A long poll whose heartbeat the body does not say (empty Ping: the server reuses the
    /// previous one).
    Unknown,
}

/// The heartbeat a Ping or Sync WBXML body asks for (MS-ASCMD: Ping/HeartbeatInterval in
/// seconds; Sync/Wait in minutes or Sync/HeartbeatInterval in seconds), read by the `eas`
/// crate. Never fails on device input: an unreadable Ping is `Unknown` (the server may still hold
/// it), an unreadable Sync is `No`. An empty body reuses the last parameters: `Unknown`.
pub fn long_poll(command: Command, body: &[u8]) -> LongPoll {
    let (cmd, on_error) = match command {
        Command::Ping => (eas::Command::Ping, LongPoll::Unknown),
        Command::Sync => (eas::Command::Sync, LongPoll::No),
        _ => return LongPoll::No,
    };
    match eas::long_poll(cmd, body) {
        Ok(eas::LongPoll::Hold(d)) => {
            LongPoll::Heartbeat(u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        }
        Ok(eas::LongPoll::ReuseLast) => LongPoll::Unknown,
        Ok(eas::LongPoll::No) => LongPoll::No,
        Err(_) => on_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(
            command(Some("Cmd=Ping&User=a&DeviceId=b&DeviceType=c")),
            Command::Ping
        );
        assert_eq!(command(Some("User=a&Cmd=Sync")), Command::Sync);
        assert_eq!(command(Some("Cmd=FolderSync")), Command::Other);
        assert_eq!(command(None), Command::None);
        // 14.0 Sync from the spec.
        assert_eq!(
            command(Some("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l")),
            Command::Sync
        );
        assert_eq!(command(Some("")), Command::None);
        assert_eq!(command(Some("%%%")), Command::None);
    }

    #[test]
    fn facts() {
        let f = query_facts(Some("Cmd=Ping&User=dom%5Cjo&DeviceId=D1&DeviceType=iPhone"));
        assert_eq!(f.user.as_deref(), Some("dom\\jo"));
        assert_eq!(f.device_id.as_deref(), Some("D1"));
        let f = query_facts(Some("jQkJBAhCNjRERVYwMQAEY3VybAgFdXNlcjE="));
        assert_eq!(f.command.as_deref(), Some("FolderSync"));
        assert_eq!(f.device_id.as_deref(), Some("B64DEV01"));
        assert_eq!(f.device_type.as_deref(), Some("curl"));
        assert_eq!(f.user.as_deref(), Some("user1"));
        assert_eq!(query_facts(Some("%")), QueryFacts::default());
    }

    #[test]
    fn heartbeats() {
        // <Ping><HeartbeatInterval>480</HeartbeatInterval>...
        let ping = [
            3, 1, 0x6A, 0, 0, 13, 0x45, 0x48, 3, b'4', b'8', b'0', 0, 1, 1,
        ];
        assert_eq!(long_poll(Command::Ping, &ping), LongPoll::Heartbeat(480));
        assert_eq!(long_poll(Command::Ping, &[]), LongPoll::Unknown);
        // <Sync><Collections/><Wait>5</Wait></Sync>
        let sync = [3, 1, 0x6A, 0, 0x45, 0x1C, 0x64, 3, b'5', 0, 1, 1];
        assert_eq!(long_poll(Command::Sync, &sync), LongPoll::Heartbeat(300));
        assert_eq!(long_poll(Command::Sync, &sync[..6]), LongPoll::No);
        assert_eq!(long_poll(Command::Sync, &[]), LongPoll::Unknown);
        assert_eq!(long_poll(Command::Ping, &[0xFF; 9]), LongPoll::Unknown);
        for n in 0..ping.len() {
            let _ = long_poll(Command::Ping, &ping[..n]);
        }
    }
}
