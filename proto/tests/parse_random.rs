//! Deterministic fuzzing of the parsers on stable Rust: valid messages with
//! random bit flips, truncations, extensions and size fields, and pure
//! noise. Whatever the bytes, parsing must not panic, and what it accepts
//! must re-encode to exactly the bytes it read; TCP frames cut anywhere
//! reassemble to exactly the messages sent.
//!
//! The test run is short. A long run scales every loop by
//! `NMDB_FUZZ_SCALE` (BENCHMARKS.md records one of over 10 million cases
//! per parser):
//!
//! ```sh
//! NMDB_FUZZ_SCALE=40 cargo test --release -p nmdb-proto --test parse_random -- --nocapture
//! ```

use nmdb_proto::frame::{next_frame, FrameError};
use nmdb_proto::request::{parse, ParseError};
use nmdb_proto::{Reply, Request, MAX_DATA_SIZE, MAX_MSG_SIZE};

mod common;

use common::{report, scale, Rng};

fn seed_messages(rng: &mut Rng) -> Vec<Vec<u8>> {
    let key = rng.bytes_up_to(40);
    let val = rng.bytes_up_to(300);
    let other = rng.bytes_up_to(30);
    let reqs = [
        Request::Get { key: &key },
        Request::Set {
            key: &key,
            value: &val,
        },
        Request::Del { key: &key },
        Request::Cas {
            key: &key,
            old: &other,
            new: &val,
        },
        Request::Incr {
            key: &key,
            delta: rng.next() as i64,
        },
        Request::Stats,
        Request::FirstKey,
        Request::NextKey { key: &key },
    ];
    reqs.iter()
        .map(|r| {
            let mut out = Vec::new();
            r.encode(rng.next() as u32, rng.next() as u16, &mut out);
            out
        })
        .collect()
}

fn mutate(rng: &mut Rng, msg: &mut Vec<u8>) {
    match rng.below(5) {
        0 if !msg.is_empty() => {
            let i = rng.below(msg.len());
            msg[i] ^= 1 << rng.below(8);
        }
        1 => msg.truncate(rng.below(msg.len() + 1)),
        2 => {
            let extra = rng.bytes_up_to(16);
            msg.extend_from_slice(&extra);
        }
        3 if msg.len() >= 12 => {
            // Overwrite a size field with something extreme.
            let at = 8 + 4 * rng.below(3.min((msg.len() - 8) / 4));
            let v: u32 = [
                0,
                1,
                0xffff_ffff,
                0x8000_0000,
                MAX_DATA_SIZE as u32 + 1,
                rng.next() as u32,
            ][rng.below(6)];
            msg[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        _ => {
            // The version nibble.
            if !msg.is_empty() {
                msg[0] = (msg[0] & 0x0f) | ((rng.below(16) as u8) << 4);
            }
        }
    }
}

fn check_parse(msg: &[u8]) {
    match parse(msg) {
        Ok((header, req)) => {
            // Accepted: it re-encodes to the bytes it was read from, and any
            // bytes after it are the ignored tail.
            let mut again = Vec::new();
            req.encode(header.id, header.flags, &mut again);
            assert!(again.len() <= msg.len());
            assert_eq!(&msg[..again.len()], &again[..], "re-encoding differs");
            if let Some(key) = req.key() {
                assert!(key.len() <= MAX_DATA_SIZE);
            }
        }
        Err(ParseError::TooShort) => assert!(msg.len() < 8),
        Err(_) => assert!(msg.len() >= 8),
    }
}

#[test]
fn mutated_requests_never_panic_and_accepted_ones_round_trip() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = 0;
    for _ in 0..20_000 * scale() {
        for mut msg in seed_messages(&mut rng) {
            check_parse(&msg);
            cases += 1;
            for _ in 0..1 + rng.below(4) {
                mutate(&mut rng, &mut msg);
                check_parse(&msg);
                cases += 1;
            }
        }
    }
    report("request parser, mutated", cases);
}

/// Pulls every whole frame out of `buf`, as the server's reader does;
/// returns the messages and whether the stream had to be closed.
fn take_frames(buf: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) -> bool {
    let mut used = 0;
    let closed = loop {
        match next_frame(&buf[used..], MAX_MSG_SIZE) {
            Ok(Some(total)) => {
                assert!(total >= 12 && used + total <= buf.len());
                out.push(buf[used + 4..used + total].to_vec());
                used += total;
            }
            Ok(None) => break false,
            Err(
                FrameError::ShorterThanHeader(_) | FrameError::TooLong(_) | FrameError::Empty(_),
            ) => break true,
        }
    };
    buf.drain(..used);
    closed
}

#[test]
fn frames_cut_anywhere_reassemble_to_the_messages_sent() {
    let mut rng = Rng(7);
    let mut cases = 0;
    for _ in 0..20_000 * scale() {
        let sent = seed_messages(&mut rng);
        let mut stream = Vec::new();
        for m in &sent {
            stream.extend_from_slice(&((m.len() + 4) as u32).to_be_bytes());
            stream.extend_from_slice(m);
        }
        // Delivered in pieces of random sizes, as reads return them.
        let (mut buf, mut got, mut at) = (Vec::new(), Vec::new(), 0);
        while at < stream.len() {
            let n = 1 + rng.below((stream.len() - at).min(300));
            buf.extend_from_slice(&stream[at..at + n]);
            at += n;
            assert!(
                !take_frames(&mut buf, &mut got),
                "a valid stream was closed"
            );
            cases += 1;
        }
        assert!(buf.is_empty());
        assert_eq!(got, sent);
    }
    report("tcp frame reassembly, valid streams cut anywhere", cases);
}

#[test]
fn noise_streams_are_framed_within_bounds_or_closed() {
    let mut rng = Rng(99);
    let mut cases = 0;
    for _ in 0..70_000 * scale() {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for _ in 0..4 {
            let piece = rng.bytes_up_to(40);
            buf.extend_from_slice(&piece);
            cases += 1;
            if take_frames(&mut buf, &mut got) {
                break;
            }
            assert!(buf.len() < MAX_MSG_SIZE);
        }
        for m in &got {
            check_parse(m);
        }
    }
    report("tcp frame reassembly, noise", cases);
}

#[test]
fn noise_never_panics_any_parser() {
    let mut rng = Rng(42);
    let cases = 250_000 * scale();
    for _ in 0..cases {
        let len = rng.below(64);
        let noise = rng.bytes(len);
        check_parse(&noise);
        if let Ok(reply) = Reply::parse(&noise) {
            let _ = (
                reply.data(),
                reply.error_code(),
                reply.incr_value(),
                reply.stats_bytes(),
            );
        }
        if let Ok(Some(total)) = next_frame(&noise, MAX_MSG_SIZE) {
            assert!((12..=noise.len()).contains(&total));
        }
    }
    report("request, reply and frame parsers, noise", cases);
}
