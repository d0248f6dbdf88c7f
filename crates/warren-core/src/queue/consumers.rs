//! A queue's consumers and the choice of which one gets the next message.
//!
//! Consumers are grouped by priority (`x-priority`, highest first); within
//! a group they take turns (round robin). A consumer is passed over while
//! its own prefetch window is full or the caller's credit gate refuses it
//! (channel flow, channel-wide prefetch, a connection that is behind), and
//! a lower group is served only while every consumer of the higher groups
//! is passed over, as RabbitMQ does. With single active consumer, one
//! consumer is active and the only one offered messages; when it goes, the
//! waiting consumer with the highest priority (the earliest subscriber
//! among equals) takes over, and a newcomer never takes the queue away.

use std::collections::VecDeque;

/// How a consumer subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerSpec {
    /// `x-priority` (0 if absent).
    pub priority: i32,
    /// Messages it may hold unacknowledged from this queue (0: no limit).
    pub prefetch: u32,
    /// Deliveries are settled as they are sent.
    pub no_ack: bool,
    /// basic.consume `exclusive`: the only consumer of the queue.
    pub exclusive: bool,
}

#[derive(Debug)]
struct Entry<C> {
    id: u64,
    handle: C,
    spec: ConsumerSpec,
    /// Subscription order, for single active consumer.
    order: u64,
    /// Messages delivered to it and not yet settled.
    checked_out: u32,
}

impl<C> Entry<C> {
    fn has_room(&self) -> bool {
        self.spec.no_ack || self.spec.prefetch == 0 || self.checked_out < self.spec.prefetch
    }
}

#[derive(Debug)]
struct Group<C> {
    priority: i32,
    ring: VecDeque<Entry<C>>,
}

/// The consumers of one queue.
#[derive(Debug)]
pub struct Consumers<C> {
    /// Highest priority first.
    groups: Vec<Group<C>>,
    len: usize,
    next_order: u64,
    single_active: bool,
    /// The active consumer, with single active consumer.
    active: Option<u64>,
    /// Report only the active consumer in declare-ok (quorum queues).
    report_active_only: bool,
}

impl<C> Consumers<C> {
    pub fn new(single_active: bool) -> Self {
        Consumers {
            groups: Vec::new(),
            len: 0,
            next_order: 0,
            single_active,
            active: None,
            report_active_only: false,
        }
    }

    /// Single active consumer as quorum queues report it: declare-ok counts
    /// the active consumer only.
    pub fn reporting_active_only(mut self) -> Self {
        self.report_active_only = true;
        self
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn add(&mut self, id: u64, handle: C, spec: ConsumerSpec) {
        let entry = Entry {
            id,
            handle,
            spec,
            order: self.next_order,
            checked_out: 0,
        };
        self.next_order += 1;
        self.len += 1;
        if self.single_active && self.active.is_none() {
            self.active = Some(id);
        }
        let at = self.groups.partition_point(|g| g.priority > spec.priority);
        match self.groups.get_mut(at) {
            Some(g) if g.priority == spec.priority => g.ring.push_back(entry),
            _ => self.groups.insert(
                at,
                Group {
                    priority: spec.priority,
                    ring: VecDeque::from([entry]),
                },
            ),
        }
    }

    /// Removes consumer `id`, returning its handle.
    pub fn remove(&mut self, id: u64) -> Option<C> {
        for gi in 0..self.groups.len() {
            if let Some(i) = self.groups[gi].ring.iter().position(|e| e.id == id) {
                let entry = self.groups[gi].ring.remove(i)?;
                if self.groups[gi].ring.is_empty() {
                    self.groups.remove(gi);
                }
                self.len -= 1;
                if self.active == Some(id) {
                    self.active = self.successor();
                }
                return Some(entry.handle);
            }
        }
        None
    }

    /// Removes every consumer, returning their handles.
    pub fn take_all(&mut self) -> Vec<C> {
        self.len = 0;
        self.active = None;
        self.groups
            .drain(..)
            .flat_map(|g| g.ring.into_iter().map(|e| e.handle))
            .collect()
    }

    fn entries(&self) -> impl Iterator<Item = &Entry<C>> {
        self.groups.iter().flat_map(|g| g.ring.iter())
    }

    fn entry_mut(&mut self, id: u64) -> Option<&mut Entry<C>> {
        self.groups
            .iter_mut()
            .flat_map(|g| g.ring.iter_mut())
            .find(|e| e.id == id)
    }

    pub fn handles(&self) -> impl Iterator<Item = &C> {
        self.entries().map(|e| &e.handle)
    }

    pub fn get(&self, id: u64) -> Option<&C> {
        self.entries().find(|e| e.id == id).map(|e| &e.handle)
    }

    pub fn any_exclusive(&self) -> bool {
        self.entries().any(|e| e.spec.exclusive)
    }

    /// The consumer that single active consumer lets receive.
    pub fn active(&self) -> Option<u64> {
        self.active
    }

    /// Who takes over from a single active consumer that went: the highest
    /// priority, the earliest subscriber among equals (groups are ordered
    /// by priority, so the first group holds the candidates).
    fn successor(&self) -> Option<u64> {
        let group = self.groups.first()?;
        group.ring.iter().min_by_key(|e| e.order).map(|e| e.id)
    }

    /// Whether this queue has a single active consumer.
    pub fn is_single_active(&self) -> bool {
        self.single_active
    }

    /// Whether consumer `id` is offered messages now.
    pub fn is_active(&self, id: u64) -> bool {
        !self.single_active || self.active() == Some(id)
    }

    /// One more message is checked out to consumer `id`.
    pub fn checked_out(&mut self, id: u64) {
        if let Some(e) = self.entry_mut(id) {
            e.checked_out += 1;
        }
    }

    /// One of consumer `id`'s messages is settled or returned.
    pub fn settled(&mut self, id: u64) {
        if let Some(e) = self.entry_mut(id) {
            e.checked_out = e.checked_out.saturating_sub(1);
        }
    }

    /// The consumer count a declare-ok reports: a quorum queue with single
    /// active consumer counts only the active one, a classic queue all.
    pub fn reported_len(&self) -> usize {
        if self.single_active && self.report_active_only {
            usize::from(self.active.is_some())
        } else {
            self.len
        }
    }

    /// Picks the consumer for the next message: the next in turn, within
    /// the highest priority group that has one with room that `gate`
    /// accepts. The chosen one goes to the back of its group's turn.
    pub fn next(&mut self, mut gate: impl FnMut(&C) -> bool) -> Option<(u64, C, bool)>
    where
        C: Clone,
    {
        if self.single_active {
            let id = self.active()?;
            let e = self.entry_mut(id)?;
            return (e.has_room() && gate(&e.handle))
                .then(|| (e.id, e.handle.clone(), e.spec.no_ack));
        }
        for g in &mut self.groups {
            for turn in 0..g.ring.len() {
                let e = &g.ring[turn];
                if e.has_room() && gate(&e.handle) {
                    let chosen = (e.id, e.handle.clone(), e.spec.no_ack);
                    // Everyone before it in turn was passed over: the chosen
                    // one goes last, the others keep their order.
                    g.ring.rotate_left(turn + 1);
                    return Some(chosen);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(priority: i32, prefetch: u32) -> ConsumerSpec {
        ConsumerSpec {
            priority,
            prefetch,
            ..Default::default()
        }
    }

    #[test]
    fn round_robin_within_the_highest_priority_with_room() {
        let mut c = Consumers::new(false);
        c.add(1, 'a', spec(0, 0));
        c.add(2, 'b', spec(5, 1));
        c.add(3, 'c', spec(5, 0));
        let pick = |c: &mut Consumers<char>| {
            let (id, h, _) = c.next(|_| true).unwrap();
            c.checked_out(id);
            h
        };
        assert_eq!(pick(&mut c), 'b');
        assert_eq!(pick(&mut c), 'c');
        // b is full: c takes every turn of the high group.
        assert_eq!(pick(&mut c), 'c');
        c.settled(2);
        assert_eq!(pick(&mut c), 'b');
        // Gate refuses the high group: the low one is served.
        assert_eq!(c.next(|h| *h == 'a').map(|x| x.1), Some('a'));
        assert_eq!(c.remove(3), Some('c'));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn single_active_consumer_hands_over_by_priority_then_subscription() {
        let mut c = Consumers::new(true);
        c.add(7, 'x', spec(0, 0));
        c.add(8, 'y', spec(5, 0));
        c.add(9, 'z', spec(10, 0));
        c.add(10, 'w', spec(10, 0));
        // A higher priority does not take the queue from the active one.
        assert_eq!(c.next(|_| true).map(|x| x.1), Some('x'));
        assert_eq!(c.next(|h| *h != 'x'), None);
        c.remove(7);
        assert_eq!(c.next(|_| true).map(|x| x.1), Some('z'));
        c.remove(9);
        assert!(c.is_active(10));
        c.remove(10);
        assert!(c.is_active(8));
    }

    #[test]
    fn a_quorum_queue_reports_only_its_active_consumer() {
        let mut c = Consumers::new(true).reporting_active_only();
        c.add(1, 'a', spec(0, 0));
        c.add(2, 'b', spec(0, 0));
        assert_eq!((c.len(), c.reported_len()), (2, 1));
        c.remove(1);
        assert_eq!(c.next(|_| true).map(|x| x.1), Some('b'));
        let mut classic = Consumers::new(true);
        classic.add(1, 'a', spec(0, 0));
        classic.add(2, 'b', spec(0, 0));
        assert_eq!(classic.reported_len(), 2);
    }
}
