//! Seeded randomness that is reproducible bit for bit, whatever version of an external crate is
//! in the lock file: SplitMix64 as a stream ([`SplitMix64`], for training) and as a hash
//! ([`splitmix`], [`hash_str`], for seeded choices such as a session's cut point or a split).

/// The SplitMix64 finaliser of `x` plus the golden-ratio increment: one step of the stream, as a
/// pure function.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded hash of a string: [`splitmix`] folded over its bytes.
pub fn hash_str(seed: u64, s: &str) -> u64 {
    s.bytes().fold(splitmix(seed), |h, b| splitmix(h ^ u64::from(b)))
}

/// The SplitMix64 generator.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let out = splitmix(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in `[0, n)`; `n` must be positive. Multiply-shift (Lemire) without rejection: the
    /// bias is below `n / 2^64`, far below anything training can notice.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_values_in_range() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.below(13);
            assert!(x < 13);
            assert_eq!(x, b.below(13));
            let f = a.unit_f32();
            assert!((0.0..1.0).contains(&f));
            b.unit_f32();
        }
        assert_ne!(SplitMix64::new(1).next_u64(), SplitMix64::new(2).next_u64());
    }

    #[test]
    fn the_stream_is_the_hash_of_its_counter() {
        let mut r = SplitMix64::new(11);
        let mut counter = 11u64;
        for _ in 0..100 {
            assert_eq!(r.next_u64(), splitmix(counter));
            counter = counter.wrapping_add(0x9E37_79B9_7F4A_7C15);
        }
        assert_ne!(hash_str(1, "ab"), hash_str(1, "ba"));
    }

    #[test]
    fn below_covers_the_range_evenly() {
        let mut r = SplitMix64::new(3);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[r.below(10)] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
