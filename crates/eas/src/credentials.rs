//! Who a credential names, for the schemes that carry a name the gateway can read without
//! holding any secret: the NTLM AUTHENTICATE message (MS-NLMP 2.2.1.3), bare or inside
//! `Negotiate` (SPNEGO), and the claims of a JWT bearer token.
//!
//! The gateway does not verify these credentials; the server does. What matters is that the name
//! read here is the one the server will authenticate *if* it accepts the credential: an NTLM
//! response is computed over the user and domain names in the message, and a JWT's signature
//! covers its claims. A request whose credential the server accepts is therefore that user's,
//! whatever its query says. Kerberos tickets (the other `Negotiate` mechanism) and opaque bearer
//! tokens name their user only inside encrypted or server-side data: the caller decides what to
//! do with those (see [`crate::headers::Authorization`]).

use base64::Engine as _;

use crate::device::LoginName;
use crate::error::EasError;

const NTLM_SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// `NTLMSSP_NEGOTIATE_UNICODE`: the names are UTF-16LE, else OEM (ASCII here).
const NTLM_UNICODE: u32 = 0x0000_0001;
/// Longest NTLM or Negotiate token decoded (real ones are a few hundred bytes to a few KiB).
const MAX_TOKEN: usize = 16 * 1024;
/// JWT claims that name the signed-in user, in the order Microsoft Entra ID and AD FS fill them.
const JWT_USER_CLAIMS: [&str; 4] = ["upn", "unique_name", "preferred_username", "email"];

/// What an NTLM token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmToken {
    /// NEGOTIATE or CHALLENGE: the handshake's first legs name nobody yet.
    Handshake,
    /// AUTHENTICATE: the user (and domain) the response was computed for. `None` for an
    /// anonymous AUTHENTICATE (empty user name).
    Authenticate(Option<LoginName>),
}

fn malformed(reason: &'static str) -> EasError {
    EasError::InvalidAuthorization { reason }
}

/// Decodes the base64 token of an `NTLM` or `Negotiate` header value.
fn decode_token(b64: &str) -> Result<Vec<u8>, EasError> {
    if b64.len() > MAX_TOKEN * 4 / 3 + 4 {
        return Err(malformed("token too long"));
    }
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| malformed("token is not base64"))
}

/// An `NTLM <base64>` value's token.
pub fn parse_ntlm(b64: &str) -> Result<NtlmToken, EasError> {
    let raw = decode_token(b64)?;
    if !raw.starts_with(NTLM_SIGNATURE) {
        return Err(malformed("NTLM token without the NTLMSSP signature"));
    }
    ntlm_message(&raw)
}

/// A `Negotiate <base64>` value's token: `Some` when it carries NTLM (raw, or wrapped in SPNEGO),
/// `None` for any other mechanism (Kerberos), whose user name is encrypted.
pub fn parse_negotiate(b64: &str) -> Result<Option<NtlmToken>, EasError> {
    let raw = decode_token(b64)?;
    // SPNEGO wraps the NTLM message whole in its mechToken / responseToken OCTET STRING; the
    // message's own offsets are relative to its signature, so parsing can start there.
    match memchr::memmem::find(&raw, NTLM_SIGNATURE) {
        Some(at) => ntlm_message(raw.get(at..).unwrap_or_default()).map(Some),
        None => Ok(None),
    }
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(m.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(m: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(m.get(at..at + 4)?.try_into().ok()?))
}

/// The bytes of a `(len, maxlen, offset)` field of an NTLM message.
fn ntlm_field(m: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16_at(m, at)?);
    let offset = usize::try_from(u32_at(m, at + 4)?).ok()?;
    m.get(offset..offset.checked_add(len)?)
}

fn ntlm_text(bytes: &[u8], unicode: bool) -> Result<String, EasError> {
    if unicode {
        if !bytes.len().is_multiple_of(2) {
            return Err(malformed("NTLM name is not UTF-16"));
        }
        let units = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|_| malformed("NTLM name is not UTF-16"))
    } else if bytes.is_ascii() {
        Ok(bytes.iter().map(|&b| char::from(b)).collect())
    } else {
        // OEM code pages other than ASCII are not guessed: a wrong guess would name someone else.
        Err(malformed("NTLM name is not ASCII (OEM)"))
    }
}

fn ntlm_message(m: &[u8]) -> Result<NtlmToken, EasError> {
    let kind = u32_at(m, 8).ok_or(malformed("NTLM message too short"))?;
    match kind {
        1 | 2 => Ok(NtlmToken::Handshake),
        3 => {
            let flags = u32_at(m, 60).ok_or(malformed("NTLM AUTHENTICATE too short"))?;
            let unicode = flags & NTLM_UNICODE != 0;
            let bad = || malformed("NTLM AUTHENTICATE field outside the message");
            let domain = ntlm_text(ntlm_field(m, 28).ok_or_else(bad)?, unicode)?;
            let user = ntlm_text(ntlm_field(m, 36).ok_or_else(bad)?, unicode)?;
            if user.is_empty() {
                return Ok(NtlmToken::Authenticate(None));
            }
            crate::device::validate_user("Authorization", &user)
                .map_err(|_| malformed("NTLM user name is too long or has control characters"))?;
            // The server authenticates DOMAIN\user (or a UPN in the user field, domain empty).
            let raw = if domain.is_empty() {
                user
            } else {
                format!("{domain}\\{user}")
            };
            if raw.chars().count() > 256 || raw.chars().any(char::is_control) {
                return Err(malformed(
                    "NTLM domain name is too long or has control characters",
                ));
            }
            Ok(NtlmToken::Authenticate(Some(LoginName::parse(&raw))))
        }
        _ => Err(malformed("unknown NTLM message type")),
    }
}

/// The user a JWT bearer token names (its first user claim), `None` when the token is not a JWT
/// or names nobody. The signature is not checked here: the server checks it and refuses a token
/// whose claims were changed.
pub fn jwt_user(token: &str) -> Option<LoginName> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > MAX_TOKEN {
        return None;
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).ok()?;
    let user = JWT_USER_CLAIMS
        .iter()
        .find_map(|c| claims.get(*c)?.as_str().filter(|s| !s.trim().is_empty()))?;
    crate::device::validate_user("Authorization", user).ok()?;
    Some(LoginName::parse(user))
}

/// NTLM messages for tests (here and in the gateway's): NEGOTIATE and AUTHENTICATE as real
/// clients send them, base64-encoded.
pub mod ntlm_samples {
    use base64::Engine as _;

    /// `NTLM` NEGOTIATE (type 1) with the Unicode flag.
    pub fn negotiate() -> String {
        let mut m = super::NTLM_SIGNATURE.to_vec();
        m.extend_from_slice(&1u32.to_le_bytes());
        m.extend_from_slice(&0x0000_0207u32.to_le_bytes());
        m.extend_from_slice(&[0; 16]);
        base64::engine::general_purpose::STANDARD.encode(m)
    }

    /// AUTHENTICATE (type 3) for `domain\user` with dummy responses, UTF-16LE names.
    pub fn authenticate(domain: &str, user: &str) -> String {
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        let (d, u, ws) = (utf16(domain), utf16(user), utf16("PHONE"));
        let lm = [0u8; 24];
        let nt = [7u8; 24];
        let mut payload = Vec::new();
        let mut fields = Vec::new();
        for part in [&lm[..], &nt[..], &d[..], &u[..], &ws[..], &[][..]] {
            let offset = 64 + payload.len();
            fields.push((part.len(), offset));
            payload.extend_from_slice(part);
        }
        let mut m = super::NTLM_SIGNATURE.to_vec();
        m.extend_from_slice(&3u32.to_le_bytes());
        for (len, offset) in fields {
            let len = len as u16;
            m.extend_from_slice(&len.to_le_bytes());
            m.extend_from_slice(&len.to_le_bytes());
            m.extend_from_slice(&(offset as u32).to_le_bytes());
        }
        m.extend_from_slice(&0x0000_0205u32.to_le_bytes());
        m.extend_from_slice(&payload);
        base64::engine::general_purpose::STANDARD.encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::LoginForm;

    #[test]
    fn ntlm_authenticate_names_domain_and_user() {
        let t = parse_ntlm(&ntlm_samples::authenticate("CORP", "victim")).unwrap();
        let NtlmToken::Authenticate(Some(l)) = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            (l.raw.as_str(), l.form),
            ("CORP\\victim", LoginForm::DownLevel)
        );
        let t = parse_ntlm(&ntlm_samples::authenticate("", "victim@corp.example")).unwrap();
        assert!(matches!(t, NtlmToken::Authenticate(Some(l)) if l.form == LoginForm::Upn));
        assert_eq!(
            parse_ntlm(&ntlm_samples::authenticate("CORP", "")).unwrap(),
            NtlmToken::Authenticate(None)
        );
        assert_eq!(
            parse_ntlm(&ntlm_samples::negotiate()).unwrap(),
            NtlmToken::Handshake
        );
    }

    #[test]
    fn negotiate_finds_ntlm_inside_spnego_and_not_kerberos() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let inner = b64
            .decode(ntlm_samples::authenticate("CORP", "bob"))
            .unwrap();
        // negTokenResp { responseToken OCTET STRING } around the message, as SPNEGO sends it.
        let mut spnego = vec![
            0xa1, 0x82, 0x01, 0x00, 0x30, 0x81, 0xf0, 0xa2, 0x81, 0xec, 0x04,
        ];
        spnego.push(inner.len() as u8);
        spnego.extend_from_slice(&inner);
        let t = parse_negotiate(&b64.encode(&spnego)).unwrap();
        assert!(matches!(t, Some(NtlmToken::Authenticate(Some(l))) if l.raw == "CORP\\bob"));
        // A Kerberos AP-REQ inside SPNEGO (GSS-API tag, Kerberos OID): nobody readable.
        let krb = [
            0x60, 0x10, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02,
        ];
        assert_eq!(parse_negotiate(&b64.encode(krb)).unwrap(), None);
    }

    #[test]
    fn malformed_ntlm_is_an_error_never_a_panic() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let good = b64
            .decode(ntlm_samples::authenticate("CORP", "bob"))
            .unwrap();
        for cut in 0..good.len() {
            let _ = parse_ntlm(&b64.encode(&good[..cut]));
        }
        assert!(parse_ntlm("TYPE1").is_err());
        assert!(parse_ntlm(&b64.encode(b"hello world")).is_err());
        let mut far = good.clone();
        far[40..44].copy_from_slice(&u32::MAX.to_le_bytes()); // user offset past the end
        assert!(parse_ntlm(&b64.encode(&far)).is_err());
        let mut kind = good;
        kind[8] = 9;
        assert!(parse_ntlm(&b64.encode(&kind)).is_err());
    }

    #[test]
    fn jwt_claims_name_the_user() {
        let enc = |j: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(j);
        let tok = |claims: &str| format!("{}.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc(claims));
        let l = jwt_user(&tok(r#"{"upn":"victim@corp.example","email":"x@y"}"#)).unwrap();
        assert_eq!(l.raw, "victim@corp.example");
        let l = jwt_user(&tok(r#"{"preferred_username":"bob@corp.example"}"#)).unwrap();
        assert_eq!(l.raw, "bob@corp.example");
        assert_eq!(jwt_user(&tok("{}")), None);
        assert_eq!(jwt_user(&tok(r#"{"upn":42}"#)), None);
        assert_eq!(jwt_user("opaque-token-value"), None);
        assert_eq!(jwt_user("a.!!!.c"), None);
        assert_eq!(jwt_user(&format!("{}.x", tok("{}"))), None);
    }
}
