//! ActiveSync commands: names of the plain query's `Cmd` and codes of the base64 query
//! (MS-ASHTTP 2.2.1.1.1.1.2). Unknown names and codes are kept raw in [`CommandRef`] so the
//! gateway, not this crate, decides whether to pass them.

use std::borrow::Cow;
use std::fmt;

use crate::error::{EasError, clip};
use crate::version::ProtocolVersion;

/// Every command of MS-ASHTTP / MS-ASCMD, in base64 code order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    Sync,
    SendMail,
    SmartForward,
    SmartReply,
    GetAttachment,
    GetHierarchy,
    CreateCollection,
    DeleteCollection,
    MoveCollection,
    FolderSync,
    FolderCreate,
    FolderDelete,
    FolderUpdate,
    MoveItems,
    GetItemEstimate,
    MeetingResponse,
    Search,
    Settings,
    Ping,
    ItemOperations,
    Provision,
    ResolveRecipients,
    ValidateCert,
    Find,
}

impl Command {
    /// Every command, in code order (index == code).
    pub const ALL: [Command; 24] = [
        Self::Sync,
        Self::SendMail,
        Self::SmartForward,
        Self::SmartReply,
        Self::GetAttachment,
        Self::GetHierarchy,
        Self::CreateCollection,
        Self::DeleteCollection,
        Self::MoveCollection,
        Self::FolderSync,
        Self::FolderCreate,
        Self::FolderDelete,
        Self::FolderUpdate,
        Self::MoveItems,
        Self::GetItemEstimate,
        Self::MeetingResponse,
        Self::Search,
        Self::Settings,
        Self::Ping,
        Self::ItemOperations,
        Self::Provision,
        Self::ResolveRecipients,
        Self::ValidateCert,
        Self::Find,
    ];

    /// The base64 query's command code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Command from a base64 command code.
    pub fn from_code(code: u8) -> Result<Self, EasError> {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .ok_or(EasError::UnknownCommandCode { code })
    }

    /// The `Cmd=` spelling.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Sync => "Sync",
            Self::SendMail => "SendMail",
            Self::SmartForward => "SmartForward",
            Self::SmartReply => "SmartReply",
            Self::GetAttachment => "GetAttachment",
            Self::GetHierarchy => "GetHierarchy",
            Self::CreateCollection => "CreateCollection",
            Self::DeleteCollection => "DeleteCollection",
            Self::MoveCollection => "MoveCollection",
            Self::FolderSync => "FolderSync",
            Self::FolderCreate => "FolderCreate",
            Self::FolderDelete => "FolderDelete",
            Self::FolderUpdate => "FolderUpdate",
            Self::MoveItems => "MoveItems",
            Self::GetItemEstimate => "GetItemEstimate",
            Self::MeetingResponse => "MeetingResponse",
            Self::Search => "Search",
            Self::Settings => "Settings",
            Self::Ping => "Ping",
            Self::ItemOperations => "ItemOperations",
            Self::Provision => "Provision",
            Self::ResolveRecipients => "ResolveRecipients",
            Self::ValidateCert => "ValidateCert",
            Self::Find => "Find",
        }
    }

    /// Command from a `Cmd=` value. ASCII case is ignored, as Exchange and Z-Push do.
    pub fn from_name(name: &str) -> Result<Self, EasError> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| EasError::UnknownCommand { name: clip(name) })
    }

    /// Commands the server may hold open for minutes (the gateway's timeouts depend on it).
    pub fn is_long_poll(self) -> bool {
        matches!(self, Self::Ping | Self::Sync)
    }

    /// Oldest protocol version that has this command: Find is 16.1 only; everything else is
    /// listed by servers for every version they announce.
    pub fn since(self) -> ProtocolVersion {
        match self {
            Self::Find => ProtocolVersion::V16_1,
            _ => ProtocolVersion::V2_5,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Command {
    type Err = EasError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s)
    }
}

/// The command of a request as sent: known, or unknown with the raw name / code kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CommandRef {
    Known(Command),
    /// A plain query `Cmd=` value that is no ActiveSync command.
    UnknownName(String),
    /// A base64 command code that is no ActiveSync command.
    UnknownCode(u8),
}

impl CommandRef {
    /// Classify a `Cmd=` value.
    pub fn from_name(name: &str) -> Self {
        match Command::from_name(name) {
            Ok(c) => Self::Known(c),
            Err(_) => Self::UnknownName(name.to_owned()),
        }
    }

    /// Classify a base64 command code.
    pub fn from_code(code: u8) -> Self {
        match Command::from_code(code) {
            Ok(c) => Self::Known(c),
            Err(_) => Self::UnknownCode(code),
        }
    }

    /// The known command, or the typed error naming the unknown one.
    pub fn known(&self) -> Result<Command, EasError> {
        match self {
            Self::Known(c) => Ok(*c),
            Self::UnknownName(n) => Err(EasError::UnknownCommand { name: clip(n) }),
            Self::UnknownCode(code) => Err(EasError::UnknownCommandCode { code: *code }),
        }
    }

    /// A printable name for logs: the command's name, the raw name, or `0x..` for a raw code.
    pub fn raw_name(&self) -> Cow<'_, str> {
        match self {
            Self::Known(c) => Cow::Borrowed(c.name()),
            Self::UnknownName(n) => Cow::Borrowed(n),
            Self::UnknownCode(code) => Cow::Owned(format!("0x{code:02x}")),
        }
    }
}

impl From<Command> for CommandRef {
    fn from(c: Command) -> Self {
        Self::Known(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_ms_ashttp_table() {
        let table: [(u8, &str); 24] = [
            (0, "Sync"),
            (1, "SendMail"),
            (2, "SmartForward"),
            (3, "SmartReply"),
            (4, "GetAttachment"),
            (5, "GetHierarchy"),
            (6, "CreateCollection"),
            (7, "DeleteCollection"),
            (8, "MoveCollection"),
            (9, "FolderSync"),
            (10, "FolderCreate"),
            (11, "FolderDelete"),
            (12, "FolderUpdate"),
            (13, "MoveItems"),
            (14, "GetItemEstimate"),
            (15, "MeetingResponse"),
            (16, "Search"),
            (17, "Settings"),
            (18, "Ping"),
            (19, "ItemOperations"),
            (20, "Provision"),
            (21, "ResolveRecipients"),
            (22, "ValidateCert"),
            (23, "Find"),
        ];
        for (code, name) in table {
            let c = Command::from_code(code).unwrap();
            assert_eq!(c.name(), name);
            assert_eq!(c.code(), code);
            assert_eq!(Command::from_name(name), Ok(c));
            assert_eq!(c.to_string(), name);
        }
    }

    #[test]
    fn unknown_code_and_name_are_typed_errors() {
        assert_eq!(
            Command::from_code(24),
            Err(EasError::UnknownCommandCode { code: 24 })
        );
        assert_eq!(
            Command::from_code(0xff),
            Err(EasError::UnknownCommandCode { code: 0xff })
        );
        assert_eq!(
            Command::from_name("Autodiscover"),
            Err(EasError::UnknownCommand {
                name: "Autodiscover".into()
            })
        );
        assert!(Command::from_name("").is_err());
    }

    #[test]
    fn names_ignore_ascii_case() {
        assert_eq!(Command::from_name("sync"), Ok(Command::Sync));
        assert_eq!(Command::from_name("FOLDERSYNC"), Ok(Command::FolderSync));
        assert!(Command::from_name("Sync ").is_err());
    }

    #[test]
    fn command_ref_keeps_raw_values() {
        let r = CommandRef::from_name("Frobnicate");
        assert_eq!(r, CommandRef::UnknownName("Frobnicate".into()));
        assert_eq!(r.raw_name(), "Frobnicate");
        assert!(matches!(r.known(), Err(EasError::UnknownCommand { .. })));
        let r = CommandRef::from_code(0x30);
        assert_eq!(r.raw_name(), "0x30");
        assert_eq!(r.known(), Err(EasError::UnknownCommandCode { code: 0x30 }));
        let r = CommandRef::from_code(18);
        assert_eq!(r.known(), Ok(Command::Ping));
        assert_eq!(r.raw_name(), "Ping");
        assert!(Command::Ping.is_long_poll() && Command::Sync.is_long_poll());
        assert!(!Command::FolderSync.is_long_poll());
        assert_eq!(Command::Find.since(), ProtocolVersion::V16_1);
    }
}
