//! Publisher-confirm bookkeeping for one channel.
//!
//! Publishes in confirm mode are numbered from 1. The broker settles them
//! with `basic.ack` or `basic.nack`, one tag at a time or cumulatively
//! (`multiple`: every tag up to this one). A ring of flags from the oldest
//! unsettled tag onwards tells which are still open, so out-of-order single
//! confirms and overlapping cumulative ones are each counted once.

use std::collections::VecDeque;

/// Which published tags are still waiting for their confirm.
#[derive(Debug)]
pub struct ConfirmTracker {
    /// The tag of `open[0]`.
    base: u64,
    open: VecDeque<bool>,
    outstanding: u64,
}

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker::new()
    }
}

impl ConfirmTracker {
    pub fn new() -> Self {
        ConfirmTracker {
            base: 1,
            open: VecDeque::new(),
            outstanding: 0,
        }
    }

    /// Records `n` more publishes.
    pub fn published(&mut self, n: u64) {
        self.open.resize(self.open.len() + n as usize, true);
        self.outstanding += n;
    }

    /// Publishes not yet confirmed.
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// Settles `tag` (and every earlier tag if `multiple`; tag 0 with
    /// `multiple` means everything published). Returns how many publishes
    /// this settled, or an error for a tag never published.
    pub fn settle(&mut self, tag: u64, multiple: bool) -> Result<u64, String> {
        let published_up_to = self.base + self.open.len() as u64 - 1;
        let last = if multiple && tag == 0 {
            published_up_to
        } else {
            tag
        };
        if last > published_up_to {
            return Err(format!(
                "confirm for delivery tag {tag}, but only {published_up_to} were published"
            ));
        }
        let mut settled = 0;
        if last >= self.base {
            let idx = (last - self.base) as usize;
            let first = if multiple { 0 } else { idx };
            for open in self.open.range_mut(first..=idx) {
                if *open {
                    *open = false;
                    settled += 1;
                }
            }
        }
        while self.open.front() == Some(&false) {
            self.open.pop_front();
            self.base += 1;
        }
        self.outstanding -= settled;
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_single_and_repeated_confirms_count_once() {
        let mut c = ConfirmTracker::new();
        c.published(10);
        assert_eq!(c.settle(3, false), Ok(1));
        assert_eq!(c.settle(5, true), Ok(4));
        assert_eq!(c.settle(3, false), Ok(0));
        assert_eq!(c.settle(4, true), Ok(0));
        assert_eq!(c.outstanding(), 5);
        assert_eq!(c.settle(8, false), Ok(1));
        assert_eq!(c.settle(10, true), Ok(4));
        assert_eq!(c.outstanding(), 0);
        assert!(c.settle(11, false).is_err());
        c.published(2);
        assert_eq!(c.settle(0, true), Ok(2));
        assert_eq!(c.outstanding(), 0);
    }
}
