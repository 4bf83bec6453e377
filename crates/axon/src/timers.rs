//! The scheduler's armed timers: a binary heap ordered by deadline, whose entries are checked
//! against a slab of the timers still armed.
//!
//! Most timers never fire. A connection arms one for its idle timeout (minutes) and drops it when
//! it closes a few milliseconds later. So arming and disarming have to be cheap, and firing is
//! comparatively rare. Arming pushes onto the heap. A new timer usually has the latest deadline
//! yet, and then stays at the bottom, in one comparison. Disarming frees the timer's slot and
//! leaves its heap entry behind as stale. Stale entries are dropped when they reach the top, and
//! all of them at once when they outnumber the armed timers. So the heap stays within twice the
//! armed timers (plus a constant), and each disarm pays for one entry of that sweep.
//!
//! An ordered map keyed by deadline did the same job before. Arming and disarming cost it about
//! 350 instructions each, with fifty timers armed; a relayed connection arms three.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::component::shrink_target;

/// A timer's place in the queue, kept by whoever armed it to disarm it. The sequence number is
/// never reused, so a key whose timer has fired (and whose slot holds another timer now) disarms
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: u32,
    seq: u64,
}

/// How many stale heap entries are tolerated beyond the armed timers before a sweep.
const SWEEP_SLACK: usize = 64;

/// Armed timers, each with a value (the component to wake), earliest first; timers with the same
/// deadline fire in the order they were armed.
pub(crate) struct TimerQueue<V> {
    /// `(deadline, seq, slot)`, earliest first. An entry is live while its slot holds `seq`.
    heap: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    /// The armed timers: the sequence number of each slot's timer, and its value (`None`: free).
    slots: Vec<(u64, Option<V>)>,
    /// Free slots.
    free: Vec<u32>,
    armed: usize,
    next_seq: u64,
}

impl<V> Default for TimerQueue<V> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            armed: 0,
            next_seq: 0,
        }
    }
}

impl<V> TimerQueue<V> {
    /// Arms a timer for `deadline` carrying `value`.
    pub(crate) fn insert(&mut self, deadline: Instant, value: V) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = (seq, Some(value));
                slot
            }
            None => {
                // Slots are counted in `u32`: four billion armed at once is out of reach (each
                // is an entry of the heap as well).
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
                self.slots.push((seq, Some(value)));
                slot
            }
        };
        self.heap.push(Reverse((deadline, seq, slot)));
        self.armed += 1;
        TimerKey { slot, seq }
    }

    /// Disarms a timer, returning its value; `None` if it has fired or was disarmed already.
    /// When the last armed timer goes, the queue gives back what a burst of timers took.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<V> {
        let value = self.take(key.slot, key.seq)?;
        if self.armed == 0 {
            // Nothing armed: no key can match a slot, so all of it can go, and memory a burst
            // of timers took beyond the slack is given back.
            self.heap.clear();
            self.slots.clear();
            self.free.clear();
            self.heap.shrink_to(SWEEP_SLACK);
            self.slots.shrink_to(SWEEP_SLACK);
            self.free.shrink_to(SWEEP_SLACK);
        } else if self.heap.len() > 2 * self.armed + SWEEP_SLACK {
            let slots = &self.slots;
            self.heap
                .retain(|&Reverse((_, seq, slot))| is_armed(slots, slot, seq));
            if let Some(to) = shrink_target(self.heap.capacity(), self.heap.len() + SWEEP_SLACK) {
                self.heap.shrink_to(to);
            }
        }
        Some(value)
    }

    /// The earliest deadline of an armed timer.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_top();
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Takes the earliest armed timer if its deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<V> {
        loop {
            let &Reverse((deadline, seq, slot)) = self.heap.peek()?;
            if deadline > now {
                return None;
            }
            self.heap.pop();
            if let Some(value) = self.take(slot, seq) {
                return Some(value);
            }
        }
    }

    /// How many timers are armed.
    pub(crate) fn len(&self) -> usize {
        self.armed
    }

    /// Frees `slot` if it still holds timer `seq`, returning that timer's value.
    fn take(&mut self, slot: u32, seq: u64) -> Option<V> {
        let entry = self.slots.get_mut(slot as usize)?;
        if entry.0 != seq {
            return None;
        }
        let value = entry.1.take()?;
        self.free.push(slot);
        self.armed -= 1;
        Some(value)
    }

    /// Pops stale entries off the top of the heap.
    fn drop_stale_top(&mut self) {
        while let Some(&Reverse((_, seq, slot))) = self.heap.peek() {
            if is_armed(&self.slots, slot, seq) {
                break;
            }
            self.heap.pop();
        }
    }
}

/// Whether the heap entry for timer `seq` in `slot` is live: the slot still holds that timer.
fn is_armed<V>(slots: &[(u64, Option<V>)], slot: u32, seq: u64) -> bool {
    slots
        .get(slot as usize)
        .is_some_and(|(s, v)| *s == seq && v.is_some())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn all_due(q: &mut TimerQueue<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due(now)).collect()
    }

    #[test]
    fn fires_in_deadline_order_then_arming_order() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut q = TimerQueue::default();
        for (ms, v) in [(30, 1), (10, 2), (20, 3), (10, 4), (30, 5)] {
            q.insert(at(ms), v);
        }
        assert_eq!(q.next_deadline(), Some(at(10)));
        assert_eq!(all_due(&mut q, at(9)), Vec::<u32>::new());
        assert_eq!(all_due(&mut q, at(20)), [2, 4, 3]);
        assert_eq!(q.next_deadline(), Some(at(30)));
        assert_eq!(all_due(&mut q, at(100)), [1, 5]);
        assert_eq!((q.len(), q.next_deadline()), (0, None));
    }

    #[test]
    fn a_disarmed_timer_never_fires_and_its_key_stays_dead() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut q = TimerQueue::default();
        let a = q.insert(at(10), 1);
        let b = q.insert(at(20), 2);
        assert_eq!(q.remove(a), Some(1));
        assert_eq!(q.remove(a), None, "disarmed twice");
        assert_eq!(q.next_deadline(), Some(at(20)), "the stale top is skipped");
        // Slot `a` is reused by a new timer: the old key must not disarm it.
        let c = q.insert(at(5), 3);
        assert_eq!(q.remove(a), None);
        assert_eq!(all_due(&mut q, at(20)), [3, 2]);
        assert_eq!(q.remove(b), None, "fired already");
        assert_eq!(q.remove(c), None, "fired already");
        assert_eq!(q.len(), 0);
    }

    /// Timers armed and disarmed without ever firing, as connections do with their idle
    /// timeouts: the heap stays within twice the armed timers plus the slack.
    #[test]
    fn disarmed_timers_do_not_pile_up() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let mut keys = std::collections::VecDeque::new();
        for i in 0..100_000u32 {
            keys.push_back(q.insert(t0 + Duration::from_secs(300 + u64::from(i)), i));
            if keys.len() > 50 {
                let key = keys.pop_front().expect("more than 50 keys");
                assert!(q.remove(key).is_some());
            }
            assert!(q.heap.len() <= 2 * q.len() + SWEEP_SLACK + 1);
            assert!(q.slots.len() <= 51);
        }
        assert_eq!(q.len(), 50);
        let due = all_due(&mut q, t0 + Duration::from_secs(1_000_000));
        assert_eq!(due, (99_950..100_000).collect::<Vec<_>>());
    }

    /// A burst of timers, all disarmed: the queue's memory goes back to its slack.
    #[test]
    fn a_burst_of_timers_gives_its_memory_back() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        let keys: Vec<_> = (0..10_000u32)
            .map(|i| q.insert(t0 + Duration::from_secs(300), i))
            .collect();
        let old = keys[0];
        for key in keys {
            assert!(q.remove(key).is_some());
        }
        assert_eq!(q.len(), 0);
        assert!(q.heap.capacity() <= SWEEP_SLACK, "{}", q.heap.capacity());
        assert!(q.slots.capacity() <= SWEEP_SLACK, "{}", q.slots.capacity());
        let new = q.insert(t0, 7);
        assert_eq!(q.remove(old), None, "a key from before the reset");
        assert_eq!(q.remove(new), Some(7));
    }
}
