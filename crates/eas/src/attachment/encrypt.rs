//! CMS EnvelopedData (RFC 5652) for attachments: AES-256-CBC content encryption, the content
//! key wrapped to each recipient with RSAES-OAEP (SHA-256, MGF1-SHA-256, RFC 8017 / RFC 4055),
//! recipients named by IssuerAndSerialNumber; P-256 EC recipients get a KeyAgreeRecipientInfo
//! (RFC 5753: ephemeral-static ECDH, `dhSinglePass-stdDH-sha256kdf-scheme`, X9.63 KDF with
//! SHA-256, AES-256 key wrap RFC 3394). `openssl cms -decrypt -inform DER -recip cert.pem
//! -inkey key.pem` opens it (OpenSSL 3). AES-CBC rather than AES-GCM AuthEnvelopedData because
//! every CMS reader (OpenSSL 1.1+, Outlook, BouncyCastle) opens it. Other key types (P-384,
//! Ed25519...) are refused when the certificates are loaded.
//!
//! The DER is written by hand (a dozen fixed structures); certificates are parsed with
//! `x509-cert`. The `rsa` crate's known timing issue (RUSTSEC-2023-0071) concerns private-key
//! operations; only public-key encryption is done here.

use aes::Aes256;
use cbc::cipher::{BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit, block_padding::Pkcs7};
use der::{Decode, Encode};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use sha2::Digest;
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
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753 / SEC 1).
const OID_ECDH_SHA256_KDF: &[u8] = &[0x2B, 0x81, 0x04, 0x01, 0x0B, 0x01];
const OID_AES256_WRAP: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2D];

#[derive(Debug, Clone)]
enum Key {
    Rsa(RsaPublicKey),
    P256(p256::PublicKey),
}

/// One recipient: its key and how CMS names it.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// DER of IssuerAndSerialNumber.
    issuer_and_serial: Vec<u8>,
    key: Key,
    /// Subject of the certificate, for logs.
    pub subject: String,
}

/// The certificates attachments are encrypted to (one config generation; share with `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Recipients(Vec<Recipient>);

impl Recipients {
    /// Loads every certificate of a PEM bundle (one file's bytes): RSA or EC P-256 keys.
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
    let spki_der = spki.to_der().map_err(|e| bad(e.to_string()))?;
    let key = if alg == OID_RSA_ENCRYPTION {
        Key::Rsa(RsaPublicKey::from_public_key_der(&spki_der).map_err(|e| bad(e.to_string()))?)
    } else if alg == OID_EC_PUBLIC_KEY {
        Key::P256(
            p256::PublicKey::from_public_key_der(&spki_der).map_err(|e| {
                bad(format!(
                    "EC key is not P-256 (the only EC curve supported): {e}"
                ))
            })?,
        )
    } else {
        return Err(bad(format!(
            "public key algorithm {} is not supported (RSA or EC P-256)",
            spki.algorithm.oid
        )));
    };
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
    let mut all_ktri = true;
    for r in recipients.iter() {
        match &r.key {
            Key::Rsa(rsa_key) => {
                let wrapped = rsa_key
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
            Key::P256(ec_key) => {
                all_ktri = false;
                infos.push(kari(ec_key, &r.issuer_and_serial, &key));
            }
        }
    }
    infos.sort(); // DER SET OF: sorted encodings
    let recipient_infos = tlv(0x31, &infos.concat());

    let content_alg = tlv(0x30, &cat(&[&tlv(0x06, OID_AES256_CBC), &tlv(0x04, &iv)]));
    // The ciphertext is the only large piece: lay out the nested headers around it once
    // instead of copying it at every level.
    let oid_data = tlv(0x06, OID_DATA);
    let oid_env = tlv(0x06, OID_ENVELOPED_DATA);
    let ct_hdr = header(0x80, ciphertext.len());
    let eci_len = oid_data.len() + content_alg.len() + ct_hdr.len() + ciphertext.len();
    let eci_hdr = header(0x30, eci_len);
    // RFC 5652 6.1: 0 with only version-0 ktri (no originatorInfo, no unprotectedAttrs),
    // 2 once a kari (version 3) is present.
    let version = [0x02, 0x01, if all_ktri { 0x00 } else { 0x02 }];
    let env_len = version.len() + recipient_infos.len() + eci_hdr.len() + eci_len;
    let env_hdr = header(0x30, env_len);
    let explicit_len = env_hdr.len() + env_len;
    let explicit_hdr = header(0xA0, explicit_len);
    let ci_len = oid_env.len() + explicit_hdr.len() + explicit_len;
    let ci_hdr = header(0x30, ci_len);
    let mut out = Vec::with_capacity(ci_hdr.len() + ci_len);
    for piece in [
        &ci_hdr[..],
        &oid_env,
        &explicit_hdr,
        &env_hdr,
        &version,
        &recipient_infos,
        &eci_hdr,
        &oid_data,
        &content_alg,
        &ct_hdr,
        &ciphertext,
    ] {
        out.extend_from_slice(piece);
    }
    Ok(out)
}

/// `[1] KeyAgreeRecipientInfo` for a P-256 recipient (RFC 5753 3.1.1, ephemeral-static).
fn kari(recipient: &p256::PublicKey, issuer_and_serial: &[u8], cek: &[u8; 32]) -> Vec<u8> {
    let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
    let eph_point = eph.public_key().to_encoded_point(false);
    let shared = eph.diffie_hellman(recipient);
    let wrap_alg = tlv(0x30, &tlv(0x06, OID_AES256_WRAP));
    // ECC-CMS-SharedInfo { keyInfo, suppPubInfo [2] key length in bits }.
    let shared_info = tlv(
        0x30,
        &cat(&[&wrap_alg, &tlv(0xA2, &tlv(0x04, &256u32.to_be_bytes()))]),
    );
    // ANSI X9.63 KDF, SHA-256, one block = 32 bytes = the AES-256 KEK.
    let mut h = Sha256::new();
    h.update(shared.raw_secret_bytes());
    h.update(1u32.to_be_bytes());
    h.update(&shared_info);
    let kek: [u8; 32] = h.finalize().into();
    let wrapped = aes_key_wrap(&kek, cek);
    let mut bits = vec![0u8];
    bits.extend_from_slice(eph_point.as_bytes());
    // originator [0] EXPLICIT originatorKey [1] IMPLICIT { id-ecPublicKey (no params), point }
    let originator = tlv(
        0xA0,
        &tlv(
            0xA1,
            &cat(&[&tlv(0x30, &tlv(0x06, OID_EC_PUBLIC_KEY)), &tlv(0x03, &bits)]),
        ),
    );
    let key_enc_alg = tlv(0x30, &cat(&[&tlv(0x06, OID_ECDH_SHA256_KDF), &wrap_alg]));
    let rek = tlv(
        0x30,
        &tlv(0x30, &cat(&[issuer_and_serial, &tlv(0x04, &wrapped)])),
    );
    tlv(
        0xA1,
        &cat(&[&[0x02, 0x01, 0x03], &originator, &key_enc_alg, &rek]),
    )
}

/// AES key wrap (RFC 3394) of a 256-bit key with a 256-bit KEK.
fn aes_key_wrap(kek: &[u8; 32], key: &[u8; 32]) -> Vec<u8> {
    let cipher = Aes256::new(kek.into());
    let mut a = [0xA6u8; 8];
    let mut r = [[0u8; 8]; 4];
    for (i, chunk) in key.chunks_exact(8).enumerate() {
        r[i].copy_from_slice(chunk);
    }
    for j in 0..6u64 {
        for (i, ri) in r.iter_mut().enumerate() {
            let mut block = aes::Block::default();
            block[..8].copy_from_slice(&a);
            block[8..].copy_from_slice(ri);
            cipher.encrypt_block(&mut block);
            let t = 4 * j + i as u64 + 1;
            a.copy_from_slice(&block[..8]);
            for (x, y) in a.iter_mut().zip(t.to_be_bytes()) {
                *x ^= y;
            }
            ri.copy_from_slice(&block[8..]);
        }
    }
    let mut out = a.to_vec();
    for ri in r {
        out.extend_from_slice(&ri);
    }
    out
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
    let mut out = header(tag, content.len());
    out.extend_from_slice(content);
    out
}

/// DER tag and definite length.
fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let n = bytes.len() - skip;
        out.push(0x80 | n as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
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
    fn key_wrap_matches_rfc3394_vector() {
        // RFC 3394 4.6: 256-bit key data with a 256-bit KEK.
        let kek: [u8; 32] = core::array::from_fn(|i| i as u8);
        let data: [u8; 32] = [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD,
            0xEE, 0xFF, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
            0x0C, 0x0D, 0x0E, 0x0F,
        ];
        let want = [
            0x28, 0xC9, 0xF4, 0x04, 0xC4, 0xB8, 0x10, 0xF4, 0xCB, 0xCC, 0xB3, 0x5C, 0xFB, 0x87,
            0xF8, 0x26, 0x3F, 0x57, 0x86, 0xE2, 0xD8, 0x0E, 0xD3, 0x26, 0xCB, 0xC7, 0xF0, 0xE7,
            0x1A, 0x99, 0xF4, 0x3B, 0xFB, 0x98, 0x8B, 0x9B, 0x7A, 0x02, 0xDD, 0x21,
        ];
        assert_eq!(aes_key_wrap(&kek, &data), want);
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
