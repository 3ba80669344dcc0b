//! WBXML wire format pieces EAS uses: header, global tokens, mb_u_int32.

use crate::Error;

/// The header every EAS body starts with: WBXML 1.3, public id 1, UTF-8, empty string table.
pub const EAS_HEADER: [u8; 4] = [0x03, 0x01, 0x6A, 0x00];

/// Global token: change the code page of the following tags.
pub const SWITCH_PAGE: u8 = 0x00;
/// Global token: end of the innermost open element.
pub const END: u8 = 0x01;
/// Global token: inline NUL-terminated string.
pub const STR_I: u8 = 0x03;
/// Global token: opaque data, mb_u_int32 length then bytes.
pub const OPAQUE: u8 = 0xC3;
/// Tag bit: the element has content (and so a matching END).
pub const HAS_CONTENT: u8 = 0x40;
/// Tag bit: the element has attributes (never in EAS).
pub const HAS_ATTRIBUTES: u8 = 0x80;
/// Mask of the tag identity within its code page.
pub const TOKEN_MASK: u8 = 0x3F;

/// Name of a global token EAS does not use, for error messages.
pub(crate) fn unsupported_token_name(b: u8) -> Option<&'static str> {
    Some(match b {
        0x02 => "ENTITY",
        0x04 => "LITERAL",
        0x40 => "EXT_I_0",
        0x41 => "EXT_I_1",
        0x42 => "EXT_I_2",
        0x43 => "PI",
        0x44 => "LITERAL_C",
        0x80 => "EXT_T_0",
        0x81 => "EXT_T_1",
        0x82 => "EXT_T_2",
        0x83 => "STR_T",
        0x84 => "LITERAL_A",
        0xC0 => "EXT_0",
        0xC1 => "EXT_1",
        0xC2 => "EXT_2",
        0xC4 => "LITERAL_AC",
        _ => return None,
    })
}

/// Reads an mb_u_int32 at `pos`; returns the value and the position after it.
pub(crate) fn read_mb_u32(input: &[u8], pos: usize) -> Result<(u32, usize), Error> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let at = pos + i;
        let Some(&b) = input.get(at) else {
            return Err(Error::Truncated {
                offset: at,
                what: "inside an mb_u_int32",
            });
        };
        if value > (u32::MAX >> 7) {
            return Err(Error::MultiByteInt { offset: pos });
        }
        value = (value << 7) | u32::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok((value, at + 1));
        }
    }
    Err(Error::MultiByteInt { offset: pos })
}

/// Appends `value` as an mb_u_int32 (shortest form).
pub(crate) fn write_mb_u32(out: &mut Vec<u8>, value: u32) {
    let mut tmp = [0u8; 5];
    let mut i = tmp.len();
    let mut v = value;
    loop {
        i -= 1;
        let cont = if i == tmp.len() - 1 { 0 } else { 0x80 };
        tmp[i] = (v & 0x7F) as u8 | cont;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mb_u32_round_trips_and_rejects_overlong() {
        for v in [0u32, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 5670, u32::MAX] {
            let mut out = Vec::new();
            write_mb_u32(&mut out, v);
            assert_eq!(read_mb_u32(&out, 0), Ok((v, out.len())));
        }
        let mut out = Vec::new();
        write_mb_u32(&mut out, 0x80);
        assert_eq!(out, [0x81, 0x00]);
        assert!(matches!(
            read_mb_u32(&[0x90, 0x80, 0x80, 0x80, 0x00], 0),
            Err(Error::MultiByteInt { .. })
        ));
        assert!(matches!(
            read_mb_u32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 0),
            Err(Error::MultiByteInt { .. })
        ));
        assert!(matches!(
            read_mb_u32(&[0x80], 0),
            Err(Error::Truncated { .. })
        ));
    }
}
