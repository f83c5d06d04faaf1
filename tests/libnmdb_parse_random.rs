//! Deterministic fuzzing of the library's side: whatever bytes come back as
//! a reply, reading it for any request gives an answer or an error, never a
//! panic, and a value or key handed back lies within the reply.
//!
//! `NMDB_FUZZ_SCALE` lengthens the run, as for the protocol crate's
//! `parse_random` (see BENCHMARKS.md).

use nmdb::answer;
use nmdb_proto::{Reply, ReplyCode, REPLY_HEADER_LEN};

#[path = "../proto/tests/common/mod.rs"]
mod common;

use common::{report, scale, Rng};

/// A reply that is nearly right: a real code, a size field, a payload, each
/// possibly wrong.
fn near_reply(rng: &mut Rng) -> Vec<u8> {
    let mut r = (rng.next() as u32).to_be_bytes().to_vec();
    let code = if rng.below(4) == 0 {
        rng.next() as u32
    } else {
        0x800 + rng.below(7) as u32
    };
    r.extend_from_slice(&code.to_be_bytes());
    let payload = rng.below(80);
    let announced = match rng.below(4) {
        0 => payload as u32,
        1 => rng.next() as u32,
        2 => u32::MAX,
        _ => payload.saturating_sub(rng.below(5)) as u32,
    };
    if rng.below(5) != 0 {
        r.extend_from_slice(&announced.to_be_bytes());
    }
    r.extend((0..payload).map(|_| rng.next() as u8));
    r.truncate(rng.below(r.len() + 8).max(rng.below(REPLY_HEADER_LEN + 1)));
    r
}

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

#[test]
fn any_reply_bytes_give_an_answer_or_an_error_for_every_request() {
    let mut rng = Rng(0x51ed_2701);
    let cases = 300_000 * scale();
    for _ in 0..cases {
        let bytes = near_reply(&mut rng);
        let Ok(reply) = Reply::parse(&bytes) else {
            assert!(bytes.len() < REPLY_HEADER_LEN);
            continue;
        };
        if let Ok(Some(v)) = answer::value(&reply) {
            assert!(within(&bytes, v));
            assert!(matches!(
                reply.reply_code(),
                Some(ReplyCode::CacheHit | ReplyCode::Ok)
            ));
        }
        if let Ok(Some(k)) = answer::key(&reply) {
            assert!(within(&bytes, k));
        }
        if let Ok(c) = answer::counters(&reply) {
            assert!(within(&bytes, c));
        }
        let _ = (
            answer::stored(&reply),
            answer::deleted(&reply),
            answer::cas(&reply),
            answer::incr(&reply),
        );
    }
    report("library reply reading", cases);
}
