//! The short circuit's question (OAS-L2), answered as calls arrive: would the next call
//! make the call history end in `n` back-to-back copies of one block of calls?
//!
//! Asking it directly tries every block length, a step per earlier call, so the cost of
//! a call would grow with the engagement. [`RepetitionDetector`] keeps instead a few
//! *candidate* block lengths, and answers from those alone.
//!
//! Write `r_k` for the run of block length `k`: how many trailing positions `i` of the
//! history have `h[i] == h[i - k]`. The next call completes `n` copies of a block of
//! length `k` exactly when it extends that run to `(n - 1)·k`.
//!
//! * **No repetition is missed.** A block length `k` becomes a candidate once its run
//!   reaches `d_k = ⌊(n - 1)·k / 2⌋`, and stays one while the run goes on growing. A run
//!   grows by one per call, so before the call that would complete `n` copies, the run
//!   was at least `d_k` for the last `⌈(n - 1)·k / 2⌉` calls. A schedule tests the block
//!   lengths of each range `[2^j, 2^(j+1))` in turn, fast enough that every length of
//!   the range is tested within the shortest of those windows in the range (for `n = 2`
//!   two lengths per call, for `n = 3` one, for larger `n` one every few calls): `k` is
//!   a candidate by the time it matters. A history restored from storage is replayed
//!   call by call, so the schedule holds for it too.
//! * **The candidates are few.** For `n ≥ 3` a candidate's run covers at least a square
//!   (`r_k ≥ k`). A history the short circuit has kept contains no `n`-th power, so its
//!   candidates are primitively rooted square suffixes, and there are at most
//!   logarithmically many of those (the three-squares lemma of Crochemore and Rytter).
//!   For `n = 2` the candidates are the suffixes of exponent 3/2 or more, which stayed
//!   just as few in every history measured (see the tests and `docs/BENCHMARKS.md`).
//!   Any history is answered correctly; a history the short circuit did not keep (one
//!   restored with a different limit, say) may only make the answer slower.
//! * **The answer is exact.** Blocks are compared by polynomial hashes modulo the
//!   Mersenne prime `2^61 - 1`, with a base drawn at random per detector. Equal blocks
//!   always hash equal, so no candidate is missed; a repetition the hashes report is
//!   confirmed call by call before it is believed, so a collision can never refuse a
//!   call. Collisions could only add candidates, and the random base keeps a model from
//!   steering the history towards them.
//!
//! Each call thus costs at most two hash comparisons per power of two up to the history
//! length, plus one per candidate: logarithmic, where the direct question is linear.

use std::hash::{BuildHasher, Hasher};

/// The Mersenne prime `2^61 - 1`, the hashes' modulus.
const MODULUS: u64 = (1 << 61) - 1;

/// `a · b mod 2^61 - 1`, for `a, b < 2^61 - 1`.
fn multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    // `product < 2^122`, so both halves fit in 61 bits and their sum in 62.
    let low = u64::try_from(product & u128::from(MODULUS)).unwrap_or(0);
    let high = u64::try_from(product >> 61).unwrap_or(0);
    reduce(low + high)
}

/// `value mod 2^61 - 1`, for `value < 2^62`.
fn reduce(value: u64) -> u64 {
    let folded = (value & MODULUS) + (value >> 61);
    if folded >= MODULUS {
        folded - MODULUS
    } else {
        folded
    }
}

/// A call's capability as a hash digit: never zero, so that leading calls count.
fn digit(symbol: u32) -> u64 {
    u64::from(symbol) + 1
}

/// The online answer to OAS-L2's question for one limit `n` (see the module docs). It
/// holds hashes of the history, not the history: every method takes the calls so far
/// (`history._list` as capability indices), which must be the ones it was given.
#[derive(Debug)]
pub struct RepetitionDetector {
    /// The short circuit's limit, at least 2.
    limit: usize,
    /// The hash base, in `[2, 2^61 - 2]`.
    base: u64,
    /// `prefixes[i]`: the hash of the first `i` calls.
    prefixes: Vec<u64>,
    /// `powers[i]`: `base^i`.
    powers: Vec<u64>,
    /// The block lengths whose runs may complete `limit` copies; a superset of those
    /// whose run is at least `⌊(limit - 1)·k / 2⌋`.
    candidates: Vec<usize>,
}

impl Clone for RepetitionDetector {
    fn clone(&self) -> Self {
        RepetitionDetector {
            limit: self.limit,
            base: self.base,
            prefixes: self.prefixes.clone(),
            powers: self.powers.clone(),
            candidates: self.candidates.clone(),
        }
    }

    /// Copies into the buffers `self` already has, so that copying a long history
    /// again (an engagement's snapshot, a benchmark's fresh start) does not allocate.
    fn clone_from(&mut self, source: &Self) {
        self.limit = source.limit;
        self.base = source.base;
        self.prefixes.clone_from(&source.prefixes);
        self.powers.clone_from(&source.powers);
        self.candidates.clone_from(&source.candidates);
    }
}

impl RepetitionDetector {
    /// A detector for the limit `n`, over the calls so far. Returns `None` for `n < 2`,
    /// whose answers need no state: with `n = 0` there is no short circuit, and with
    /// `n = 1` every call is a single copy of itself.
    pub fn new(n: u64, calls: &[u32]) -> Option<Self> {
        let limit = usize::try_from(n).ok().filter(|limit| *limit >= 2)?;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let mut detector = RepetitionDetector {
            limit,
            base: 2 + random % (MODULUS - 3),
            prefixes: Vec::with_capacity(calls.len() + 1),
            powers: Vec::with_capacity(calls.len() + 1),
            candidates: Vec::new(),
        };
        detector.prefixes.push(0);
        detector.powers.push(1);
        for (length, symbol) in calls.iter().enumerate() {
            let earlier = calls.get(..length).unwrap_or_default();
            detector.push(earlier, *symbol);
        }
        Some(detector)
    }

    /// The limit this detector answers for.
    pub fn limit(&self) -> u64 {
        u64::try_from(self.limit).unwrap_or(u64::MAX)
    }

    /// How many block lengths are being followed (for tests and measurements).
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// Makes room for `additional` more calls.
    pub fn reserve(&mut self, additional: usize) {
        self.prefixes.reserve(additional);
        self.powers.reserve(additional);
    }

    /// Whether calls `start..end` repeat with period `period`, by their hashes: whether
    /// `start..end - period` and `start + period..end` hash equal. Written with the
    /// prefix hashes `P`, that is `P[end - period] - P[end] = (P[start] - P[start +
    /// period]) · base^(end - period - start)`, one multiplication. `end_prefix` is
    /// `P[end]`, given by the caller since `end` may be one past the calls kept (the
    /// call being asked about).
    fn hashes_repeat(&self, start: usize, end: usize, period: usize, end_prefix: u64) -> bool {
        let prefixes = (
            self.prefixes.get(start),
            self.prefixes.get(start + period),
            self.prefixes.get(end - period),
        );
        // Out of range cannot happen for calls the detector was given; should it, the
        // hashes say "maybe", which only adds a candidate or asks for the exact
        // comparison, never lets a repetition through.
        let (Some(first), Some(shifted), Some(before_end)) = prefixes else {
            return true;
        };
        let Some(power) = self.powers.get(end - period - start) else {
            return true;
        };
        reduce(*before_end + MODULUS - end_prefix)
            == multiply(reduce(*first + MODULUS - *shifted), *power)
    }

    /// Whether calling `next` after `calls` would make the history end in `limit`
    /// back-to-back copies of one block.
    pub fn would_repeat(&self, calls: &[u32], next: u32) -> bool {
        let length = calls.len() + 1;
        let (Some(last), true) = (
            self.prefixes.get(calls.len()),
            self.prefixes.len() == length,
        ) else {
            // The detector was built over other calls; refuse rather than guess.
            return true;
        };
        let with_next = reduce(multiply(*last, self.base) + digit(next));
        self.candidates.iter().any(|&period| {
            let Some(span) = period
                .checked_mul(self.limit)
                .filter(|span| *span <= length)
            else {
                return false;
            };
            let start = length - span;
            self.hashes_repeat(start, length, period, with_next)
                && repeats_exactly(calls, next, start, period)
        })
    }

    /// Takes `symbol` as the call after `calls`: updates the hashes, drops the
    /// candidates whose run it breaks and tests this call's scheduled block lengths.
    pub fn push(&mut self, calls: &[u32], symbol: u32) {
        let before = calls.len();
        let last_prefix = self.prefixes.last().copied().unwrap_or(0);
        let last_power = self.powers.last().copied().unwrap_or(1);
        self.prefixes
            .push(reduce(multiply(last_prefix, self.base) + digit(symbol)));
        self.powers.push(multiply(last_power, self.base));
        self.candidates.retain(|&period| {
            before
                .checked_sub(period)
                .and_then(|index| calls.get(index))
                .is_some_and(|earlier| *earlier == symbol)
        });
        let length = before + 1;
        let mut range_start = 1usize;
        while range_start <= length {
            // Every length of the range must be tested within the shortest window of
            // the range, `⌈(limit - 1)·range_start / 2⌉` calls: with a window as long
            // as the range or longer, one length every `stride` calls; with a shorter
            // one (`n = 2` only), `per_call` lengths on every call.
            let window = (self.limit - 1).saturating_mul(range_start).div_ceil(2);
            let stride = (window / range_start).max(1);
            let per_call = range_start.div_ceil(window.max(1));
            if length.is_multiple_of(stride) {
                let turn = (length / stride).wrapping_mul(per_call);
                for offset in 0..per_call {
                    let period = range_start + turn.wrapping_add(offset) % range_start;
                    self.consider(length, period);
                }
            }
            let Some(next_start) = range_start.checked_mul(2) else {
                break;
            };
            range_start = next_start;
        }
    }

    /// Makes `period` a candidate if the history (of `length` calls) ends in a run of
    /// it at least `⌊(limit - 1)·period / 2⌋` long.
    fn consider(&mut self, length: usize, period: usize) {
        let threshold = (self.limit - 1).saturating_mul(period) / 2;
        let Some(start) = length
            .checked_sub(period)
            .and_then(|rest| rest.checked_sub(threshold))
        else {
            return;
        };
        let Some(end_prefix) = self.prefixes.get(length).copied() else {
            return;
        };
        if !self.candidates.contains(&period)
            && self.hashes_repeat(start, length, period, end_prefix)
        {
            self.candidates.push(period);
        }
    }
}

/// Whether `calls` followed by `next` repeat with `period` from `start` to the end,
/// compared call by call.
fn repeats_exactly(calls: &[u32], next: u32, start: usize, period: usize) -> bool {
    let at = |index: usize| calls.get(index).copied().unwrap_or(next);
    (start..=calls.len().saturating_sub(period)).all(|index| at(index) == at(index + period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::would_short_circuit;

    /// Drives a detector and the plain definition side by side over `proposed` calls,
    /// keeping the calls the definition allows, and returns the calls kept.
    fn agree(n: u64, proposed: impl IntoIterator<Item = u32>) -> (Vec<u32>, usize) {
        let mut calls = Vec::new();
        let mut detector = RepetitionDetector::new(n, &calls).unwrap();
        let mut most_candidates = 0;
        for next in proposed {
            let expected = would_short_circuit(&calls, next, n);
            assert_eq!(
                detector.would_repeat(&calls, next),
                expected,
                "n={n} calls={calls:?} next={next}"
            );
            if !expected {
                detector.push(&calls, next);
                calls.push(next);
                most_candidates = most_candidates.max(detector.candidate_count());
            }
        }
        (calls, most_candidates)
    }

    fn xorshift(state: &mut u32) -> u32 {
        *state ^= *state << 13;
        *state ^= *state >> 17;
        *state ^= *state << 5;
        *state
    }

    #[test]
    fn oas_l2_the_three_example_sequences() {
        let refused = |sequence: &[u32]| {
            let mut calls = Vec::new();
            let mut detector = RepetitionDetector::new(3, &[]).unwrap();
            sequence
                .iter()
                .map(|next| {
                    let refused = detector.would_repeat(&calls, *next);
                    if !refused {
                        detector.push(&calls, *next);
                        calls.push(*next);
                    }
                    refused
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(refused(&[1, 1, 1]), [false, false, true]);
        assert_eq!(
            refused(&[1, 2, 1, 2, 1, 2]),
            [false, false, false, false, false, true]
        );
        assert_eq!(refused(&[1, 2, 1, 2, 1]), [false; 5]);
    }

    #[test]
    fn matches_the_definition_on_random_calls() {
        let mut state = 0x9e37_79b9_u32;
        for n in 2..=5u64 {
            for alphabet in [1u32, 2, 3, 5] {
                let proposed: Vec<u32> = (0..1_500)
                    .map(|_| xorshift(&mut state) % alphabet)
                    .collect();
                agree(n, proposed);
            }
        }
    }

    #[test]
    fn matches_the_definition_when_blocks_nearly_repeat() {
        // Long blocks proposed over and over with a rare change: the runs that the
        // schedule must catch in time are long here.
        let mut state = 0x2545_f491_u32;
        for n in 2..=4u64 {
            // A block with no square in it, so that even `n = 2` keeps the first copy.
            let block = square_free(37);
            let proposed = (0..3_000).map(|index| {
                let symbol = block[index % block.len()];
                if xorshift(&mut state).is_multiple_of(97) {
                    (symbol + 1) % 3
                } else {
                    symbol
                }
            });
            let (kept, _) = agree(n, proposed);
            assert!(
                kept.len() > block.len(),
                "n={n}: only {} calls kept",
                kept.len()
            );
        }
    }

    #[test]
    fn a_restored_history_is_answered_like_a_live_one() {
        let mut state = 0x1234_5678_u32;
        let proposed: Vec<u32> = (0..800).map(|_| xorshift(&mut state) % 3).collect();
        let (kept, _) = agree(3, proposed);
        let restored = RepetitionDetector::new(3, &kept).unwrap();
        for next in 0..3 {
            assert_eq!(
                restored.would_repeat(&kept, next),
                would_short_circuit(&kept, next, 3)
            );
        }
        // A history kept under no short circuit at all: slower, still exact.
        let unkept: Vec<u32> = (0..300u32)
            .map(|index| u32::from(index.is_multiple_of(7)))
            .collect();
        let detector = RepetitionDetector::new(3, &unkept).unwrap();
        for next in 0..2 {
            assert_eq!(
                detector.would_repeat(&unkept, next),
                would_short_circuit(&unkept, next, 3)
            );
        }
    }

    /// The ternary Thue–Morse word (a → abc, b → ac, c → b), which has no square.
    pub(crate) fn square_free(length: usize) -> Vec<u32> {
        let mut word = vec![0u32];
        while word.len() < length {
            word = word
                .iter()
                .flat_map(|symbol| match symbol {
                    0 => vec![0, 1, 2],
                    1 => vec![0, 2],
                    _ => vec![1],
                })
                .collect();
        }
        word.truncate(length);
        word
    }

    #[test]
    fn the_candidates_stay_few_on_long_kept_histories() {
        // Thue–Morse never repeats a block three times, and the ternary Thue–Morse word
        // never repeats one twice: the longest histories the short circuit keeps.
        let thue_morse = (0..4_000u32).map(|index| index.count_ones() % 2);
        let (kept, most) = agree(3, thue_morse);
        assert_eq!(kept.len(), 4_000);
        assert!(most <= 24, "{most} candidates");
        let (kept, most) = agree(2, square_free(4_000));
        assert_eq!(kept.len(), 4_000);
        assert!(most <= 24, "{most} candidates");
    }

    #[test]
    fn a_copy_into_another_detector_answers_like_the_original() {
        let calls = square_free(500);
        let original = RepetitionDetector::new(2, &calls).unwrap();
        let mut copy = RepetitionDetector::new(4, &[0, 0, 0]).unwrap();
        copy.clone_from(&original);
        assert_eq!(copy.limit(), 2);
        assert_eq!(copy.candidate_count(), original.candidate_count());
        for next in 0..3 {
            assert_eq!(
                copy.would_repeat(&calls, next),
                would_short_circuit(&calls, next, 2)
            );
        }
    }

    #[test]
    fn limits_below_two_need_no_detector() {
        assert!(RepetitionDetector::new(0, &[]).is_none());
        assert!(RepetitionDetector::new(1, &[1, 2]).is_none());
        assert_eq!(RepetitionDetector::new(4, &[]).unwrap().limit(), 4);
    }

    #[test]
    fn hashes_reduce_modulo_the_mersenne_prime() {
        assert_eq!(multiply(MODULUS - 1, MODULUS - 1), 1);
        assert_eq!(multiply(1 << 60, 2), 1);
        assert_eq!(reduce(MODULUS), 0);
        assert_eq!(reduce(2 * MODULUS), 0);
    }
}
