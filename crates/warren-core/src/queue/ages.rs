//! When a queue's ready messages were enqueued, kept coarsely, for the age
//! of its oldest ready message.
//!
//! A disk queue does not hold its ready messages in memory, and the store's
//! records carry no enqueue time, so the queue keeps *marks* instead:
//! `(seq, at)` pairs saying that messages from `seq` on were enqueued at
//! `at` or later. A mark is added when a message arrives at least `gap`
//! after the last mark, so a steady stream costs one mark per `gap`, not
//! one per message. The marks are bounded: when full, those below the
//! oldest message still in the queue are dropped, and if that is not
//! enough every other mark goes and `gap` grows to the widest span left
//! (at least doubling). A dropped mark's messages then take the previous
//! mark's time, so an age is never understated by thinning, only rounded
//! up by less than the current gap. Recovered
//! messages count as enqueued when the queue was opened.

use std::collections::VecDeque;

/// Marks kept at most.
const MAX_MARKS: usize = 128;
/// The gap between marks of a queue that has not had to thin them (ms).
const FIRST_GAP: u64 = 50;

#[derive(Debug)]
pub(crate) struct EnqueueTimes {
    /// `(first seq, enqueued at)`, both increasing.
    marks: VecDeque<(u64, u64)>,
    gap: u64,
}

impl Default for EnqueueTimes {
    fn default() -> Self {
        EnqueueTimes {
            marks: VecDeque::new(),
            gap: FIRST_GAP,
        }
    }
}

impl EnqueueTimes {
    /// Message `seq` was enqueued at `now`. `oldest_kept` gives the
    /// smallest sequence number still in the queue (ready or checked out);
    /// it is asked only when the marks are full.
    pub(crate) fn enqueued(&mut self, seq: u64, now: u64, oldest_kept: impl FnOnce() -> u64) {
        if let Some(&(_, at)) = self.marks.back() {
            if now < at.saturating_add(self.gap) {
                return;
            }
        }
        if self.marks.len() >= MAX_MARKS {
            let low = oldest_kept();
            while self.marks.len() >= 2 && self.marks[1].0 <= low {
                self.marks.pop_front();
            }
        }
        if self.marks.len() >= MAX_MARKS {
            let mut i = 0;
            self.marks.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            // New marks come no closer than the widest span now left, so
            // every span stays within `gap`.
            let widest = self
                .marks
                .iter()
                .zip(self.marks.iter().skip(1))
                .map(|(a, b)| b.1 - a.1)
                .max()
                .unwrap_or(0);
            self.gap = self.gap.saturating_mul(2).max(widest);
        }
        self.marks.push_back((seq, now));
    }

    /// When message `seq` was enqueued, at the latest (`None` before any
    /// message).
    pub(crate) fn enqueued_at(&self, seq: u64) -> Option<u64> {
        let i = self.marks.partition_point(|&(first, _)| first <= seq);
        // Older than every mark (only after marks were dropped below a
        // message that was then requeued): the oldest mark is the best
        // bound there is.
        let i = i.saturating_sub(1);
        self.marks.get(i).map(|&(_, at)| at)
    }

    /// The queue is empty: nothing old is left to remember.
    pub(crate) fn clear(&mut self) {
        self.marks.clear();
        self.gap = FIRST_GAP;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_when_time_moved_by_the_gap() {
        let mut t = EnqueueTimes::default();
        assert_eq!(t.enqueued_at(0), None);
        t.enqueued(0, 1_000, || 0);
        t.enqueued(1, 1_010, || 0);
        t.enqueued(2, 1_060, || 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.enqueued_at(0), Some(1_000));
        assert_eq!(t.enqueued_at(1), Some(1_000));
        assert_eq!(t.enqueued_at(2), Some(1_060));
        assert_eq!(t.enqueued_at(99), Some(1_060));
    }

    #[test]
    fn bounded_and_never_understating() {
        let mut t = EnqueueTimes::default();
        // A message every second for a day, none consumed.
        for s in 0..86_400u64 {
            t.enqueued(s, s * 1_000, || 0);
            assert!(t.len() <= MAX_MARKS);
        }
        for s in (0..86_400u64).step_by(997) {
            let at = t.enqueued_at(s).unwrap();
            assert!(at <= s * 1_000, "seq {s}: {at}");
            assert!(s * 1_000 - at <= t.gap, "seq {s}: {at} within {}", t.gap);
        }
        assert_eq!(t.enqueued_at(0), Some(0));
    }

    #[test]
    fn consumed_marks_go_first() {
        let mut t = EnqueueTimes::default();
        for s in 0..1_000u64 {
            // Everything but the last 10 messages has been consumed.
            t.enqueued(s, s * 100, || s.saturating_sub(10));
        }
        assert_eq!(t.gap, FIRST_GAP, "pruning sufficed, no thinning");
        assert_eq!(t.enqueued_at(995), Some(99_500));
        t.clear();
        assert_eq!(t.enqueued_at(995), None);
    }
}
