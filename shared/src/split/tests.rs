//! Unit and property tests of the split-point choice.

use proptest::prelude::*;

use super::*;

fn range(low: u64, high: u64) -> KeyRange {
    KeyRange { low, high }
}

/// Keys on each side of `point`, among those in `r`.
fn sides(r: &KeyRange, keys: &[u64], point: u64) -> (usize, usize) {
    let inside = keys.iter().filter(|k| r.contains(**k));
    let left = inside.clone().filter(|k| **k < point).count();
    (left, inside.count() - left)
}

#[test]
fn median_of_the_data_not_of_the_range() {
    // All keys in the lowest thousandth of the space: the midpoint would leave the
    // right child empty.
    let keys: Vec<u64> = (1..=100).map(|i| i * 1_000).collect();
    let p = choose_split_point(&KeyRange::FULL, &keys).unwrap();
    assert_eq!(sides(&KeyRange::FULL, &keys, p), (50, 50));
    assert!(
        p > 50_000 && p <= 51_000,
        "between the 50th and 51st key: {p}"
    );
}

#[test]
fn point_lies_halfway_between_the_two_middle_keys() {
    assert_eq!(choose_split_point(&range(0, 100), &[10, 20]), Some(16));
    // Adjacent hashes: the only separating point is the upper one.
    assert_eq!(choose_split_point(&range(0, 100), &[10, 11]), Some(11));
    assert_eq!(
        choose_split_point(&range(0, u64::MAX), &[u64::MAX - 1, u64::MAX]),
        Some(u64::MAX)
    );
}

#[test]
fn input_order_does_not_matter() {
    let keys = [900, 5, 70, 3000, 41, 41, 8];
    let mut sorted = keys;
    sorted.sort_unstable();
    let r = range(0, 10_000);
    assert_eq!(
        choose_split_point(&r, &keys),
        choose_split_point(&r, &sorted)
    );
}

#[test]
fn duplicates_weigh_and_the_cut_separates_them() {
    // 3 items under one key, 10 under a heavy one, 4 under a third: the cuts give
    // 3 | 14 or 13 | 4, so the heavy key goes left.
    let mut keys = vec![500; 10];
    keys.extend([100, 100, 100, 900, 900, 900, 900]);
    let r = range(0, 1_000);
    let p = choose_split_point(&r, &keys).unwrap();
    assert_eq!(sides(&r, &keys, p), (13, 4));
    assert!(p > 500 && p <= 900, "point {p}");
    // A single hash repeated can only be cut away from nothing: midpoint fallback.
    assert_eq!(choose_split_point(&r, &[7; 50]), range_midpoint(&r));
}

#[test]
fn keys_outside_the_range_are_ignored() {
    let r = range(1_000, 2_000);
    let keys = [1, 2, 3, 4, 5, 1_100, 1_900, 5_000, u64::MAX];
    assert_eq!(choose_split_point(&r, &keys), Some(1_501));
    assert_eq!(choose_split_point(&r, &[1, 2, 3]), range_midpoint(&r));
}

#[test]
fn empty_or_single_key_falls_back_to_the_midpoint() {
    assert_eq!(choose_split_point(&KeyRange::FULL, &[]), Some(1 << 63));
    assert_eq!(choose_split_point(&range(10, 20), &[12]), Some(16));
    assert_eq!(choose_split_point(&range(10, 11), &[]), Some(11));
}

#[test]
fn a_single_hash_range_cannot_be_split() {
    assert_eq!(choose_split_point(&range(5, 5), &[5, 5, 5]), None);
    assert_eq!(choose_split_point(&range(u64::MAX, u64::MAX), &[]), None);
    assert_eq!(range_midpoint(&range(0, 0)), None);
}

#[test]
fn operator_points_are_checked() {
    let r = range(10, 20);
    assert_eq!(validate_split_point(&r, 11), Ok(()));
    assert_eq!(validate_split_point(&r, 20), Ok(()));
    assert_eq!(
        validate_split_point(&r, 10),
        Err(SplitPointError::AtRangeStart { point: 10 })
    );
    assert_eq!(
        validate_split_point(&r, 21),
        Err(SplitPointError::OutsideRange {
            point: 21,
            low: 10,
            high: 20
        })
    );
    assert!(matches!(
        validate_split_point(&r, 3),
        Err(SplitPointError::OutsideRange { .. })
    ));
    assert_eq!(
        validate_split_point(&range(4, 4), 4),
        Err(SplitPointError::RangeTooNarrow { low: 4, high: 4 })
    );
}

#[test]
fn children_tile_the_parent() {
    let (l, r) = split_range(&KeyRange::FULL, 1 << 63).unwrap();
    assert_eq!(l, range(0, (1 << 63) - 1));
    assert_eq!(r, range(1 << 63, u64::MAX));
    assert_eq!(
        split_range(&range(3, 9), 4).unwrap(),
        (range(3, 3), range(4, 9))
    );
    assert!(split_range(&range(3, 9), 3).is_err());
}

/// A range and keys that are mostly inside it, often with duplicates and in a small
/// space (so that ranges of one or two hashes and colliding keys come up).
fn case() -> impl Strategy<Value = (KeyRange, Vec<u64>)> {
    let small = (0u64..40, 0u64..40, prop::collection::vec(0u64..45, 0..12));
    let wide = (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u64>(), 0..40),
    );
    prop_oneof![small, wide].prop_map(|(a, b, mut keys)| {
        let r = range(a.min(b), a.max(b));
        // Bring most wide keys into the range so the interesting cases dominate.
        let span = r.high - r.low;
        for k in keys.iter_mut().step_by(2) {
            *k = r.low + *k % span.saturating_add(1).max(1);
        }
        (r, keys)
    })
}

proptest! {
    #[test]
    fn point_is_strictly_inside_and_deterministic((r, keys) in case()) {
        let p = choose_split_point(&r, &keys);
        prop_assert_eq!(p, choose_split_point(&r, &keys));
        match p {
            None => prop_assert_eq!(r.low, r.high),
            Some(p) => {
                prop_assert!(r.low < p && p <= r.high);
                prop_assert!(validate_split_point(&r, p).is_ok());
                let (left, right) = split_range(&r, p).unwrap();
                prop_assert_eq!(left.high + 1, right.low);
            }
        }
    }

    #[test]
    fn both_sides_get_keys_and_the_cut_is_as_even_as_any((r, keys) in case()) {
        let inside: Vec<u64> = keys.iter().copied().filter(|k| r.contains(*k)).collect();
        let distinct: std::collections::BTreeSet<u64> = inside.iter().copied().collect();
        prop_assume!(distinct.len() >= 2);
        let p = choose_split_point(&r, &keys).unwrap();
        let (left, right) = sides(&r, &keys, p);
        prop_assert!(left > 0 && right > 0);
        // Brute force over every separating cut: one just above each distinct hash but
        // the last (every other point gives the same counts as one of these).
        let best = distinct
            .iter()
            .take(distinct.len() - 1)
            .map(|&h| {
                let (l, r2) = sides(&r, &keys, h + 1);
                l.abs_diff(r2)
            })
            .min()
            .unwrap();
        prop_assert_eq!(left.abs_diff(right), best);
    }

    #[test]
    fn shuffled_input_gives_the_same_point((r, keys) in case(), seed in any::<u64>()) {
        let mut shuffled = keys.clone();
        // A deterministic shuffle: rotate and reverse by the seed.
        if !shuffled.is_empty() {
            let k = (seed as usize) % shuffled.len();
            shuffled.rotate_left(k);
        }
        if seed % 2 == 0 {
            shuffled.reverse();
        }
        prop_assert_eq!(choose_split_point(&r, &keys), choose_split_point(&r, &shuffled));
    }
}
