//! Which server a key goes to. Programs built with the original library
//! share servers with programs built with this one, so both must pick the
//! same server for the same key, bit for bit.
//!
//! The original hashed keys with a 16-bit ones'-complement checksum whose
//! read position advances one byte per 16-bit word (while the count drops by
//! two): only the first `len / 2 + 1` bytes of a key matter. That quirk is the
//! contract now; `tests/libnmdb_placement.rs` checks it against the
//! placements recorded from the original.

/// The original's key checksum (see the module comment).
pub fn checksum(key: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    let words = key.len() / 2;
    for i in 0..words {
        sum = sum.wrapping_add(u32::from(u16::from_le_bytes([key[i], key[i + 1]])));
    }
    if key.len() % 2 == 1 {
        sum = sum.wrapping_add(u32::from(key[words]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !sum
}

/// Index of the server for `key` among `nservers` servers kept in the
/// library's order; `None` when there are none.
pub fn pick(key: &[u8], nservers: usize) -> Option<usize> {
    (nservers != 0).then(|| checksum(key) as usize % nservers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_key_hashes_to_all_ones() {
        assert_eq!(checksum(b""), 0xffff_ffff);
    }

    #[test]
    fn window_advances_one_byte_per_word() {
        // "abcd": words at offsets 0 and 1 ("ab", "bc"), not 0 and 2.
        let expected = !(0x6261u32 + 0x6362);
        assert_eq!(checksum(b"abcd"), expected);
        // Odd length: the single byte is at offset len / 2.
        assert_eq!(checksum(b"abc"), !(0x6261u32 + 0x62));
    }

    #[test]
    fn only_the_first_half_of_a_key_matters() {
        assert_eq!(checksum(b"bar"), checksum(b"baz"));
        assert_eq!(checksum(b"user:1"), checksum(b"user:2"));
        assert_ne!(checksum(b"user:1"), checksum(b"uxer:1"));
    }

    #[test]
    fn carries_are_folded_back_into_sixteen_bits() {
        let key = [0xff; 8];
        // 4 words of 0xffff = 0x3fffc -> 0xfffc + 3 = 0xffff.
        assert_eq!(checksum(&key), !0xffffu32);
        assert_eq!(checksum(&key) >> 16, 0xffff);
    }

    #[test]
    fn no_servers_means_no_pick() {
        assert_eq!(pick(b"k", 0), None);
        assert_eq!(pick(b"", 3), Some(0xffff_ffff % 3));
    }
}
