//! When a backfill may save a persons page's checkpoint: the rule, kept in one place.
//!
//! A page's checkpoint tells a restarted run where to go on reading, so it may be saved only
//! when everything the pages before it caused is durable:
//!
//! 1. none of their rows still waits in an import group;
//! 2. every write sent before their rows left the groups has settled (its task has ended);
//! 3. none of those writes is an import Brevo has not confirmed, nor has links or errors still
//!    being recorded.
//!
//! Writes are numbered in the order they are sent, and settle in that order. A page's
//! checkpoint is *held* while rule 1 keeps it (by page number), then *released* with the
//! number of writes sent so far, and is *ready* once those writes have settled and the first
//! write still unconfirmed or unrecorded came after them. Only the newest ready checkpoint is
//! saved: it covers the ones before it.

use std::collections::VecDeque;

use crate::sync::store::Checkpoint;

#[derive(Default)]
pub(super) struct CheckpointGate {
    /// (page, checkpoint), oldest first: some row of the page (or an earlier one) still waits.
    held: VecDeque<(u64, Checkpoint)>,
    /// (writes sent before it, checkpoint), oldest first.
    released: VecDeque<(u64, Checkpoint)>,
    sent: u64,
    settled: u64,
}

impl CheckpointGate {
    /// The checkpoint after a page whose rows have gone into the import groups.
    pub(super) fn hold(&mut self, page: u64, checkpoint: Checkpoint) {
        self.held.push_back((page, checkpoint));
    }

    /// Rule 1: the pages before `oldest_waiting` (the page of the oldest row still in a group)
    /// have no row waiting any more; the newest of their checkpoints is released.
    pub(super) fn release_before(&mut self, oldest_waiting: u64) {
        let mut newest = None;
        while self.held.front().is_some_and(|(page, _)| *page < oldest_waiting) {
            newest = self.held.pop_front().map(|(_, cp)| cp);
        }
        if let Some(cp) = newest {
            self.released.push_back((self.sent, cp));
        }
    }

    /// A write was sent.
    pub(super) fn sent(&mut self) {
        self.sent += 1;
    }

    /// The oldest write on its way has settled; returns its number (from 0).
    pub(super) fn settle(&mut self) -> u64 {
        self.settled += 1;
        self.settled - 1
    }

    /// Writes sent so far: what a recording started now holds back (see [`Self::ready`]).
    pub(super) fn sent_so_far(&self) -> u64 {
        self.sent
    }

    /// Writes settled so far: the number of the next write to settle.
    pub(super) fn settled_so_far(&self) -> u64 {
        self.settled
    }

    /// Rules 2 and 3: the newest released checkpoint whose writes have all settled and come
    /// before `first_unrecorded` (the number of writes before the first one still unconfirmed or
    /// being recorded, `u64::MAX` if none), to be saved now.
    pub(super) fn ready(&mut self, first_unrecorded: u64) -> Option<Checkpoint> {
        let mut newest = None;
        while self
            .released
            .front()
            .is_some_and(|(sent, _)| *sent <= self.settled && *sent < first_unrecorded)
        {
            newest = self.released.pop_front().map(|(_, cp)| cp);
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(cursor: &str) -> Checkpoint {
        Checkpoint { backfill_cursor: Some(cursor.into()), ..Default::default() }
    }

    fn cursor(c: Option<Checkpoint>) -> Option<String> {
        c.and_then(|c| c.backfill_cursor)
    }

    #[test]
    fn a_page_waits_for_its_rows_its_writes_and_their_recording() {
        let mut gate = CheckpointGate::default();
        gate.hold(1, cp("p1"));
        gate.hold(2, cp("p2"));
        // A row of page 2 still waits in a group: only page 1 is released, and nothing was
        // sent before it, so it is ready at once.
        gate.release_before(2);
        assert_eq!(cursor(gate.ready(u64::MAX)), Some("p1".into()));
        // Page 2's rows leave in a write (an import); page 3 is read meanwhile.
        gate.sent();
        gate.hold(3, cp("p3"));
        gate.release_before(u64::MAX);
        assert!(gate.ready(u64::MAX).is_none(), "the write has not settled");
        let write = gate.settle();
        assert_eq!(write, 0);
        // Settled, but its import is not confirmed: unrecorded from write 0 on.
        assert!(gate.ready(write + 1).is_none());
        assert!(gate.ready(write).is_none());
        // Confirmed and recorded: pages 2 and 3 are covered by page 3's checkpoint.
        assert_eq!(cursor(gate.ready(u64::MAX)), Some("p3".into()));
        assert!(gate.ready(u64::MAX).is_none(), "saved once");
    }

    #[test]
    fn a_later_write_does_not_hold_an_earlier_page() {
        let mut gate = CheckpointGate::default();
        gate.hold(1, cp("p1"));
        gate.release_before(u64::MAX);
        // Writes sent after page 1 was released do not hold it back.
        gate.sent();
        gate.sent();
        assert_eq!(gate.sent_so_far(), 2);
        assert_eq!(cursor(gate.ready(1)), Some("p1".into()));
        assert_eq!(gate.settled_so_far(), 0);
    }
}
