//! INCR's text arithmetic, shared by the cache and the database queue.
//!
//! A value is a number when it ends in a NUL byte; it is read like C's
//! `strtoll(value, NULL, 10)` (leading white space, an optional sign, digits,
//! stopping at the first other byte, saturating at the 64-bit limits). The
//! increment wraps around. The result is written as `%23lld` plus NUL into
//! the first 24 bytes, growing a shorter value to exactly 24 bytes and
//! leaving any bytes after offset 24 of a longer one alone — byte for byte
//! what the original server stores.

/// Width of the formatted number, without its NUL.
const NUMBER_WIDTH: usize = 23;
/// Bytes INCR writes: the number and its NUL.
pub const INCR_TEXT_LEN: usize = NUMBER_WIDTH + 1;

/// The stored value is not a NUL-terminated number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotANumber;

/// Parses like `strtoll(text, NULL, 10)` up to the first NUL.
fn parse_number(value: &[u8]) -> i64 {
    let mut bytes = value.iter().copied().take_while(|&b| b != 0).peekable();
    while bytes
        .next_if(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))
        .is_some()
    {}
    let negative = match bytes.peek() {
        Some(b'-') => {
            bytes.next();
            true
        }
        Some(b'+') => {
            bytes.next();
            false
        }
        _ => false,
    };
    // Accumulate towards the sign so i64::MIN is reachable, saturating.
    let mut n: i64 = 0;
    for b in bytes.take_while(u8::is_ascii_digit) {
        let digit = i64::from(b - b'0');
        n = if negative {
            n.checked_mul(10)
                .and_then(|n| n.checked_sub(digit))
                .unwrap_or(i64::MIN)
        } else {
            n.checked_mul(10)
                .and_then(|n| n.checked_add(digit))
                .unwrap_or(i64::MAX)
        };
    }
    n
}

/// Applies INCR to `value` in place and returns the new number.
pub fn increment(value: &mut Vec<u8>, delta: i64) -> Result<i64, NotANumber> {
    if value.last() != Some(&0) {
        return Err(NotANumber);
    }
    let new = parse_number(value).wrapping_add(delta);
    if value.len() < INCR_TEXT_LEN {
        value.resize(INCR_TEXT_LEN, 0);
    }
    let text = format!("{new:>NUMBER_WIDTH$}");
    value[..NUMBER_WIDTH].copy_from_slice(text.as_bytes());
    value[NUMBER_WIDTH] = 0;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(v: &[u8], d: i64) -> Result<(i64, Vec<u8>), NotANumber> {
        let mut v = v.to_vec();
        increment(&mut v, d).map(|n| (n, v))
    }

    #[test]
    fn short_value_becomes_24_bytes_right_aligned() {
        let (n, v) = incr(b"41\0", 1).unwrap();
        assert_eq!(n, 42);
        assert_eq!(v, format!("{:>23}\0", 42).into_bytes());
        assert_eq!(v.len(), 24);
    }

    #[test]
    fn value_without_nul_is_not_a_number() {
        assert_eq!(incr(b"41", 1), Err(NotANumber));
        assert_eq!(incr(b"", 1), Err(NotANumber));
    }

    #[test]
    fn parsing_follows_strtoll() {
        assert_eq!(parse_number(b"  +17xyz\0"), 17);
        assert_eq!(parse_number(b"\t-5\0"), -5);
        assert_eq!(parse_number(b"0x10\0"), 0);
        assert_eq!(parse_number(b"abc\0"), 0);
        assert_eq!(parse_number(b"12\x0034"), 12);
        assert_eq!(parse_number(b"99999999999999999999\0"), i64::MAX);
        assert_eq!(parse_number(b"-99999999999999999999\0"), i64::MIN);
        assert_eq!(parse_number(b"-9223372036854775808\0"), i64::MIN);
    }

    #[test]
    fn increment_wraps_around() {
        let (n, _) = incr(b"9223372036854775807\0", 1).unwrap();
        assert_eq!(n, i64::MIN);
    }

    #[test]
    fn long_value_keeps_its_length_and_tail() {
        let mut v = b"5".to_vec();
        v.extend_from_slice(&[b'x'; 30]);
        v.push(0);
        let (n, out) = incr(&v, 1).unwrap();
        assert_eq!(n, 6);
        assert_eq!(out.len(), v.len());
        assert_eq!(&out[..24], format!("{:>23}\0", 6).as_bytes());
        assert_eq!(&out[24..], &v[24..]);
    }
}
