//! ActiveSync status codes the gateway answers with itself: the common status values of
//! MS-ASCMD 2.2.2 (101..=184, valid in the top-level Status of every command from 14.0 on).
//! Names are the spec's element names.

use std::fmt;

use wbxml::Tag;
use wbxml::Writer;

use crate::command::Command;
use crate::error::EasError;
use crate::version::ProtocolVersion;

/// A common status code of MS-ASCMD 2.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum CommonStatus {
    InvalidContent = 101,
    InvalidWBXML = 102,
    InvalidXML = 103,
    InvalidDateTime = 104,
    InvalidCombinationOfIDs = 105,
    InvalidIDs = 106,
    InvalidMIME = 107,
    DeviceIdMissingOrInvalid = 108,
    DeviceTypeMissingOrInvalid = 109,
    ServerError = 110,
    ServerErrorRetryLater = 111,
    ActiveDirectoryAccessDenied = 112,
    MailboxQuotaExceeded = 113,
    MailboxServerOffline = 114,
    SendQuotaExceeded = 115,
    MessageRecipientUnresolved = 116,
    MessageReplyNotAllowed = 117,
    MessagePreviouslySent = 118,
    MessageHasNoRecipient = 119,
    MailSubmissionFailed = 120,
    MessageReplyFailed = 121,
    AttachmentIsTooLarge = 122,
    UserHasNoMailbox = 123,
    UserCannotBeAnonymous = 124,
    UserPrincipalCouldNotBeFound = 125,
    UserDisabledForSync = 126,
    UserOnNewMailboxCannotSync = 127,
    UserOnLegacyMailboxCannotSync = 128,
    DeviceIsBlockedForThisUser = 129,
    AccessDenied = 130,
    AccountDisabled = 131,
    SyncStateNotFound = 132,
    SyncStateLocked = 133,
    SyncStateCorrupt = 134,
    SyncStateAlreadyExists = 135,
    SyncStateVersionInvalid = 136,
    CommandNotSupported = 137,
    VersionNotSupported = 138,
    DeviceNotFullyProvisionable = 139,
    RemoteWipeRequested = 140,
    LegacyDeviceOnStrictPolicy = 141,
    DeviceNotProvisioned = 142,
    PolicyRefresh = 143,
    InvalidPolicyKey = 144,
    ExternallyManagedDevicesNotAllowed = 145,
    NoRecurrenceInCalendar = 146,
    UnexpectedItemClass = 147,
    RemoteServerHasNoSSL = 148,
    InvalidStoredRequest = 149,
    ItemNotFound = 150,
    TooManyFolders = 151,
    NoFoldersFound = 152,
    ItemsLostAfterMove = 153,
    FailureInMoveOperation = 154,
    MoveCommandDisallowedForNonPersistentMoveAction = 155,
    MoveCommandInvalidDestinationFolder = 156,
    AvailabilityTooManyRecipients = 160,
    AvailabilityDLLimitReached = 161,
    AvailabilityTransientFailure = 162,
    AvailabilityFailure = 163,
    BodyPartPreferenceTypeNotSupported = 164,
    DeviceInformationRequired = 165,
    InvalidAccountId = 166,
    AccountSendDisabled = 167,
    IRMFeatureDisabled = 168,
    IRMTransientError = 169,
    IRMPermanentError = 170,
    IRMInvalidTemplateID = 171,
    IRMOperationNotPermitted = 172,
    NoPicture = 173,
    PictureTooLarge = 174,
    PictureLimitReached = 175,
    BodyPartConversationTooLarge = 176,
    MaximumDevicesReached = 177,
    InvalidMimeBodyCombination = 178,
    InvalidSmartForwardParameters = 179,
    InvalidRecipients = 183,
    OneOrMoreExceptionsFailed = 184,
}

impl CommonStatus {
    /// Every common status, by code.
    pub const ALL: [CommonStatus; 78] = [
        Self::InvalidContent,
        Self::InvalidWBXML,
        Self::InvalidXML,
        Self::InvalidDateTime,
        Self::InvalidCombinationOfIDs,
        Self::InvalidIDs,
        Self::InvalidMIME,
        Self::DeviceIdMissingOrInvalid,
        Self::DeviceTypeMissingOrInvalid,
        Self::ServerError,
        Self::ServerErrorRetryLater,
        Self::ActiveDirectoryAccessDenied,
        Self::MailboxQuotaExceeded,
        Self::MailboxServerOffline,
        Self::SendQuotaExceeded,
        Self::MessageRecipientUnresolved,
        Self::MessageReplyNotAllowed,
        Self::MessagePreviouslySent,
        Self::MessageHasNoRecipient,
        Self::MailSubmissionFailed,
        Self::MessageReplyFailed,
        Self::AttachmentIsTooLarge,
        Self::UserHasNoMailbox,
        Self::UserCannotBeAnonymous,
        Self::UserPrincipalCouldNotBeFound,
        Self::UserDisabledForSync,
        Self::UserOnNewMailboxCannotSync,
        Self::UserOnLegacyMailboxCannotSync,
        Self::DeviceIsBlockedForThisUser,
        Self::AccessDenied,
        Self::AccountDisabled,
        Self::SyncStateNotFound,
        Self::SyncStateLocked,
        Self::SyncStateCorrupt,
        Self::SyncStateAlreadyExists,
        Self::SyncStateVersionInvalid,
        Self::CommandNotSupported,
        Self::VersionNotSupported,
        Self::DeviceNotFullyProvisionable,
        Self::RemoteWipeRequested,
        Self::LegacyDeviceOnStrictPolicy,
        Self::DeviceNotProvisioned,
        Self::PolicyRefresh,
        Self::InvalidPolicyKey,
        Self::ExternallyManagedDevicesNotAllowed,
        Self::NoRecurrenceInCalendar,
        Self::UnexpectedItemClass,
        Self::RemoteServerHasNoSSL,
        Self::InvalidStoredRequest,
        Self::ItemNotFound,
        Self::TooManyFolders,
        Self::NoFoldersFound,
        Self::ItemsLostAfterMove,
        Self::FailureInMoveOperation,
        Self::MoveCommandDisallowedForNonPersistentMoveAction,
        Self::MoveCommandInvalidDestinationFolder,
        Self::AvailabilityTooManyRecipients,
        Self::AvailabilityDLLimitReached,
        Self::AvailabilityTransientFailure,
        Self::AvailabilityFailure,
        Self::BodyPartPreferenceTypeNotSupported,
        Self::DeviceInformationRequired,
        Self::InvalidAccountId,
        Self::AccountSendDisabled,
        Self::IRMFeatureDisabled,
        Self::IRMTransientError,
        Self::IRMPermanentError,
        Self::IRMInvalidTemplateID,
        Self::IRMOperationNotPermitted,
        Self::NoPicture,
        Self::PictureTooLarge,
        Self::PictureLimitReached,
        Self::BodyPartConversationTooLarge,
        Self::MaximumDevicesReached,
        Self::InvalidMimeBodyCombination,
        Self::InvalidSmartForwardParameters,
        Self::InvalidRecipients,
        Self::OneOrMoreExceptionsFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::InvalidContent => "InvalidContent",
            Self::InvalidWBXML => "InvalidWBXML",
            Self::InvalidXML => "InvalidXML",
            Self::InvalidDateTime => "InvalidDateTime",
            Self::InvalidCombinationOfIDs => "InvalidCombinationOfIDs",
            Self::InvalidIDs => "InvalidIDs",
            Self::InvalidMIME => "InvalidMIME",
            Self::DeviceIdMissingOrInvalid => "DeviceIdMissingOrInvalid",
            Self::DeviceTypeMissingOrInvalid => "DeviceTypeMissingOrInvalid",
            Self::ServerError => "ServerError",
            Self::ServerErrorRetryLater => "ServerErrorRetryLater",
            Self::ActiveDirectoryAccessDenied => "ActiveDirectoryAccessDenied",
            Self::MailboxQuotaExceeded => "MailboxQuotaExceeded",
            Self::MailboxServerOffline => "MailboxServerOffline",
            Self::SendQuotaExceeded => "SendQuotaExceeded",
            Self::MessageRecipientUnresolved => "MessageRecipientUnresolved",
            Self::MessageReplyNotAllowed => "MessageReplyNotAllowed",
            Self::MessagePreviouslySent => "MessagePreviouslySent",
            Self::MessageHasNoRecipient => "MessageHasNoRecipient",
            Self::MailSubmissionFailed => "MailSubmissionFailed",
            Self::MessageReplyFailed => "MessageReplyFailed",
            Self::AttachmentIsTooLarge => "AttachmentIsTooLarge",
            Self::UserHasNoMailbox => "UserHasNoMailbox",
            Self::UserCannotBeAnonymous => "UserCannotBeAnonymous",
            Self::UserPrincipalCouldNotBeFound => "UserPrincipalCouldNotBeFound",
            Self::UserDisabledForSync => "UserDisabledForSync",
            Self::UserOnNewMailboxCannotSync => "UserOnNewMailboxCannotSync",
            Self::UserOnLegacyMailboxCannotSync => "UserOnLegacyMailboxCannotSync",
            Self::DeviceIsBlockedForThisUser => "DeviceIsBlockedForThisUser",
            Self::AccessDenied => "AccessDenied",
            Self::AccountDisabled => "AccountDisabled",
            Self::SyncStateNotFound => "SyncStateNotFound",
            Self::SyncStateLocked => "SyncStateLocked",
            Self::SyncStateCorrupt => "SyncStateCorrupt",
            Self::SyncStateAlreadyExists => "SyncStateAlreadyExists",
            Self::SyncStateVersionInvalid => "SyncStateVersionInvalid",
            Self::CommandNotSupported => "CommandNotSupported",
            Self::VersionNotSupported => "VersionNotSupported",
            Self::DeviceNotFullyProvisionable => "DeviceNotFullyProvisionable",
            Self::RemoteWipeRequested => "RemoteWipeRequested",
            Self::LegacyDeviceOnStrictPolicy => "LegacyDeviceOnStrictPolicy",
            Self::DeviceNotProvisioned => "DeviceNotProvisioned",
            Self::PolicyRefresh => "PolicyRefresh",
            Self::InvalidPolicyKey => "InvalidPolicyKey",
            Self::ExternallyManagedDevicesNotAllowed => "ExternallyManagedDevicesNotAllowed",
            Self::NoRecurrenceInCalendar => "NoRecurrenceInCalendar",
            Self::UnexpectedItemClass => "UnexpectedItemClass",
            Self::RemoteServerHasNoSSL => "RemoteServerHasNoSSL",
            Self::InvalidStoredRequest => "InvalidStoredRequest",
            Self::ItemNotFound => "ItemNotFound",
            Self::TooManyFolders => "TooManyFolders",
            Self::NoFoldersFound => "NoFoldersFound",
            Self::ItemsLostAfterMove => "ItemsLostAfterMove",
            Self::FailureInMoveOperation => "FailureInMoveOperation",
            Self::MoveCommandDisallowedForNonPersistentMoveAction => {
                "MoveCommandDisallowedForNonPersistentMoveAction"
            }
            Self::MoveCommandInvalidDestinationFolder => "MoveCommandInvalidDestinationFolder",
            Self::AvailabilityTooManyRecipients => "AvailabilityTooManyRecipients",
            Self::AvailabilityDLLimitReached => "AvailabilityDLLimitReached",
            Self::AvailabilityTransientFailure => "AvailabilityTransientFailure",
            Self::AvailabilityFailure => "AvailabilityFailure",
            Self::BodyPartPreferenceTypeNotSupported => "BodyPartPreferenceTypeNotSupported",
            Self::DeviceInformationRequired => "DeviceInformationRequired",
            Self::InvalidAccountId => "InvalidAccountId",
            Self::AccountSendDisabled => "AccountSendDisabled",
            Self::IRMFeatureDisabled => "IRM_FeatureDisabled",
            Self::IRMTransientError => "IRM_TransientError",
            Self::IRMPermanentError => "IRM_PermanentError",
            Self::IRMInvalidTemplateID => "IRM_InvalidTemplateID",
            Self::IRMOperationNotPermitted => "IRM_OperationNotPermitted",
            Self::NoPicture => "NoPicture",
            Self::PictureTooLarge => "PictureTooLarge",
            Self::PictureLimitReached => "PictureLimitReached",
            Self::BodyPartConversationTooLarge => "BodyPart_ConversationTooLarge",
            Self::MaximumDevicesReached => "MaximumDevicesReached",
            Self::InvalidMimeBodyCombination => "InvalidMimeBodyCombination",
            Self::InvalidSmartForwardParameters => "InvalidSmartForwardParameters",
            Self::InvalidRecipients => "InvalidRecipients",
            Self::OneOrMoreExceptionsFailed => "OneOrMoreExceptionsFailed",
        }
    }

    /// The numeric code as sent in `<Status>`.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status with this code, if it is a common one.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Codes that make a device run Provision (MS-ASPROV 3.1.5.1): the 14.0+ replacement of
    /// HTTP 449.
    pub fn requires_provision(self) -> bool {
        matches!(
            self,
            Self::RemoteWipeRequested
                | Self::DeviceNotProvisioned
                | Self::PolicyRefresh
                | Self::InvalidPolicyKey
        )
    }
}

impl fmt::Display for CommonStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

/// Namespace and root element of the commands whose response has a top-level `Status` that
/// carries the common codes. The rest (GetAttachment and the 2.5 collection commands have no
/// WBXML response; MeetingResponse keeps Status per Result) get HTTP status codes instead.
fn status_root(command: Command) -> Option<(&'static str, &'static str)> {
    use Command::*;
    Some(match command {
        Sync => ("AirSync", "Sync"),
        FolderSync => ("FolderHierarchy", "FolderSync"),
        FolderCreate => ("FolderHierarchy", "FolderCreate"),
        FolderDelete => ("FolderHierarchy", "FolderDelete"),
        FolderUpdate => ("FolderHierarchy", "FolderUpdate"),
        GetItemEstimate => ("GetItemEstimate", "GetItemEstimate"),
        MoveItems => ("Move", "MoveItems"),
        Search => ("Search", "Search"),
        Settings => ("Settings", "Settings"),
        Ping => ("Ping", "Ping"),
        ItemOperations => ("ItemOperations", "ItemOperations"),
        Provision => ("Provision", "Provision"),
        ResolveRecipients => ("ResolveRecipients", "ResolveRecipients"),
        ValidateCert => ("ValidateCert", "ValidateCert"),
        SendMail => ("ComposeMail", "SendMail"),
        SmartForward => ("ComposeMail", "SmartForward"),
        SmartReply => ("ComposeMail", "SmartReply"),
        Find => ("Find", "Find"),
        GetAttachment | GetHierarchy | CreateCollection | DeleteCollection | MoveCollection
        | MeetingResponse => return None,
    })
}

/// Whether [`command_status_body`] can answer this command.
pub fn has_status_body(command: Command) -> bool {
    status_root(command).is_some()
}

/// `<Command xmlns="Ns:"><Status>code</Status></Command>` as EAS WBXML: the answer a server
/// gives for a global status (e.g. `<FolderSync><Status>142</Status></FolderSync>`).
pub fn command_status_body(command: Command, status: u8) -> Result<Vec<u8>, EasError> {
    let build = |reason: String| EasError::Build {
        what: "command status response",
        reason,
    };
    let (ns, root) =
        status_root(command).ok_or_else(|| build(format!("{command} has no top-level Status")))?;
    let root_tag = Tag::by_name(ns, root).ok_or_else(|| build(format!("no tag {ns}:{root}")))?;
    let status_tag =
        Tag::by_name(ns, "Status").ok_or_else(|| build(format!("no tag {ns}:Status")))?;
    let e = |err: wbxml::Error| build(err.to_string());
    let mut w = Writer::new();
    w.start(root_tag.page, root_tag.token, true).map_err(e)?;
    w.text_element(status_tag.page, status_tag.token, &status.to_string())
        .map_err(e)?;
    w.end().map_err(e)?;
    w.finish().map_err(e)
}

/// How to tell a device to provision (or that it is being wiped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionDemand {
    /// HTTP 449 "Retry after sending a PROVISION command" (12.1 and older, or a command without
    /// a WBXML status).
    Http449,
    /// HTTP 200 with this WBXML body (14.0 and later): the command's top-level Status.
    Body(Vec<u8>),
}

/// The answer that makes a device run Provision: `status` is normally
/// [`CommonStatus::DeviceNotProvisioned`] (142) or, for a device marked for wipe,
/// [`CommonStatus::RemoteWipeRequested`] (140).
pub fn provision_demand(
    version: Option<ProtocolVersion>,
    command: Option<Command>,
    status: CommonStatus,
) -> ProvisionDemand {
    match (version, command) {
        (Some(v), Some(c)) if v.uses_status_for_provisioning() => {
            match command_status_body(c, status.code()) {
                Ok(body) => ProvisionDemand::Body(body),
                Err(_) => ProvisionDemand::Http449,
            }
        }
        _ => ProvisionDemand::Http449,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wbxml::Element;

    #[test]
    fn codes_and_names() {
        assert_eq!(CommonStatus::ALL.len(), 78);
        for s in CommonStatus::ALL {
            assert_eq!(CommonStatus::from_code(s.code()), Some(s));
        }
        let named = [
            (126, "UserDisabledForSync"),
            (129, "DeviceIsBlockedForThisUser"),
            (140, "RemoteWipeRequested"),
            (141, "LegacyDeviceOnStrictPolicy"),
            (142, "DeviceNotProvisioned"),
            (143, "PolicyRefresh"),
            (144, "InvalidPolicyKey"),
            (145, "ExternallyManagedDevicesNotAllowed"),
            (177, "MaximumDevicesReached"),
            (168, "IRM_FeatureDisabled"),
        ];
        for (code, name) in named {
            assert_eq!(CommonStatus::from_code(code).unwrap().name(), name);
        }
        assert_eq!(CommonStatus::from_code(100), None);
        assert_eq!(CommonStatus::from_code(157), None);
        assert_eq!(CommonStatus::from_code(185), None);
        assert_eq!(
            CommonStatus::DeviceNotProvisioned.to_string(),
            "142 DeviceNotProvisioned"
        );
        assert!(CommonStatus::RemoteWipeRequested.requires_provision());
        assert!(!CommonStatus::DeviceIsBlockedForThisUser.requires_provision());
    }

    #[test]
    fn every_status_command_builds_and_decodes() {
        for c in Command::ALL {
            match command_status_body(c, 142) {
                Ok(body) => {
                    let tree = Element::parse(&body).unwrap();
                    assert_eq!(tree.name(), c.name(), "{c}");
                    assert_eq!(tree.find("Status").and_then(Element::text), Some("142"));
                    assert!(has_status_body(c));
                }
                Err(e) => {
                    assert!(!has_status_body(c), "{c}: {e}");
                    assert!(matches!(e, EasError::Build { .. }));
                }
            }
        }
        assert!(!has_status_body(Command::GetAttachment));
    }

    #[test]
    fn provision_demand_by_version() {
        use ProtocolVersion::*;
        assert_eq!(
            provision_demand(
                Some(V12_1),
                Some(Command::Sync),
                CommonStatus::DeviceNotProvisioned
            ),
            ProvisionDemand::Http449
        );
        assert_eq!(
            provision_demand(
                None,
                Some(Command::Sync),
                CommonStatus::DeviceNotProvisioned
            ),
            ProvisionDemand::Http449
        );
        assert_eq!(
            provision_demand(
                Some(V14_1),
                Some(Command::GetAttachment),
                CommonStatus::RemoteWipeRequested
            ),
            ProvisionDemand::Http449
        );
        let ProvisionDemand::Body(body) = provision_demand(
            Some(V14_0),
            Some(Command::FolderSync),
            CommonStatus::RemoteWipeRequested,
        ) else {
            panic!("expected a body");
        };
        let tree = Element::parse(&body).unwrap();
        assert!(tree.is("FolderHierarchy", "FolderSync"));
        assert_eq!(tree.find("Status").and_then(Element::text), Some("140"));
    }
}
