//! ItemOperations multipart bodies (`application/vnd.ms-sync.multipart`, MS-ASCMD 2.2.1.10.1):
//! `u32 LE` part count, then `(offset u32 LE, length u32 LE)` per part, then the parts. Part 0
//! is the WBXML response; `Properties/Part N` in it points at raw part N.
//!
//! Parsing borrows the body (no copy) and checks every range before it is used.

use crate::error::EasError;

/// Content type of a multipart ItemOperations response.
pub const CONTENT_TYPE_MULTIPART: &str = "application/vnd.ms-sync.multipart";

/// A parsed multipart body: the parts are slices of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart<'a> {
    parts: Vec<&'a [u8]>,
}

impl<'a> Multipart<'a> {
    /// Parse and bounds-check. Parts must lie after the header (count + table) and inside the
    /// body; they may share bytes (nothing forbids it) and bytes may lie between them.
    pub fn parse(body: &'a [u8]) -> Result<Self, EasError> {
        let count = read_u32(body, 0, "part count")?;
        if count == 0 {
            return Err(EasError::MultipartNoParts { count });
        }
        // Check the table fits before allocating anything sized by `count`.
        let table_len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(8))
            .and_then(|t| t.checked_add(4));
        let header_len = match table_len {
            Some(h) if h <= body.len() => h,
            _ => {
                return Err(EasError::MultipartTruncated {
                    field: "part table",
                    offset: 4,
                    needed: table_len.unwrap_or(usize::MAX),
                    available: body.len(),
                });
            }
        };
        let mut parts = Vec::with_capacity(header_len / 8);
        for index in 0..header_len / 8 {
            let at = 4 + index * 8;
            let offset = read_u32(body, at, "part offset")?;
            let len = read_u32(body, at + 4, "part length")?;
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let end = start.checked_add(usize::try_from(len).unwrap_or(usize::MAX));
            let part = end
                .filter(|_| start >= header_len)
                .and_then(|end| body.get(start..end))
                .ok_or(EasError::MultipartPartOutOfBounds {
                    index,
                    offset,
                    len,
                    body_len: body.len(),
                })?;
            parts.push(part);
        }
        Ok(Self { parts })
    }

    /// Number of parts (at least 1).
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Always false: a parsed multipart body has at least one part.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Part `index`, if present.
    pub fn part(&self, index: usize) -> Option<&'a [u8]> {
        self.parts.get(index).copied()
    }

    /// Part 0, the WBXML ItemOperations response.
    pub fn wbxml(&self) -> &'a [u8] {
        self.parts.first().copied().unwrap_or_default()
    }

    pub fn parts(&self) -> &[&'a [u8]] {
        &self.parts
    }
}

/// Build a multipart body: parts laid out in order right after the table.
pub fn build(parts: &[&[u8]]) -> Result<Vec<u8>, EasError> {
    if parts.is_empty() {
        return Err(EasError::Build {
            what: "multipart body",
            reason: "no parts".into(),
        });
    }
    let header_len = parts
        .len()
        .checked_mul(8)
        .and_then(|t| t.checked_add(4))
        .ok_or(EasError::MultipartTooLarge { len: usize::MAX })?;
    let total = parts
        .iter()
        .try_fold(header_len, |acc, p| acc.checked_add(p.len()))
        .ok_or(EasError::MultipartTooLarge { len: usize::MAX })?;
    if u32::try_from(total).is_err() {
        return Err(EasError::MultipartTooLarge { len: total });
    }
    let to_u32 = |n: usize| u32::try_from(n).map_err(|_| EasError::MultipartTooLarge { len: n });
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&to_u32(parts.len())?.to_le_bytes());
    let mut offset = header_len;
    for p in parts {
        out.extend_from_slice(&to_u32(offset)?.to_le_bytes());
        out.extend_from_slice(&to_u32(p.len())?.to_le_bytes());
        offset += p.len();
    }
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(out)
}

fn read_u32(body: &[u8], at: usize, field: &'static str) -> Result<u32, EasError> {
    let bytes = at.checked_add(4).and_then(|end| body.get(at..end)).ok_or(
        EasError::MultipartTruncated {
            field,
            offset: at,
            needed: 4,
            available: body.len().saturating_sub(at),
        },
    )?;
    let mut a = [0u8; 4];
    a.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse() {
        let body = build(&[b"wbxml", b"", b"raw bytes"]).unwrap();
        assert_eq!(&body[..4], &3u32.to_le_bytes());
        assert_eq!(&body[4..8], &28u32.to_le_bytes());
        let m = Multipart::parse(&body).unwrap();
        assert_eq!(m.len(), 3);
        assert!(!m.is_empty());
        assert_eq!(m.wbxml(), b"wbxml");
        assert_eq!(m.part(1), Some(&b""[..]));
        assert_eq!(m.part(2), Some(&b"raw bytes"[..]));
        assert_eq!(m.part(3), None);
        assert_eq!(m.parts().len(), 3);
    }

    #[test]
    fn truncated_header_and_table() {
        assert_eq!(
            Multipart::parse(&[1, 0]),
            Err(EasError::MultipartTruncated {
                field: "part count",
                offset: 0,
                needed: 4,
                available: 2
            })
        );
        assert_eq!(
            Multipart::parse(&[0, 0, 0, 0]),
            Err(EasError::MultipartNoParts { count: 0 })
        );
        // Claims 2 parts but has room for one table entry.
        let mut b = 2u32.to_le_bytes().to_vec();
        b.extend_from_slice(&[0; 8]);
        assert!(matches!(
            Multipart::parse(&b),
            Err(EasError::MultipartTruncated {
                field: "part table",
                needed: 20,
                available: 12,
                ..
            })
        ));
        // A huge count does not allocate.
        let b = u32::MAX.to_le_bytes();
        assert!(matches!(
            Multipart::parse(&b),
            Err(EasError::MultipartTruncated { .. })
        ));
    }

    #[test]
    fn parts_out_of_bounds() {
        let good = build(&[b"abc"]).unwrap();
        // Length past the end.
        let mut b = good.clone();
        b[8..12].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(
            Multipart::parse(&b),
            Err(EasError::MultipartPartOutOfBounds {
                index: 0,
                offset: 12,
                len: 4,
                body_len: 15
            })
        );
        // Offset inside the header.
        let mut b = good.clone();
        b[4..8].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            Multipart::parse(&b),
            Err(EasError::MultipartPartOutOfBounds { index: 0, .. })
        ));
        // offset + len overflows u32 arithmetic territory.
        let mut b = good.clone();
        b[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Multipart::parse(&b),
            Err(EasError::MultipartPartOutOfBounds { .. })
        ));
    }

    #[test]
    fn build_rejects_empty() {
        assert!(matches!(build(&[]), Err(EasError::Build { .. })));
    }
}
