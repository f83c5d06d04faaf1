//! TCP framing: every message travels behind a 4-byte big-endian length that
//! counts itself. Datagram transports carry one message per datagram and use
//! none of this.

use crate::codes::{MAX_MSG_SIZE, REQUEST_HEADER_LEN};

/// Size of the length prefix in front of every TCP message.
pub const TCP_PREFIX_LEN: usize = 4;

/// Smallest frame whose length the original accepts (it closes the
/// connection on 8 or less).
pub const MIN_ACCEPTED_FRAME_LEN: usize = 9;

/// Smallest frame that holds a whole request header. Frames between
/// [`MIN_ACCEPTED_FRAME_LEN`] and this are broken requests: the original reads
/// stale bytes for the rest of the header (and can crash); we close the
/// connection and count them.
pub const MIN_REQUEST_FRAME_LEN: usize = TCP_PREFIX_LEN + REQUEST_HEADER_LEN;

/// Why a frame's length prefix cannot be trusted. The stream cannot be
/// re-synchronised after any of these, so the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Announced length above the limit.
    TooLong(u32),
    /// Announced length of 8 or less: not even the prefix plus a word.
    Empty(u32),
    /// Announced length of 9 to 11: shorter than a request header.
    ShorterThanHeader(u32),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong(n) => write!(f, "frame length {n} exceeds {MAX_MSG_SIZE}"),
            Self::Empty(n) => write!(f, "frame length {n} is too small"),
            Self::ShorterThanHeader(n) => {
                write!(f, "frame length {n} is shorter than a request header")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Looks at the start of a received byte stream (requests and replies alike:
/// both start with an 8-byte header). Returns `Ok(None)` when more
/// bytes are needed, `Ok(Some(total))` when a whole frame of `total` bytes
/// (prefix included) is available, and an error when the announced length
/// is out of range (`max` is the largest total length accepted).
///
/// The length is validated as soon as the prefix arrives, so a peer cannot
/// make us buffer an untrustworthy frame.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..TCP_PREFIX_LEN) else {
        return Ok(None);
    };
    let announced = u32::from_be_bytes(prefix.try_into().expect("4-byte slice"));
    let total = announced as usize;
    if total > max {
        return Err(FrameError::TooLong(announced));
    }
    if total < MIN_ACCEPTED_FRAME_LEN {
        return Err(FrameError::Empty(announced));
    }
    if total < MIN_REQUEST_FRAME_LEN {
        return Err(FrameError::ShorterThanHeader(announced));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Reserves room for a length prefix at the end of `out`; returns where the
/// frame starts, for [`end_frame`].
#[inline]
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; TCP_PREFIX_LEN]);
    start
}

/// Writes the length of the frame begun at `start` into its prefix.
#[inline]
pub fn end_frame(out: &mut [u8], start: usize) {
    let total = (out.len() - start) as u32;
    out[start..start + TCP_PREFIX_LEN].copy_from_slice(&total.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_prefix_needs_more() {
        assert_eq!(next_frame(&[0, 0, 0], MAX_MSG_SIZE), Ok(None));
    }

    #[test]
    fn incomplete_body_needs_more() {
        assert_eq!(next_frame(&[0, 0, 0, 12, 1, 2], MAX_MSG_SIZE), Ok(None));
    }

    #[test]
    fn complete_frame_reports_total_length() {
        let buf = [0, 0, 0, 12, 0x10, 0, 0, 1, 1, 6, 0, 0, 0xff];
        assert_eq!(next_frame(&buf, MAX_MSG_SIZE), Ok(Some(12)));
    }

    #[test]
    fn lengths_the_original_rejects_are_errors() {
        for len in [0u32, 4, 8] {
            let buf = len.to_be_bytes();
            assert_eq!(next_frame(&buf, MAX_MSG_SIZE), Err(FrameError::Empty(len)));
        }
        let buf = 65537u32.to_be_bytes();
        assert_eq!(
            next_frame(&buf, MAX_MSG_SIZE),
            Err(FrameError::TooLong(65537))
        );
        let buf = u32::MAX.to_be_bytes();
        assert!(matches!(
            next_frame(&buf, MAX_MSG_SIZE),
            Err(FrameError::TooLong(_))
        ));
    }

    #[test]
    fn frames_shorter_than_a_header_are_rejected_before_the_body_arrives() {
        for len in 9u32..=11 {
            let buf = len.to_be_bytes();
            assert_eq!(
                next_frame(&buf, MAX_MSG_SIZE),
                Err(FrameError::ShorterThanHeader(len))
            );
        }
    }

    #[test]
    fn largest_frame_is_accepted() {
        let mut buf = vec![0u8; MAX_MSG_SIZE];
        buf[..4].copy_from_slice(&(MAX_MSG_SIZE as u32).to_be_bytes());
        assert_eq!(next_frame(&buf, MAX_MSG_SIZE), Ok(Some(MAX_MSG_SIZE)));
    }

    #[test]
    fn begin_and_end_frame_write_a_self_counting_prefix() {
        let mut out = vec![9u8];
        let start = begin_frame(&mut out);
        out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        end_frame(&mut out, start);
        assert_eq!(&out[1..5], &[0, 0, 0, 12]);
    }
}
