//! What the deterministic fuzz and random tests share (this file is also
//! included by the root package's `tests/libnmdb_parse_random.rs` and the
//! server's `nmdb/tests/random_requests.rs`).

#![allow(dead_code)]

/// How many times longer than the quick run to fuzz (`NMDB_FUZZ_SCALE`).
pub fn scale() -> usize {
    std::env::var("NMDB_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Reports how many cases a fuzz loop ran (seen with --nocapture).
pub fn report(what: &str, cases: usize) {
    println!("{what}: {cases} cases");
}

/// xorshift64*: small, fast, reproducible.
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed`, any value (xorshift must not start at 0).
    pub fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `p` times in a hundred.
    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    pub fn bytes_up_to(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.bytes(len)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
