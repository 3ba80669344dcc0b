//! The EAS code pages 0..=25 (MS-ASWBXML 16.1): every tag by page, token and name.
//!
//! The Rust API uses the spec's tag names (`name`); the XML bridge uses libwbxml2's
//! (`xml_name`), which differ for a handful of tags (see the table at the end of this
//! comment). Lookups by page and token are O(1): [`PAGES`] is indexed by page number and
//! [`tag_def`] reads a 26 x 64 index built at compile time.
//!
//! Sources: MS-ASWBXML 2.1.2.1.x (tag names and tokens), Microsoft's own MS-ASWBXML
//! implementation in the Exchange ActiveSync interop test suites (16.1 names), and the
//! tables of libwbxml2 0.11.8 (`wbxml2xml -l ACTIVESYNC`, checked token by token by
//! `tests/tables_vs_libwbxml.rs`).
//!
//! Besides the 16.1 tags the table keeps the legacy tokens that older clients
//! (2.5 .. 14.x) still send and that libwbxml2 knows, so that a gateway can decode every
//! body it may see: e.g. AirSync `Version`/`Truncation`/`RTFTruncation`/`NotifyGUID`,
//! the 2.5 Email attachment/body tags, the AirNotify page (3) and the 12.x Calendar
//! attachment tags (0x2B..=0x32, not in libwbxml2).
//!
//! Where libwbxml2 0.11.8 names differ from the spec (`name` -> `xml_name`):
//!
//! | page | spec name | libwbxml2 name |
//! | --- | --- | --- |
//! | 1 Contacts | AssistantPhoneNumber | AssistantTelephoneNumber |
//! | 1 Contacts | {Business,Home,Other}Address{City,Country,PostalCode,State,Street} | {Business,Home,Other}{City,...} |
//! | 2 Email | Att0Id | AttOId |
//! | 2 Email | ReplyTo | Reply-To |
//! | 2 Email | DtStamp | DTStamp |
//! | 2 Email | Type, Until, Occurrences, Interval, DayOfWeek, DayOfMonth, WeekOfMonth, MonthOfYear | Recurrence_* |
//! | 2 Email | Status (flag status) | FlagStatus |
//! | 4 Calendar | Timezone | TimeZone |
//! | 4 Calendar | Email, Name, AttendeeStatus, AttendeeType | Attendee_Email, Attendee_Name, Attendee_Status, Attendee_Type |
//! | 4 Calendar | CompressedRTF | Compressed_RTF |
//! | 4 Calendar | DtStamp | DTStamp |
//! | 4 Calendar | Deleted, ExceptionStartTime | Exception_Deleted, Exception_StartTime |
//! | 4 Calendar | OrganizerEmail, OrganizerName | Organizer_Email, Organizer_Name |
//! | 4 Calendar | Type .. MonthOfYear (recurrence) | Recurrence_* |
//! | 9 Tasks | UtcDueDate, UtcStartDate | UTCDueDate, UTCStartDate |
//! | 9 Tasks | Type, Start, Until, Occurrences, Interval, DayOfMonth, DayOfWeek, WeekOfMonth, MonthOfYear, Regenerate, DeadOccur | Recurrence_* |
//! | 11 ValidateCert | CheckCrl | CheckCRL |
//! | 14 Provision | RequireStorageCardEncryption | DeviceEncryptionEnabled |
//! | 16 GAL | (namespace `GAL`) | (namespace `Gal`) |
//! | 18 Settings | SMTPAddress | SmtpAddress |
//! | 18 Settings | RightsManagementInformation | ihsManagementInformation |
//! | 21 ComposeMail | Mime | MIME |
//! | 24 RightsManagement | Owner | RMOwner |
//! | 24 RightsManagement | RemoveRightsManagementProtection | RemoveRightsManagementDistribution |
//!
//! `opaque` tags (libwbxml2's `WBXML_TAG_OPTION_BINARY`: OPAQUE in WBXML, base64 in its XML,
//! checked against `xml2wbxml`/`wbxml2xml`): ResolveRecipients `Data`, Search
//! `ConversationId`, GAL `Data`, AirSyncBase `Content`, ItemOperations `ConversationId`,
//! ComposeMail `Mime`, Email2 `ConversationId` and `ConversationIndex`.
//!
//! Tags libwbxml2 0.11.8 does not know (their `xml_name` is the spec name): Calendar
//! 0x2B..=0x32, Provision `AccountOnlyRemoteWipe` (0x3B) and the whole Find page (25).

/// One tag of a code page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagDef {
    /// Token without the content bit (0x05..=0x3F).
    pub token: u8,
    /// Name in MS-ASWBXML.
    pub name: &'static str,
    /// Name libwbxml2 prints (same as `name` for almost every tag).
    pub xml_name: &'static str,
    /// libwbxml2 encodes this tag's content as OPAQUE and prints it as base64.
    pub opaque: bool,
}

/// One code page.
#[derive(Debug, Clone, Copy)]
pub struct CodePage {
    pub number: u8,
    /// Namespace without the trailing colon, e.g. `AirSync`, `AirSyncBase`.
    pub namespace: &'static str,
    pub tags: &'static [TagDef],
}

/// Number of EAS code pages (0..=25).
pub const PAGE_COUNT: usize = 26;

/// Same name in the spec and in libwbxml2, inline string content.
const fn t(token: u8, name: &'static str) -> TagDef {
    TagDef {
        token,
        name,
        xml_name: name,
        opaque: false,
    }
}

/// Spec name `name`, libwbxml2 name `xml_name`.
const fn x(token: u8, name: &'static str, xml_name: &'static str) -> TagDef {
    TagDef {
        token,
        name,
        xml_name,
        opaque: false,
    }
}

/// Content is OPAQUE in libwbxml2 (base64 in its XML).
const fn o(token: u8, name: &'static str) -> TagDef {
    TagDef {
        token,
        name,
        xml_name: name,
        opaque: true,
    }
}

const AIRSYNC: &[TagDef] = &[
    t(0x05, "Sync"),
    t(0x06, "Responses"),
    t(0x07, "Add"),
    t(0x08, "Change"),
    t(0x09, "Delete"),
    t(0x0A, "Fetch"),
    t(0x0B, "SyncKey"),
    t(0x0C, "ClientId"),
    t(0x0D, "ServerId"),
    t(0x0E, "Status"),
    t(0x0F, "Collection"),
    t(0x10, "Class"),
    t(0x11, "Version"), // legacy (not in 16.1)
    t(0x12, "CollectionId"),
    t(0x13, "GetChanges"),
    t(0x14, "MoreAvailable"),
    t(0x15, "WindowSize"),
    t(0x16, "Commands"),
    t(0x17, "Options"),
    t(0x18, "FilterType"),
    t(0x19, "Truncation"),    // 2.5
    t(0x1A, "RTFTruncation"), // 2.5
    t(0x1B, "Conflict"),
    t(0x1C, "Collections"),
    t(0x1D, "ApplicationData"),
    t(0x1E, "DeletesAsMoves"),
    t(0x1F, "NotifyGUID"), // legacy (not in 16.1)
    t(0x20, "Supported"),
    t(0x21, "SoftDelete"),
    t(0x22, "MIMESupport"),
    t(0x23, "MIMETruncation"),
    t(0x24, "Wait"),
    t(0x25, "Limit"),
    t(0x26, "Partial"),
    t(0x27, "ConversationMode"),
    t(0x28, "MaxItems"),
    t(0x29, "HeartbeatInterval"),
];

const CONTACTS: &[TagDef] = &[
    t(0x05, "Anniversary"),
    t(0x06, "AssistantName"),
    x(0x07, "AssistantPhoneNumber", "AssistantTelephoneNumber"),
    t(0x08, "Birthday"),
    t(0x09, "Body"),          // 2.5
    t(0x0A, "BodySize"),      // 2.5
    t(0x0B, "BodyTruncated"), // 2.5
    t(0x0C, "Business2PhoneNumber"),
    x(0x0D, "BusinessAddressCity", "BusinessCity"),
    x(0x0E, "BusinessAddressCountry", "BusinessCountry"),
    x(0x0F, "BusinessAddressPostalCode", "BusinessPostalCode"),
    x(0x10, "BusinessAddressState", "BusinessState"),
    x(0x11, "BusinessAddressStreet", "BusinessStreet"),
    t(0x12, "BusinessFaxNumber"),
    t(0x13, "BusinessPhoneNumber"),
    t(0x14, "CarPhoneNumber"),
    t(0x15, "Categories"),
    t(0x16, "Category"),
    t(0x17, "Children"),
    t(0x18, "Child"),
    t(0x19, "CompanyName"),
    t(0x1A, "Department"),
    t(0x1B, "Email1Address"),
    t(0x1C, "Email2Address"),
    t(0x1D, "Email3Address"),
    t(0x1E, "FileAs"),
    t(0x1F, "FirstName"),
    t(0x20, "Home2PhoneNumber"),
    x(0x21, "HomeAddressCity", "HomeCity"),
    x(0x22, "HomeAddressCountry", "HomeCountry"),
    x(0x23, "HomeAddressPostalCode", "HomePostalCode"),
    x(0x24, "HomeAddressState", "HomeState"),
    x(0x25, "HomeAddressStreet", "HomeStreet"),
    t(0x26, "HomeFaxNumber"),
    t(0x27, "HomePhoneNumber"),
    t(0x28, "JobTitle"),
    t(0x29, "LastName"),
    t(0x2A, "MiddleName"),
    t(0x2B, "MobilePhoneNumber"),
    t(0x2C, "OfficeLocation"),
    x(0x2D, "OtherAddressCity", "OtherCity"),
    x(0x2E, "OtherAddressCountry", "OtherCountry"),
    x(0x2F, "OtherAddressPostalCode", "OtherPostalCode"),
    x(0x30, "OtherAddressState", "OtherState"),
    x(0x31, "OtherAddressStreet", "OtherStreet"),
    t(0x32, "PagerNumber"),
    t(0x33, "RadioPhoneNumber"),
    t(0x34, "Spouse"),
    t(0x35, "Suffix"),
    t(0x36, "Title"),
    t(0x37, "WebPage"),
    t(0x38, "YomiCompanyName"),
    t(0x39, "YomiFirstName"),
    t(0x3A, "YomiLastName"),
    t(0x3B, "CompressedRTF"), // 2.5
    t(0x3C, "Picture"),
    t(0x3D, "Alias"),
    t(0x3E, "WeightedRank"),
];

const EMAIL: &[TagDef] = &[
    t(0x05, "Attachment"),       // 2.5
    t(0x06, "Attachments"),      // 2.5
    t(0x07, "AttName"),          // 2.5
    t(0x08, "AttSize"),          // 2.5
    x(0x09, "Att0Id", "AttOId"), // 2.5
    t(0x0A, "AttMethod"),        // 2.5
    t(0x0B, "AttRemoved"),       // 2.5
    t(0x0C, "Body"),             // 2.5
    t(0x0D, "BodySize"),         // 2.5
    t(0x0E, "BodyTruncated"),    // 2.5
    t(0x0F, "DateReceived"),
    t(0x10, "DisplayName"), // 2.5
    t(0x11, "DisplayTo"),
    t(0x12, "Importance"),
    t(0x13, "MessageClass"),
    t(0x14, "Subject"),
    t(0x15, "Read"),
    t(0x16, "To"),
    t(0x17, "Cc"),
    t(0x18, "From"),
    x(0x19, "ReplyTo", "Reply-To"),
    t(0x1A, "AllDayEvent"),
    t(0x1B, "Categories"),
    t(0x1C, "Category"),
    x(0x1D, "DtStamp", "DTStamp"),
    t(0x1E, "EndTime"),
    t(0x1F, "InstanceType"),
    t(0x20, "BusyStatus"),
    t(0x21, "Location"),
    t(0x22, "MeetingRequest"),
    t(0x23, "Organizer"),
    t(0x24, "RecurrenceId"),
    t(0x25, "Reminder"),
    t(0x26, "ResponseRequested"),
    t(0x27, "Recurrences"),
    t(0x28, "Recurrence"),
    x(0x29, "Type", "Recurrence_Type"),
    x(0x2A, "Until", "Recurrence_Until"),
    x(0x2B, "Occurrences", "Recurrence_Occurrences"),
    x(0x2C, "Interval", "Recurrence_Interval"),
    x(0x2D, "DayOfWeek", "Recurrence_DayOfWeek"),
    x(0x2E, "DayOfMonth", "Recurrence_DayOfMonth"),
    x(0x2F, "WeekOfMonth", "Recurrence_WeekOfMonth"),
    x(0x30, "MonthOfYear", "Recurrence_MonthOfYear"),
    t(0x31, "StartTime"),
    t(0x32, "Sensitivity"),
    t(0x33, "TimeZone"),
    t(0x34, "GlobalObjId"),
    t(0x35, "ThreadTopic"),
    t(0x36, "MIMEData"),      // 2.5
    t(0x37, "MIMETruncated"), // 2.5
    t(0x38, "MIMESize"),      // 2.5
    t(0x39, "InternetCPID"),
    t(0x3A, "Flag"),
    x(0x3B, "Status", "FlagStatus"),
    t(0x3C, "ContentClass"),
    t(0x3D, "FlagType"),
    t(0x3E, "CompleteTime"),
    t(0x3F, "DisallowNewTimeProposal"),
];

/// Page 3 is no longer used by EAS; the tokens are libwbxml2's (and Z-Push's).
const AIRNOTIFY: &[TagDef] = &[
    t(0x05, "Notify"),
    t(0x06, "Notification"),
    t(0x07, "Version"),
    t(0x08, "LifeTime"),
    t(0x09, "DeviceInfo"),
    t(0x0A, "Enable"),
    t(0x0B, "Folder"),
    t(0x0C, "ServerId"),
    t(0x0D, "DeviceAddress"),
    t(0x0E, "ValidCarrierProfiles"),
    t(0x0F, "CarrierProfile"),
    t(0x10, "Status"),
    t(0x11, "Responses"),
    t(0x12, "Devices"),
    t(0x13, "Device"),
    t(0x14, "Id"),
    t(0x15, "Expiry"),
    t(0x16, "NotifyGUID"),
    t(0x17, "DeviceFriendlyName"),
];

const CALENDAR: &[TagDef] = &[
    x(0x05, "Timezone", "TimeZone"),
    t(0x06, "AllDayEvent"),
    t(0x07, "Attendees"),
    t(0x08, "Attendee"),
    x(0x09, "Email", "Attendee_Email"),
    x(0x0A, "Name", "Attendee_Name"),
    t(0x0B, "Body"),          // 2.5
    t(0x0C, "BodyTruncated"), // 2.5
    t(0x0D, "BusyStatus"),
    t(0x0E, "Categories"),
    t(0x0F, "Category"),
    x(0x10, "CompressedRTF", "Compressed_RTF"), // 2.5
    x(0x11, "DtStamp", "DTStamp"),
    t(0x12, "EndTime"),
    t(0x13, "Exception"),
    t(0x14, "Exceptions"),
    x(0x15, "Deleted", "Exception_Deleted"),
    x(0x16, "ExceptionStartTime", "Exception_StartTime"),
    t(0x17, "Location"),
    t(0x18, "MeetingStatus"),
    x(0x19, "OrganizerEmail", "Organizer_Email"),
    x(0x1A, "OrganizerName", "Organizer_Name"),
    t(0x1B, "Recurrence"),
    x(0x1C, "Type", "Recurrence_Type"),
    x(0x1D, "Until", "Recurrence_Until"),
    x(0x1E, "Occurrences", "Recurrence_Occurrences"),
    x(0x1F, "Interval", "Recurrence_Interval"),
    x(0x20, "DayOfWeek", "Recurrence_DayOfWeek"),
    x(0x21, "DayOfMonth", "Recurrence_DayOfMonth"),
    x(0x22, "WeekOfMonth", "Recurrence_WeekOfMonth"),
    x(0x23, "MonthOfYear", "Recurrence_MonthOfYear"),
    t(0x24, "Reminder"),
    t(0x25, "Sensitivity"),
    t(0x26, "Subject"),
    t(0x27, "StartTime"),
    t(0x28, "UID"),
    x(0x29, "AttendeeStatus", "Attendee_Status"),
    x(0x2A, "AttendeeType", "Attendee_Type"),
    // 12.x attachment tags (later moved to AirSyncBase); not in libwbxml2 0.11.8.
    t(0x2B, "Attachment"),
    t(0x2C, "Attachments"),
    t(0x2D, "AttName"),
    t(0x2E, "AttSize"),
    t(0x2F, "Att0Id"),
    t(0x30, "AttMethod"),
    t(0x31, "AttRemoved"),
    t(0x32, "DisplayName"),
    t(0x33, "DisallowNewTimeProposal"),
    t(0x34, "ResponseRequested"),
    t(0x35, "AppointmentReplyTime"),
    t(0x36, "ResponseType"),
    t(0x37, "CalendarType"),
    t(0x38, "IsLeapMonth"),
    t(0x39, "FirstDayOfWeek"),
    t(0x3A, "OnlineMeetingConfLink"),
    t(0x3B, "OnlineMeetingExternalLink"),
    t(0x3C, "ClientUid"),
];

const MOVE: &[TagDef] = &[
    t(0x05, "MoveItems"),
    t(0x06, "Move"),
    t(0x07, "SrcMsgId"),
    t(0x08, "SrcFldId"),
    t(0x09, "DstFldId"),
    t(0x0A, "Response"),
    t(0x0B, "Status"),
    t(0x0C, "DstMsgId"),
];

const GETITEMESTIMATE: &[TagDef] = &[
    t(0x05, "GetItemEstimate"),
    t(0x06, "Version"), // 12.1 only
    t(0x07, "Collections"),
    t(0x08, "Collection"),
    t(0x09, "Class"),
    t(0x0A, "CollectionId"),
    t(0x0B, "DateTime"), // 12.1 only
    t(0x0C, "Estimate"),
    t(0x0D, "Response"),
    t(0x0E, "Status"),
];

const FOLDERHIERARCHY: &[TagDef] = &[
    t(0x05, "Folders"),
    t(0x06, "Folder"),
    t(0x07, "DisplayName"),
    t(0x08, "ServerId"),
    t(0x09, "ParentId"),
    t(0x0A, "Type"),
    t(0x0B, "Response"), // legacy
    t(0x0C, "Status"),
    t(0x0D, "ContentClass"), // legacy
    t(0x0E, "Changes"),
    t(0x0F, "Add"),
    t(0x10, "Delete"),
    t(0x11, "Update"),
    t(0x12, "SyncKey"),
    t(0x13, "FolderCreate"),
    t(0x14, "FolderDelete"),
    t(0x15, "FolderUpdate"),
    t(0x16, "FolderSync"),
    t(0x17, "Count"),
    t(0x18, "Version"), // legacy
];

const MEETINGRESPONSE: &[TagDef] = &[
    t(0x05, "CalendarId"),
    t(0x06, "CollectionId"),
    t(0x07, "MeetingResponse"),
    t(0x08, "RequestId"),
    t(0x09, "Request"),
    t(0x0A, "Result"),
    t(0x0B, "Status"),
    t(0x0C, "UserResponse"),
    t(0x0D, "Version"), // legacy
    t(0x0E, "InstanceId"),
    t(0x12, "SendResponse"),
];

const TASKS: &[TagDef] = &[
    t(0x05, "Body"),          // 2.5
    t(0x06, "BodySize"),      // 2.5
    t(0x07, "BodyTruncated"), // 2.5
    t(0x08, "Categories"),
    t(0x09, "Category"),
    t(0x0A, "Complete"),
    t(0x0B, "DateCompleted"),
    t(0x0C, "DueDate"),
    x(0x0D, "UtcDueDate", "UTCDueDate"),
    t(0x0E, "Importance"),
    t(0x0F, "Recurrence"),
    x(0x10, "Type", "Recurrence_Type"),
    x(0x11, "Start", "Recurrence_Start"),
    x(0x12, "Until", "Recurrence_Until"),
    x(0x13, "Occurrences", "Recurrence_Occurrences"),
    x(0x14, "Interval", "Recurrence_Interval"),
    x(0x15, "DayOfMonth", "Recurrence_DayOfMonth"),
    x(0x16, "DayOfWeek", "Recurrence_DayOfWeek"),
    x(0x17, "WeekOfMonth", "Recurrence_WeekOfMonth"),
    x(0x18, "MonthOfYear", "Recurrence_MonthOfYear"),
    x(0x19, "Regenerate", "Recurrence_Regenerate"),
    x(0x1A, "DeadOccur", "Recurrence_DeadOccur"),
    t(0x1B, "ReminderSet"),
    t(0x1C, "ReminderTime"),
    t(0x1D, "Sensitivity"),
    t(0x1E, "StartDate"),
    x(0x1F, "UtcStartDate", "UTCStartDate"),
    t(0x20, "Subject"),
    t(0x21, "CompressedRTF"), // 2.5
    t(0x22, "OrdinalDate"),
    t(0x23, "SubOrdinalDate"),
    t(0x24, "CalendarType"),
    t(0x25, "IsLeapMonth"),
    t(0x26, "FirstDayOfWeek"),
];

const RESOLVERECIPIENTS: &[TagDef] = &[
    t(0x05, "ResolveRecipients"),
    t(0x06, "Response"),
    t(0x07, "Status"),
    t(0x08, "Type"),
    t(0x09, "Recipient"),
    t(0x0A, "DisplayName"),
    t(0x0B, "EmailAddress"),
    t(0x0C, "Certificates"),
    t(0x0D, "Certificate"),
    t(0x0E, "MiniCertificate"),
    t(0x0F, "Options"),
    t(0x10, "To"),
    t(0x11, "CertificateRetrieval"),
    t(0x12, "RecipientCount"),
    t(0x13, "MaxCertificates"),
    t(0x14, "MaxAmbiguousRecipients"),
    t(0x15, "CertificateCount"),
    t(0x16, "Availability"),
    t(0x17, "StartTime"),
    t(0x18, "EndTime"),
    t(0x19, "MergedFreeBusy"),
    t(0x1A, "Picture"),
    t(0x1B, "MaxSize"),
    o(0x1C, "Data"),
    t(0x1D, "MaxPictures"),
];

const VALIDATECERT: &[TagDef] = &[
    t(0x05, "ValidateCert"),
    t(0x06, "Certificates"),
    t(0x07, "Certificate"),
    t(0x08, "CertificateChain"),
    x(0x09, "CheckCrl", "CheckCRL"),
    t(0x0A, "Status"),
];

const CONTACTS2: &[TagDef] = &[
    t(0x05, "CustomerId"),
    t(0x06, "GovernmentId"),
    t(0x07, "IMAddress"),
    t(0x08, "IMAddress2"),
    t(0x09, "IMAddress3"),
    t(0x0A, "ManagerName"),
    t(0x0B, "CompanyMainPhone"),
    t(0x0C, "AccountName"),
    t(0x0D, "NickName"),
    t(0x0E, "MMS"),
];

const PING: &[TagDef] = &[
    t(0x05, "Ping"),
    t(0x06, "AutdState"), // not used by the protocol
    t(0x07, "Status"),
    t(0x08, "HeartbeatInterval"),
    t(0x09, "Folders"),
    t(0x0A, "Folder"),
    t(0x0B, "Id"),
    t(0x0C, "Class"),
    t(0x0D, "MaxFolders"),
];

const PROVISION: &[TagDef] = &[
    t(0x05, "Provision"),
    t(0x06, "Policies"),
    t(0x07, "Policy"),
    t(0x08, "PolicyType"),
    t(0x09, "PolicyKey"),
    t(0x0A, "Data"),
    t(0x0B, "Status"),
    t(0x0C, "RemoteWipe"),
    t(0x0D, "EASProvisionDoc"),
    t(0x0E, "DevicePasswordEnabled"),
    t(0x0F, "AlphanumericDevicePasswordRequired"),
    x(
        0x10,
        "RequireStorageCardEncryption",
        "DeviceEncryptionEnabled",
    ),
    t(0x11, "PasswordRecoveryEnabled"),
    t(0x12, "DocumentBrowseEnabled"), // legacy
    t(0x13, "AttachmentsEnabled"),
    t(0x14, "MinDevicePasswordLength"),
    t(0x15, "MaxInactivityTimeDeviceLock"),
    t(0x16, "MaxDevicePasswordFailedAttempts"),
    t(0x17, "MaxAttachmentSize"),
    t(0x18, "AllowSimpleDevicePassword"),
    t(0x19, "DevicePasswordExpiration"),
    t(0x1A, "DevicePasswordHistory"),
    t(0x1B, "AllowStorageCard"),
    t(0x1C, "AllowCamera"),
    t(0x1D, "RequireDeviceEncryption"),
    t(0x1E, "AllowUnsignedApplications"),
    t(0x1F, "AllowUnsignedInstallationPackages"),
    t(0x20, "MinDevicePasswordComplexCharacters"),
    t(0x21, "AllowWiFi"),
    t(0x22, "AllowTextMessaging"),
    t(0x23, "AllowPOPIMAPEmail"),
    t(0x24, "AllowBluetooth"),
    t(0x25, "AllowIrDA"),
    t(0x26, "RequireManualSyncWhenRoaming"),
    t(0x27, "AllowDesktopSync"),
    t(0x28, "MaxCalendarAgeFilter"),
    t(0x29, "AllowHTMLEmail"),
    t(0x2A, "MaxEmailAgeFilter"),
    t(0x2B, "MaxEmailBodyTruncationSize"),
    t(0x2C, "MaxEmailHTMLBodyTruncationSize"),
    t(0x2D, "RequireSignedSMIMEMessages"),
    t(0x2E, "RequireEncryptedSMIMEMessages"),
    t(0x2F, "RequireSignedSMIMEAlgorithm"),
    t(0x30, "RequireEncryptionSMIMEAlgorithm"),
    t(0x31, "AllowSMIMEEncryptionAlgorithmNegotiation"),
    t(0x32, "AllowSMIMESoftCerts"),
    t(0x33, "AllowBrowser"),
    t(0x34, "AllowConsumerEmail"),
    t(0x35, "AllowRemoteDesktop"),
    t(0x36, "AllowInternetSharing"),
    t(0x37, "UnapprovedInROMApplicationList"),
    t(0x38, "ApplicationName"),
    t(0x39, "ApprovedApplicationList"),
    t(0x3A, "Hash"),
    t(0x3B, "AccountOnlyRemoteWipe"), // 16.1; not in libwbxml2 0.11.8
];

const SEARCH: &[TagDef] = &[
    t(0x05, "Search"),
    t(0x07, "Store"),
    t(0x08, "Name"),
    t(0x09, "Query"),
    t(0x0A, "Options"),
    t(0x0B, "Range"),
    t(0x0C, "Status"),
    t(0x0D, "Response"),
    t(0x0E, "Result"),
    t(0x0F, "Properties"),
    t(0x10, "Total"),
    t(0x11, "EqualTo"),
    t(0x12, "Value"),
    t(0x13, "And"),
    t(0x14, "Or"),
    t(0x15, "FreeText"),
    t(0x17, "DeepTraversal"),
    t(0x18, "LongId"),
    t(0x19, "RebuildResults"),
    t(0x1A, "LessThan"),
    t(0x1B, "GreaterThan"),
    t(0x1C, "Schema"),    // legacy
    t(0x1D, "Supported"), // legacy
    t(0x1E, "UserName"),
    t(0x1F, "Password"),
    o(0x20, "ConversationId"),
    t(0x21, "Picture"),
    t(0x22, "MaxSize"),
    t(0x23, "MaxPictures"),
];

const GAL: &[TagDef] = &[
    t(0x05, "DisplayName"),
    t(0x06, "Phone"),
    t(0x07, "Office"),
    t(0x08, "Title"),
    t(0x09, "Company"),
    t(0x0A, "Alias"),
    t(0x0B, "FirstName"),
    t(0x0C, "LastName"),
    t(0x0D, "HomePhone"),
    t(0x0E, "MobilePhone"),
    t(0x0F, "EmailAddress"),
    t(0x10, "Picture"),
    t(0x11, "Status"),
    o(0x12, "Data"),
];

const AIRSYNCBASE: &[TagDef] = &[
    t(0x05, "BodyPreference"),
    t(0x06, "Type"),
    t(0x07, "TruncationSize"),
    t(0x08, "AllOrNone"),
    t(0x0A, "Body"),
    t(0x0B, "Data"),
    t(0x0C, "EstimatedDataSize"),
    t(0x0D, "Truncated"),
    t(0x0E, "Attachments"),
    t(0x0F, "Attachment"),
    t(0x10, "DisplayName"),
    t(0x11, "FileReference"),
    t(0x12, "Method"),
    t(0x13, "ContentId"),
    t(0x14, "ContentLocation"),
    t(0x15, "IsInline"),
    t(0x16, "NativeBodyType"),
    t(0x17, "ContentType"),
    t(0x18, "Preview"),
    t(0x19, "BodyPartPreference"),
    t(0x1A, "BodyPart"),
    t(0x1B, "Status"),
    t(0x1C, "Add"),
    t(0x1D, "Delete"),
    t(0x1E, "ClientId"),
    o(0x1F, "Content"),
    t(0x20, "Location"),
    t(0x21, "Annotation"),
    t(0x22, "Street"),
    t(0x23, "City"),
    t(0x24, "State"),
    t(0x25, "Country"),
    t(0x26, "PostalCode"),
    t(0x27, "Latitude"),
    t(0x28, "Longitude"),
    t(0x29, "Accuracy"),
    t(0x2A, "Altitude"),
    t(0x2B, "AltitudeAccuracy"),
    t(0x2C, "LocationUri"),
    t(0x2D, "InstanceId"),
];

const SETTINGS: &[TagDef] = &[
    t(0x05, "Settings"),
    t(0x06, "Status"),
    t(0x07, "Get"),
    t(0x08, "Set"),
    t(0x09, "Oof"),
    t(0x0A, "OofState"),
    t(0x0B, "StartTime"),
    t(0x0C, "EndTime"),
    t(0x0D, "OofMessage"),
    t(0x0E, "AppliesToInternal"),
    t(0x0F, "AppliesToExternalKnown"),
    t(0x10, "AppliesToExternalUnknown"),
    t(0x11, "Enabled"),
    t(0x12, "ReplyMessage"),
    t(0x13, "BodyType"),
    t(0x14, "DevicePassword"),
    t(0x15, "Password"),
    t(0x16, "DeviceInformation"),
    t(0x17, "Model"),
    t(0x18, "IMEI"),
    t(0x19, "FriendlyName"),
    t(0x1A, "OS"),
    t(0x1B, "OSLanguage"),
    t(0x1C, "PhoneNumber"),
    t(0x1D, "UserInformation"),
    t(0x1E, "EmailAddresses"),
    x(0x1F, "SMTPAddress", "SmtpAddress"),
    t(0x20, "UserAgent"),
    t(0x21, "EnableOutboundSMS"),
    t(0x22, "MobileOperator"),
    t(0x23, "PrimarySmtpAddress"),
    t(0x24, "Accounts"),
    t(0x25, "Account"),
    t(0x26, "AccountId"),
    t(0x27, "AccountName"),
    t(0x28, "UserDisplayName"),
    t(0x29, "SendDisabled"),
    x(
        0x2B,
        "RightsManagementInformation",
        "ihsManagementInformation",
    ),
];

const DOCUMENTLIBRARY: &[TagDef] = &[
    t(0x05, "LinkId"),
    t(0x06, "DisplayName"),
    t(0x07, "IsFolder"),
    t(0x08, "CreationDate"),
    t(0x09, "LastModifiedDate"),
    t(0x0A, "IsHidden"),
    t(0x0B, "ContentLength"),
    t(0x0C, "ContentType"),
];

const ITEMOPERATIONS: &[TagDef] = &[
    t(0x05, "ItemOperations"),
    t(0x06, "Fetch"),
    t(0x07, "Store"),
    t(0x08, "Options"),
    t(0x09, "Range"),
    t(0x0A, "Total"),
    t(0x0B, "Properties"),
    t(0x0C, "Data"),
    t(0x0D, "Status"),
    t(0x0E, "Response"),
    t(0x0F, "Version"),
    t(0x10, "Schema"),
    t(0x11, "Part"),
    t(0x12, "EmptyFolderContents"),
    t(0x13, "DeleteSubFolders"),
    t(0x14, "UserName"),
    t(0x15, "Password"),
    t(0x16, "Move"),
    t(0x17, "DstFldId"),
    o(0x18, "ConversationId"),
    t(0x19, "MoveAlways"),
];

const COMPOSEMAIL: &[TagDef] = &[
    t(0x05, "SendMail"),
    t(0x06, "SmartForward"),
    t(0x07, "SmartReply"),
    t(0x08, "SaveInSentItems"),
    t(0x09, "ReplaceMime"),
    t(0x0B, "Source"),
    t(0x0C, "FolderId"),
    t(0x0D, "ItemId"),
    t(0x0E, "LongId"),
    t(0x0F, "InstanceId"),
    TagDef {
        token: 0x10,
        name: "Mime",
        xml_name: "MIME",
        opaque: true,
    },
    t(0x11, "ClientId"),
    t(0x12, "Status"),
    t(0x13, "AccountId"),
    t(0x15, "Forwardees"),
    t(0x16, "Forwardee"),
    t(0x17, "ForwardeeName"),
    t(0x18, "ForwardeeEmail"),
];

const EMAIL2: &[TagDef] = &[
    t(0x05, "UmCallerID"),
    t(0x06, "UmUserNotes"),
    t(0x07, "UmAttDuration"),
    t(0x08, "UmAttOrder"),
    o(0x09, "ConversationId"),
    o(0x0A, "ConversationIndex"),
    t(0x0B, "LastVerbExecuted"),
    t(0x0C, "LastVerbExecutionTime"),
    t(0x0D, "ReceivedAsBcc"),
    t(0x0E, "Sender"),
    t(0x0F, "CalendarType"),
    t(0x10, "IsLeapMonth"),
    t(0x11, "AccountId"),
    t(0x12, "FirstDayOfWeek"),
    t(0x13, "MeetingMessageType"),
    t(0x15, "IsDraft"),
    t(0x16, "Bcc"),
    t(0x17, "Send"),
];

const NOTES: &[TagDef] = &[
    t(0x05, "Subject"),
    t(0x06, "MessageClass"),
    t(0x07, "LastModifiedDate"),
    t(0x08, "Categories"),
    t(0x09, "Category"),
];

const RIGHTSMANAGEMENT: &[TagDef] = &[
    t(0x05, "RightsManagementSupport"),
    t(0x06, "RightsManagementTemplates"),
    t(0x07, "RightsManagementTemplate"),
    t(0x08, "RightsManagementLicense"),
    t(0x09, "EditAllowed"),
    t(0x0A, "ReplyAllowed"),
    t(0x0B, "ReplyAllAllowed"),
    t(0x0C, "ForwardAllowed"),
    t(0x0D, "ModifyRecipientsAllowed"),
    t(0x0E, "ExtractAllowed"),
    t(0x0F, "PrintAllowed"),
    t(0x10, "ExportAllowed"),
    t(0x11, "ProgrammaticAccessAllowed"),
    x(0x12, "Owner", "RMOwner"),
    t(0x13, "ContentExpiryDate"),
    t(0x14, "TemplateID"),
    t(0x15, "TemplateName"),
    t(0x16, "TemplateDescription"),
    t(0x17, "ContentOwner"),
    x(
        0x18,
        "RemoveRightsManagementProtection",
        "RemoveRightsManagementDistribution",
    ),
];

/// Page 25 (EAS 16.1). Not in libwbxml2 0.11.8, so `xml_name` is the spec name.
const FIND: &[TagDef] = &[
    t(0x05, "Find"),
    t(0x06, "SearchId"),
    t(0x07, "ExecuteSearch"),
    t(0x08, "MailBoxSearchCriterion"),
    t(0x09, "Query"),
    t(0x0A, "Status"),
    t(0x0B, "FreeText"),
    t(0x0C, "Options"),
    t(0x0D, "Range"),
    t(0x0E, "DeepTraversal"),
    t(0x11, "Response"),
    t(0x12, "Result"),
    t(0x13, "Properties"),
    t(0x14, "Preview"),
    t(0x15, "HasAttachments"),
    t(0x16, "Total"),
    t(0x17, "DisplayCc"),
    t(0x18, "DisplayBcc"),
    t(0x19, "GalSearchCriterion"),
    t(0x20, "MaxPictures"),
    t(0x21, "MaxSize"),
    t(0x22, "Picture"),
];

const fn p(number: u8, namespace: &'static str, tags: &'static [TagDef]) -> CodePage {
    CodePage {
        number,
        namespace,
        tags,
    }
}

const PAGE_TABLE: [CodePage; PAGE_COUNT] = [
    p(0, "AirSync", AIRSYNC),
    p(1, "Contacts", CONTACTS),
    p(2, "Email", EMAIL),
    p(3, "AirNotify", AIRNOTIFY),
    p(4, "Calendar", CALENDAR),
    p(5, "Move", MOVE),
    p(6, "GetItemEstimate", GETITEMESTIMATE),
    p(7, "FolderHierarchy", FOLDERHIERARCHY),
    p(8, "MeetingResponse", MEETINGRESPONSE),
    p(9, "Tasks", TASKS),
    p(10, "ResolveRecipients", RESOLVERECIPIENTS),
    p(11, "ValidateCert", VALIDATECERT),
    p(12, "Contacts2", CONTACTS2),
    p(13, "Ping", PING),
    p(14, "Provision", PROVISION),
    p(15, "Search", SEARCH),
    p(16, "GAL", GAL),
    p(17, "AirSyncBase", AIRSYNCBASE),
    p(18, "Settings", SETTINGS),
    p(19, "DocumentLibrary", DOCUMENTLIBRARY),
    p(20, "ItemOperations", ITEMOPERATIONS),
    p(21, "ComposeMail", COMPOSEMAIL),
    p(22, "Email2", EMAIL2),
    p(23, "Notes", NOTES),
    p(24, "RightsManagement", RIGHTSMANAGEMENT),
    p(25, "Find", FIND),
];

/// All pages, indexed by page number (`PAGES[n].number == n`).
pub static PAGES: &[CodePage] = &PAGE_TABLE;

/// Marks "no tag" in [`TOKEN_INDEX`].
const NO_TAG: u8 = u8::MAX;

/// `TOKEN_INDEX[page][token]` = index of the tag in `PAGE_TABLE[page].tags`, or `NO_TAG`.
///
/// Built at compile time; building it also checks the tables (page numbers equal their
/// index, tokens within 0x05..=0x3F and unique per page), so a bad table does not compile.
static TOKEN_INDEX: [[u8; 64]; PAGE_COUNT] = build_index(&PAGE_TABLE);

const fn build_index(pages: &[CodePage; PAGE_COUNT]) -> [[u8; 64]; PAGE_COUNT] {
    let mut index = [[NO_TAG; 64]; PAGE_COUNT];
    let mut p = 0;
    while p < PAGE_COUNT {
        let page = &pages[p];
        assert!(page.number as usize == p, "code page out of order");
        assert!(page.tags.len() < NO_TAG as usize, "too many tags on a page");
        let mut i = 0;
        while i < page.tags.len() {
            let token = page.tags[i].token;
            assert!(
                token >= 0x05 && token <= 0x3F,
                "tag token outside 0x05..=0x3F"
            );
            assert!(
                index[p][token as usize] == NO_TAG,
                "duplicate tag token on a page"
            );
            index[p][token as usize] = i as u8;
            i += 1;
        }
        p += 1;
    }
    index
}

/// The tag with this token (content and attribute bits stripped, i.e. `0x00..=0x3F`) on
/// this page, in O(1). `None` for an unknown page, a token above 0x3F or an undefined tag.
#[inline]
pub fn tag_def(page: u8, token: u8) -> Option<&'static TagDef> {
    let slot = *TOKEN_INDEX.get(page as usize)?.get(token as usize)?;
    // `NO_TAG` is never a valid index (checked in `build_index`), so `get` answers `None`.
    PAGE_TABLE.get(page as usize)?.tags.get(slot as usize)
}

/// The namespace (without colon) of this page, e.g. `AirSyncBase` for 17.
#[inline]
pub fn namespace_of(page: u8) -> Option<&'static str> {
    PAGES.get(page as usize).map(|p| p.namespace)
}

/// The namespace libwbxml2 prints for this page (`Gal` for 16, else the spec namespace).
#[inline]
pub fn xml_namespace_of(page: u8) -> Option<&'static str> {
    PAGES.get(page as usize).map(CodePage::xml_namespace)
}

/// The page with this number, if EAS defines it. O(1).
#[inline]
pub fn page(number: u8) -> Option<&'static CodePage> {
    PAGES.get(number as usize)
}

/// The page whose namespace is `ns` (without colon). Accepts the spec namespace and
/// libwbxml2's spelling (`Gal` for `GAL`).
pub fn page_by_namespace(ns: &str) -> Option<&'static CodePage> {
    PAGES
        .iter()
        .find(|p| p.namespace == ns)
        .or_else(|| PAGES.iter().find(|p| p.xml_namespace() == ns))
}

impl CodePage {
    /// The tag with this token (content bit stripped). O(1).
    #[inline]
    pub fn tag(&self, token: u8) -> Option<&'static TagDef> {
        tag_def(self.number, token)
    }
    /// The tag with this spec name.
    pub fn tag_by_name(&self, name: &str) -> Option<&'static TagDef> {
        page(self.number)?.tags.iter().find(|t| t.name == name)
    }
    /// The tag with this libwbxml2 XML name.
    pub fn tag_by_xml_name(&self, name: &str) -> Option<&'static TagDef> {
        page(self.number)?.tags.iter().find(|t| t.xml_name == name)
    }
    /// The namespace libwbxml2 uses for this page: the spec namespace except `Gal` for
    /// page 16 (spec: `GAL`).
    pub fn xml_namespace(&self) -> &'static str {
        if self.number == 16 {
            "Gal"
        } else {
            self.namespace
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn pages_are_indexed_by_number() {
        assert_eq!(PAGES.len(), 26);
        for (n, p) in PAGES.iter().enumerate() {
            assert_eq!(p.number as usize, n);
            assert_eq!(page(n as u8).map(|q| q.number), Some(n as u8));
            assert_eq!(namespace_of(n as u8), Some(p.namespace));
            assert!(!p.tags.is_empty(), "page {n} has no tags");
        }
        assert!(page(26).is_none());
        assert!(page(255).is_none());
        assert!(namespace_of(26).is_none());
    }

    #[test]
    fn namespaces() {
        let expected = [
            "AirSync",
            "Contacts",
            "Email",
            "AirNotify",
            "Calendar",
            "Move",
            "GetItemEstimate",
            "FolderHierarchy",
            "MeetingResponse",
            "Tasks",
            "ResolveRecipients",
            "ValidateCert",
            "Contacts2",
            "Ping",
            "Provision",
            "Search",
            "GAL",
            "AirSyncBase",
            "Settings",
            "DocumentLibrary",
            "ItemOperations",
            "ComposeMail",
            "Email2",
            "Notes",
            "RightsManagement",
            "Find",
        ];
        for (n, ns) in expected.iter().enumerate() {
            assert_eq!(namespace_of(n as u8), Some(*ns));
            assert_eq!(page_by_namespace(ns).map(|p| p.number), Some(n as u8));
        }
        assert_eq!(page_by_namespace("Gal").map(|p| p.number), Some(16));
        assert_eq!(xml_namespace_of(16), Some("Gal"));
        assert_eq!(xml_namespace_of(17), Some("AirSyncBase"));
        assert!(page_by_namespace("AirSync:").is_none());
        assert!(page_by_namespace("").is_none());
    }

    #[test]
    fn tokens_names_unique_and_in_range() {
        for p in PAGES {
            let mut tokens = HashSet::new();
            let mut names = HashSet::new();
            let mut xml_names = HashSet::new();
            for t in p.tags {
                assert!(
                    (0x05..=0x3F).contains(&t.token),
                    "{}:{:#04x}",
                    p.namespace,
                    t.token
                );
                assert!(
                    tokens.insert(t.token),
                    "dup token {}:{:#04x}",
                    p.namespace,
                    t.token
                );
                assert!(names.insert(t.name), "dup name {}:{}", p.namespace, t.name);
                assert!(
                    xml_names.insert(t.xml_name),
                    "dup xml {}:{}",
                    p.namespace,
                    t.xml_name
                );
                assert!(!t.name.is_empty() && !t.xml_name.is_empty());
            }
            // Sorted by token, so the source reads like the spec tables.
            assert!(
                p.tags.windows(2).all(|w| w[0].token < w[1].token),
                "{}",
                p.namespace
            );
        }
    }

    #[test]
    fn tag_def_agrees_with_linear_lookup() {
        for page_no in 0..=u8::MAX {
            for token in 0..=u8::MAX {
                let linear = PAGES
                    .iter()
                    .find(|p| p.number == page_no)
                    .and_then(|p| p.tags.iter().find(|t| t.token == token));
                assert_eq!(tag_def(page_no, token), linear, "{page_no}:{token:#04x}");
                if let Some(p) = page(page_no) {
                    assert_eq!(p.tag(token), linear);
                }
            }
        }
    }

    #[test]
    fn lookups_by_name() {
        for p in PAGES {
            for t in p.tags {
                assert_eq!(p.tag_by_name(t.name), Some(t));
                assert_eq!(p.tag_by_xml_name(t.xml_name), Some(t));
            }
            assert!(p.tag_by_name("NoSuchTag").is_none());
        }
    }

    fn spot(page_no: u8, token: u8, name: &str, opaque: bool) {
        let t = tag_def(page_no, token);
        assert_eq!(t.map(|t| t.name), Some(name), "{page_no}:{token:#04x}");
        assert_eq!(
            t.map(|t| t.opaque),
            Some(opaque),
            "{page_no}:{token:#04x} opaque"
        );
        let by_name = page(page_no)
            .and_then(|p| p.tag_by_name(name))
            .map(|t| t.token);
        assert_eq!(by_name, Some(token), "{page_no}:{name}");
    }

    #[test]
    fn spot_checks_from_protocol_md() {
        // AirSync
        spot(0, 0x22, "MIMESupport", false);
        spot(0, 0x23, "MIMETruncation", false);
        // Email (2.5 attachments)
        spot(2, 0x05, "Attachment", false);
        spot(2, 0x06, "Attachments", false);
        spot(2, 0x07, "AttName", false);
        spot(2, 0x08, "AttSize", false);
        spot(2, 0x09, "Att0Id", false);
        spot(2, 0x0A, "AttMethod", false);
        spot(2, 0x0B, "AttRemoved", false);
        spot(2, 0x10, "DisplayName", false);
        spot(2, 0x36, "MIMEData", false);
        spot(2, 0x37, "MIMETruncated", false);
        spot(2, 0x38, "MIMESize", false);
        // Ping
        spot(13, 0x05, "Ping", false);
        spot(13, 0x08, "HeartbeatInterval", false);
        spot(13, 0x0D, "MaxFolders", false);
        // Provision
        spot(14, 0x13, "AttachmentsEnabled", false);
        spot(14, 0x17, "MaxAttachmentSize", false);
        spot(14, 0x3B, "AccountOnlyRemoteWipe", false);
        // AirSyncBase
        spot(17, 0x05, "BodyPreference", false);
        spot(17, 0x06, "Type", false);
        spot(17, 0x07, "TruncationSize", false);
        spot(17, 0x08, "AllOrNone", false);
        spot(17, 0x0A, "Body", false);
        spot(17, 0x0B, "Data", false);
        spot(17, 0x0C, "EstimatedDataSize", false);
        spot(17, 0x0D, "Truncated", false);
        spot(17, 0x0E, "Attachments", false);
        spot(17, 0x0F, "Attachment", false);
        spot(17, 0x10, "DisplayName", false);
        spot(17, 0x11, "FileReference", false);
        spot(17, 0x12, "Method", false);
        spot(17, 0x13, "ContentId", false);
        spot(17, 0x14, "ContentLocation", false);
        spot(17, 0x15, "IsInline", false);
        spot(17, 0x17, "ContentType", false);
        spot(17, 0x18, "Preview", false);
        spot(17, 0x1A, "BodyPart", false);
        spot(17, 0x1C, "Add", false);
        spot(17, 0x1D, "Delete", false);
        spot(17, 0x1E, "ClientId", false);
        spot(17, 0x1F, "Content", true);
        spot(17, 0x20, "Location", false);
        spot(17, 0x2D, "InstanceId", false);
        // ItemOperations
        spot(20, 0x05, "ItemOperations", false);
        spot(20, 0x06, "Fetch", false);
        spot(20, 0x07, "Store", false);
        spot(20, 0x08, "Options", false);
        spot(20, 0x09, "Range", false);
        spot(20, 0x0A, "Total", false);
        spot(20, 0x0B, "Properties", false);
        spot(20, 0x0C, "Data", false);
        spot(20, 0x0D, "Status", false);
        spot(20, 0x0E, "Response", false);
        spot(20, 0x11, "Part", false);
        spot(20, 0x18, "ConversationId", true);
        // ComposeMail
        spot(21, 0x05, "SendMail", false);
        spot(21, 0x06, "SmartForward", false);
        spot(21, 0x07, "SmartReply", false);
        spot(21, 0x08, "SaveInSentItems", false);
        spot(21, 0x09, "ReplaceMime", false);
        spot(21, 0x0B, "Source", false);
        spot(21, 0x0C, "FolderId", false);
        spot(21, 0x0D, "ItemId", false);
        spot(21, 0x0E, "LongId", false);
        spot(21, 0x0F, "InstanceId", false);
        spot(21, 0x10, "Mime", true);
        spot(21, 0x11, "ClientId", false);
        spot(21, 0x12, "Status", false);
        spot(21, 0x13, "AccountId", false);
        spot(21, 0x15, "Forwardees", false);
        spot(21, 0x18, "ForwardeeEmail", false);
        // Email2
        spot(22, 0x07, "UmAttDuration", false);
        spot(22, 0x08, "UmAttOrder", false);
        spot(22, 0x09, "ConversationId", true);
        spot(22, 0x0A, "ConversationIndex", true);
        spot(22, 0x15, "IsDraft", false);
        spot(22, 0x16, "Bcc", false);
        spot(22, 0x17, "Send", false);
        // Find (16.1)
        spot(25, 0x05, "Find", false);
        spot(25, 0x22, "Picture", false);
    }

    #[test]
    fn opaque_tags_are_exactly_libwbxmls() {
        let mut opaque: Vec<(u8, u8)> = Vec::new();
        for p in PAGES {
            for t in p.tags.iter().filter(|t| t.opaque) {
                opaque.push((p.number, t.token));
            }
        }
        assert_eq!(
            opaque,
            vec![
                (10, 0x1C),
                (15, 0x20),
                (16, 0x12),
                (17, 0x1F),
                (20, 0x18),
                (21, 0x10),
                (22, 0x09),
                (22, 0x0A)
            ]
        );
    }

    #[test]
    fn libwbxml_names() {
        let xml = |p: u8, tok: u8| tag_def(p, tok).map(|t| t.xml_name);
        assert_eq!(xml(4, 0x09), Some("Attendee_Email"));
        assert_eq!(xml(4, 0x0A), Some("Attendee_Name"));
        assert_eq!(xml(4, 0x1F), Some("Recurrence_Interval"));
        assert_eq!(xml(9, 0x0D), Some("UTCDueDate"));
        assert_eq!(xml(11, 0x09), Some("CheckCRL"));
        assert_eq!(xml(21, 0x10), Some("MIME"));
        assert_eq!(xml(24, 0x12), Some("RMOwner"));
        assert_eq!(xml(17, 0x11), Some("FileReference"));
        let cal = page(4).and_then(|p| p.tag_by_xml_name("Attendee_Email"));
        assert_eq!(cal.map(|t| t.name), Some("Email"));
    }

    #[test]
    fn out_of_range_inputs() {
        assert!(tag_def(0, 0x00).is_none());
        assert!(tag_def(0, 0x04).is_none());
        assert!(tag_def(0, 0x45).is_none()); // content bit not stripped
        assert!(tag_def(26, 0x05).is_none());
        assert!(tag_def(17, 0x09).is_none()); // gap in AirSyncBase
        assert!(tag_def(25, 0x0F).is_none()); // gap in Find
    }
}
