//! [`SeqSet`]: a set of sequence numbers kept as disjoint ranges.
//!
//! Acks arrive nearly in order, so the settled messages of a segment
//! collapse into a few ranges: the number of ranges grows with the number
//! of holes (messages delivered and not yet acked), not with the number of
//! messages.

use std::collections::BTreeMap;

/// Sequence numbers as disjoint, non-adjacent half-open ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SeqSet {
    /// start -> end (exclusive).
    ranges: BTreeMap<u64, u64>,
}

impl SeqSet {
    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.ranges
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &end)| seq < end)
    }

    /// Adds `seq`, returning whether it was new.
    pub(crate) fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        self.insert_range(seq, seq.saturating_add(1));
        true
    }

    /// Adds every number in `[from, to)`.
    pub(crate) fn insert_range(&mut self, mut from: u64, mut to: u64) {
        if from >= to {
            return;
        }
        // Merge with a range that starts before and reaches `from`.
        if let Some((&start, &end)) = self.ranges.range(..=from).next_back() {
            if end >= from {
                from = start;
                to = to.max(end);
            }
        }
        // Swallow every range that starts inside or right after.
        let absorbed: Vec<(u64, u64)> = self
            .ranges
            .range(from..=to)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (start, end) in absorbed {
            self.ranges.remove(&start);
            to = to.max(end);
        }
        self.ranges.insert(from, to);
    }

    /// The ranges, in order, as `(from, to)` half-open pairs.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }

    pub(crate) fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The part of the set inside `[from, to)`.
    pub(crate) fn restricted(&self, from: u64, to: u64) -> SeqSet {
        let mut out = SeqSet::default();
        if from >= to {
            return out;
        }
        let first = self
            .ranges
            .range(..=from)
            .next_back()
            .map_or(from, |(&s, _)| s);
        for (&s, &e) in self.ranges.range(first..to) {
            let (s, e) = (s.max(from), e.min(to));
            if s < e {
                out.ranges.insert(s, e);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_neighbours() {
        let mut s = SeqSet::default();
        assert!(s.insert(5));
        assert!(s.insert(7));
        assert!(!s.insert(5));
        assert_eq!(s.range_count(), 2);
        assert!(s.insert(6));
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(5, 8)]);
        s.insert_range(0, 5);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(0, 8)]);
        s.insert_range(10, 12);
        s.insert_range(3, 11);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![(0, 12)]);
        assert_eq!(
            s.restricted(4, 6).ranges().collect::<Vec<_>>(),
            vec![(4, 6)]
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in prop::collection::vec((0u64..60, 0u64..6), 0..60), probe in (0u64..70, 0u64..70)) {
            let mut s = SeqSet::default();
            let mut model = BTreeSet::new();
            for (from, len) in ops {
                if len == 0 {
                    prop_assert_eq!(s.insert(from), model.insert(from));
                } else {
                    s.insert_range(from, from + len);
                    model.extend(from..from + len);
                }
            }
            for n in 0..70 {
                prop_assert_eq!(s.contains(n), model.contains(&n));
            }
            // Disjoint and never adjacent.
            let ranges: Vec<_> = s.ranges().collect();
            for w in ranges.windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
            let (a, b) = probe;
            let r = s.restricted(a, b);
            for n in 0..70 {
                prop_assert_eq!(r.contains(n), model.contains(&n) && n >= a && n < b);
            }
        }
    }
}
