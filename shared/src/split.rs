//! Where to split a partition: the split point chosen from the partition's real key
//! distribution, and the check of a split point an operator gives.
//!
//! A split point `p` of the inclusive range `[low, high]` is the first hash of the right
//! child: the children are `[low, p - 1]` and `[p, high]` (in half-open terms `[low, p)`
//! and `[p, high + 1)`). It is valid when `low < p <= high`, so both children cover at
//! least one hash; a range of a single hash cannot be split.
//!
//! The chosen point balances the *keys*, not the key space: hashes are uniform only
//! over many distinct keys, and a partition that is hot or large because of a few
//! heavy partition keys (many items under one key share its hash) must be cut between
//! them, not in the middle of its range.

#[cfg(test)]
mod tests;

use crate::model::KeyRange;

/// Why a split point is not usable for a range. Checking never changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitPointError {
    /// The range holds a single hash value: no point leaves both children non-empty.
    #[error("range [{low}, {high}] holds a single hash and cannot be split")]
    RangeTooNarrow {
        /// Lowest hash of the range.
        low: u64,
        /// Highest hash of the range.
        high: u64,
    },
    /// The point is the range's first hash: the left child would be empty.
    #[error("split point {point} is the first hash of the range: the left child would be empty")]
    AtRangeStart {
        /// The rejected point.
        point: u64,
    },
    /// The point lies outside the range.
    #[error("split point {point} is outside the range [{low}, {high}]")]
    OutsideRange {
        /// The rejected point.
        point: u64,
        /// Lowest hash of the range.
        low: u64,
        /// Highest hash of the range.
        high: u64,
    },
}

/// Checks that `point` splits `range` into two non-empty children (`low < point <= high`).
pub fn validate_split_point(range: &KeyRange, point: u64) -> Result<(), SplitPointError> {
    if range.low >= range.high {
        return Err(SplitPointError::RangeTooNarrow {
            low: range.low,
            high: range.high,
        });
    }
    if point == range.low {
        return Err(SplitPointError::AtRangeStart { point });
    }
    if !range.contains(point) {
        return Err(SplitPointError::OutsideRange {
            point,
            low: range.low,
            high: range.high,
        });
    }
    Ok(())
}

/// The two children of `range` split at `point`: `[low, point - 1]` and `[point, high]`.
pub fn split_range(range: &KeyRange, point: u64) -> Result<(KeyRange, KeyRange), SplitPointError> {
    validate_split_point(range, point)?;
    // `point > low >= 0`, so `point - 1` cannot underflow.
    let left = KeyRange {
        low: range.low,
        high: point - 1,
    };
    let right = KeyRange {
        low: point,
        high: range.high,
    };
    Ok((left, right))
}

/// The middle of `range` as a split point (the first hash of its upper half), or `None`
/// for a range of a single hash. For the full key space this is `2^63`, as
/// `even_ranges(2)` cuts it.
pub fn range_midpoint(range: &KeyRange) -> Option<u64> {
    // `high - low` cannot overflow, and the result stays within `(low, high]`.
    (range.low < range.high).then(|| range.low + (range.high - range.low) / 2 + 1)
}

/// The split point that best balances the hashed keys of a partition (in any order,
/// duplicates counted once each, hashes outside `range` ignored): the cut between two
/// adjacent distinct hashes that minimises the difference between the keys on either
/// side, placed halfway between them so that keys written later divide evenly too.
///
/// With fewer than two distinct in-range hashes no cut separates keys, so the range
/// midpoint is returned; `None` only when the range holds a single hash. The result
/// always passes `validate_split_point`. Ties go to the lowest point (deterministic).
pub fn choose_split_point(range: &KeyRange, hashed_keys: &[u64]) -> Option<u64> {
    let midpoint = range_midpoint(range)?;
    let mut keys: Vec<u64> = hashed_keys
        .iter()
        .copied()
        .filter(|h| range.contains(*h))
        .collect();
    keys.sort_unstable();
    let total = keys.len();
    // Best cut so far: (imbalance, last hash of the left side, first of the right side).
    let mut best: Option<(usize, u64, u64)> = None;
    let mut left: usize = 0;
    for run in keys.chunk_by(|a, b| a == b) {
        let value = run[0];
        if left > 0 {
            let imbalance = left.abs_diff(total - left);
            if best.is_none_or(|(b, _, _)| imbalance < b) {
                // `left > 0`, so a smaller distinct hash came before this run.
                best = Some((imbalance, keys[left - 1], value));
            }
        }
        left += run.len();
    }
    Some(best.map_or(midpoint, |(_, below, above)| between(below, above)))
}

/// A point in `(below, above]` halfway between two distinct hashes (`below < above`).
fn between(below: u64, above: u64) -> u64 {
    below + (above - below) / 2 + 1
}
