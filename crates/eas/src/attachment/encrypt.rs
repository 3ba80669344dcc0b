//! CMS EnvelopedData (RFC 5652) for attachments: AES-256-CBC content encryption, the content
//! key wrapped to each recipient with RSAES-OAEP (SHA-256, MGF1-SHA-256, RFC 8017 / RFC 4055),
//! recipients named by IssuerAndSerialNumber. `openssl cms -decrypt -inform DER -recip cert.pem
//! -inkey key.pem` opens it (OpenSSL 3). AES-CBC rather than AES-GCM AuthEnvelopedData because
//! every CMS reader (OpenSSL 1.1+, Outlook, BouncyCastle) opens it; EC (ECDH kari) recipients
//! are not supported yet and are refused when the certificates are loaded.
//!
//! The DER is written by hand (a dozen fixed structures); certificates are parsed with
//! `x509-cert`. The `rsa` crate's known timing issue (RUSTSEC-2023-0071) concerns private-key
//! operations; only public-key encryption is done here.

use aes::Aes256;
use cbc::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use der::{Decode, Encode};
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use sha2::Sha256;
use x509_cert::Certificate;

use super::AttachmentError;

/// Content type of encrypted attachments.
pub const CONTENT_TYPE: &str = "application/pkcs7-mime";
/// Content type with the S/MIME parameter, for MIME parts.
pub const CONTENT_TYPE_ENVELOPED: &str = "application/pkcs7-mime; smime-type=enveloped-data";

const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_RSAES_OAEP: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x07];
const OID_MGF1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A];
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
const OID_ENVELOPED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03];

/// One recipient: its key and how CMS names it.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// DER of IssuerAndSerialNumber.
    issuer_and_serial: Vec<u8>,
    key: RsaPublicKey,
    /// Subject of the certificate, for logs.
    pub subject: String,
}

/// The certificates attachments are encrypted to (one config generation; share with `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Recipients(Vec<Recipient>);

impl Recipients {
    /// Loads every certificate of a PEM bundle (one file's bytes). RSA keys only.
    pub fn from_pem(pem: &[u8]) -> Result<Self, AttachmentError> {
        let certs = Certificate::load_pem_chain(pem).map_err(|e| AttachmentError::Certificate {
            index: 0,
            reason: format!("not a PEM certificate: {e}"),
        })?;
        if certs.is_empty() {
            return Err(AttachmentError::Certificate {
                index: 0,
                reason: "no certificate in the PEM data".into(),
            });
        }
        let mut out = Recipients::default();
        for (i, c) in certs.iter().enumerate() {
            out.0.push(recipient(i, c)?);
        }
        Ok(out)
    }

    /// Loads one DER certificate.
    pub fn push_der(&mut self, der: &[u8]) -> Result<(), AttachmentError> {
        let index = self.0.len();
        let cert = Certificate::from_der(der).map_err(|e| AttachmentError::Certificate {
            index,
            reason: format!("not a DER certificate: {e}"),
        })?;
        self.0.push(recipient(index, &cert)?);
        Ok(())
    }

    /// Adds the recipients of another set (several PEM files).
    pub fn extend(&mut self, other: Recipients) {
        self.0.extend(other.0);
    }

    /// Number of recipients.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recipients.
    pub fn iter(&self) -> impl Iterator<Item = &Recipient> {
        self.0.iter()
    }
}

fn recipient(index: usize, cert: &Certificate) -> Result<Recipient, AttachmentError> {
    let bad = |reason: String| AttachmentError::Certificate { index, reason };
    let tbs = &cert.tbs_certificate;
    let spki = &tbs.subject_public_key_info;
    let alg = spki.algorithm.oid.as_bytes();
    if alg != OID_RSA_ENCRYPTION {
        return Err(bad(format!(
            "public key algorithm {} is not RSA (only RSA recipients are supported)",
            spki.algorithm.oid
        )));
    }
    let spki_der = spki.to_der().map_err(|e| bad(e.to_string()))?;
    let key = RsaPublicKey::from_public_key_der(&spki_der).map_err(|e| bad(e.to_string()))?;
    let issuer = tbs.issuer.to_der().map_err(|e| bad(e.to_string()))?;
    let serial = tbs.serial_number.to_der().map_err(|e| bad(e.to_string()))?;
    let mut ias = issuer;
    ias.extend_from_slice(&serial);
    Ok(Recipient {
        issuer_and_serial: tlv(0x30, &ias),
        key,
        subject: tbs.subject.to_string(),
    })
}

/// Encrypts `content` to every recipient: DER `ContentInfo` of `EnvelopedData`.
pub fn envelope(content: &[u8], recipients: &Recipients) -> Result<Vec<u8>, AttachmentError> {
    if recipients.is_empty() {
        return Err(AttachmentError::NoRecipients);
    }
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut key)
        .and_then(|()| OsRng.try_fill_bytes(&mut iv))
        .map_err(|e| AttachmentError::Crypto {
            reason: format!("no randomness: {e}"),
        })?;
    let ciphertext = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(content);

    // RSAES-OAEP-params { [0] sha256, [1] mgf1(sha256), pSource default }.
    let sha256 = tlv(0x30, &cat(&[&tlv(0x06, OID_SHA256), &[0x05, 0x00]]));
    let mgf1 = tlv(0x30, &cat(&[&tlv(0x06, OID_MGF1), &sha256]));
    let oaep_params = tlv(0x30, &cat(&[&tlv(0xA0, &sha256), &tlv(0xA1, &mgf1)]));
    let key_enc_alg = tlv(0x30, &cat(&[&tlv(0x06, OID_RSAES_OAEP), &oaep_params]));

    let mut infos: Vec<Vec<u8>> = Vec::with_capacity(recipients.len());
    for r in recipients.iter() {
        let wrapped = r
            .key
            .encrypt(&mut OsRng, Oaep::new::<Sha256>(), &key)
            .map_err(|e| AttachmentError::Crypto {
                reason: format!("RSA-OAEP for {}: {e}", r.subject),
            })?;
        // KeyTransRecipientInfo { version 0, rid IssuerAndSerialNumber, alg, encryptedKey }
        infos.push(tlv(
            0x30,
            &cat(&[
                &[0x02, 0x01, 0x00],
                &r.issuer_and_serial,
                &key_enc_alg,
                &tlv(0x04, &wrapped),
            ]),
        ));
    }
    infos.sort(); // DER SET OF: sorted encodings
    let recipient_infos = tlv(0x31, &infos.concat());

    let content_alg = tlv(0x30, &cat(&[&tlv(0x06, OID_AES256_CBC), &tlv(0x04, &iv)]));
    let encrypted_content_info = tlv(
        0x30,
        &cat(&[&tlv(0x06, OID_DATA), &content_alg, &tlv(0x80, &ciphertext)]),
    );
    // version 0: no originatorInfo, only version-0 ktri, no unprotectedAttrs (RFC 5652 6.1).
    let enveloped = tlv(
        0x30,
        &cat(&[&[0x02, 0x01, 0x00], &recipient_infos, &encrypted_content_info]),
    );
    Ok(tlv(
        0x30,
        &cat(&[&tlv(0x06, OID_ENVELOPED_DATA), &tlv(0xA0, &enveloped)]),
    ))
}

/// Upper bound of the DER size of [`envelope`] for `len` content bytes (for size estimates).
pub fn envelope_size_hint(len: usize, recipients: &Recipients) -> usize {
    let per_recipient: usize = recipients
        .iter()
        .map(|r| r.issuer_and_serial.len() + 512 + 64)
        .sum();
    len + 16 + per_recipient + 96
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let n = bytes.len() - skip;
        out.push(0x80 | n as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2C]);
        assert_eq!(tlv(0x04, &[0; 128])[..3], [0x04, 0x81, 0x80]);
    }

    #[test]
    fn refuses_without_recipients() {
        assert_eq!(
            envelope(b"x", &Recipients::default()),
            Err(AttachmentError::NoRecipients)
        );
        assert!(Recipients::from_pem(b"junk").is_err());
    }
}
