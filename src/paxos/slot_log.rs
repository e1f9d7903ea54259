//! A group's in-memory log: slots indexed by instance in a ring (`VecDeque`) that
//! starts at the lowest instance held, instead of an ordered map.
//!
//! The log is dense: it holds the applied slots of the retention, every chosen slot
//! above them, and the accepted ones of the accept window above those, so a lookup by
//! instance is an index, appending at the head and dropping at the tail are O(1), and
//! nothing is allocated per slot (a `BTreeMap` spent about a quarter of the protocol
//! core's instructions searching, splitting and merging nodes, and allocating them).
//!
//! Invariants:
//! - `slots` is empty, or its first and last elements hold a value: `base` is the
//!   lowest instance held and `base + slots.len() - 1` the highest;
//! - `len` counts the elements that hold a value;
//! - holes (instances not held between the lowest and the highest) take one empty
//!   element each. Their number is bounded by the callers: a group inserts only at
//!   `chosen_through + 1` (learned) or within `accept_window_instances_max` of it
//!   (accepted), which `GroupConfig::validate` bounds by `ACCEPT_WINDOW_LIMIT`, and
//!   every instance from the log's floor through `chosen_through` is held.
//!
//! The API is the subset of `BTreeMap<Instance, T>` the group uses, with the same
//! meaning, so iteration is in ascending instance order as before.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};

use super::types::Instance;

/// Slots by instance; see the module docs.
#[derive(Clone, Debug)]
pub(super) struct SlotLog<T> {
    /// Instance of `slots[0]` (meaningless while `slots` is empty).
    base: u64,
    /// One element per instance from `base` on; `None` for a hole.
    slots: VecDeque<Option<T>>,
    /// Elements holding a value.
    len: usize,
}

impl<T> Default for SlotLog<T> {
    fn default() -> Self {
        SlotLog {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> SlotLog<T> {
    /// An empty log.
    pub(super) fn new() -> SlotLog<T> {
        SlotLog::default()
    }

    /// Slots held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Index of `instance` in `slots`, when it lies inside them.
    fn index(&self, instance: Instance) -> Option<usize> {
        let offset = instance.0.checked_sub(self.base)?;
        let offset = usize::try_from(offset).ok()?;
        (offset < self.slots.len()).then_some(offset)
    }

    /// The slot at `instance`.
    pub(super) fn get(&self, instance: &Instance) -> Option<&T> {
        self.index(*instance)
            .and_then(|i| self.slots.get(i))
            .and_then(Option::as_ref)
    }

    /// The slot at `instance`, mutable.
    pub(super) fn get_mut(&mut self, instance: &Instance) -> Option<&mut T> {
        self.index(*instance)
            .and_then(|i| self.slots.get_mut(i))
            .and_then(Option::as_mut)
    }

    /// Whether a slot is held at `instance`.
    pub(super) fn contains_key(&self, instance: &Instance) -> bool {
        self.get(instance).is_some()
    }

    /// The lowest slot held.
    pub(super) fn first_key_value(&self) -> Option<(Instance, &T)> {
        self.slots
            .front()
            .and_then(Option::as_ref)
            .map(|slot| (Instance(self.base), slot))
    }

    /// The highest slot held.
    pub(super) fn last_key_value(&self) -> Option<(Instance, &T)> {
        let last = self.base + self.slots.len().saturating_sub(1) as u64;
        self.slots
            .back()
            .and_then(Option::as_ref)
            .map(|slot| (Instance(last), slot))
    }

    /// Puts `value` at `instance`, returning the slot it replaces.
    pub(super) fn insert(&mut self, instance: Instance, value: T) -> Option<T> {
        if self.slots.is_empty() {
            self.base = instance.0;
            self.slots.push_back(Some(value));
            self.len = 1;
            return None;
        }
        if instance.0 < self.base {
            let gap = self.base - instance.0;
            for _ in 1..gap {
                self.slots.push_front(None);
            }
            self.slots.push_front(Some(value));
            self.base = instance.0;
            self.len += 1;
            return None;
        }
        let offset = instance.0 - self.base;
        let end = self.slots.len() as u64;
        if offset >= end {
            for _ in end..offset {
                self.slots.push_back(None);
            }
            self.slots.push_back(Some(value));
            self.len += 1;
            return None;
        }
        let index = usize::try_from(offset).expect("offset below slots.len()");
        let old = self.slots[index].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Takes the slot at `instance` out of the log.
    pub(super) fn remove(&mut self, instance: &Instance) -> Option<T> {
        let index = self.index(*instance)?;
        let old = self.slots[index].take()?;
        self.len -= 1;
        self.trim();
        Some(old)
    }

    /// Drops the empty elements at both ends (the invariant after a removal).
    fn trim(&mut self) {
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        while let Some(None) = self.slots.back() {
            self.slots.pop_back();
        }
    }

    /// Keeps the slots below `instance` and returns those at and above it, as
    /// `BTreeMap::split_off`.
    pub(super) fn split_off(&mut self, instance: &Instance) -> SlotLog<T> {
        let cut = if instance.0 <= self.base {
            0
        } else {
            usize::try_from(instance.0 - self.base)
                .unwrap_or(usize::MAX)
                .min(self.slots.len())
        };
        let tail = self.slots.split_off(cut);
        let mut upper = SlotLog {
            base: self.base.max(instance.0),
            len: tail.iter().filter(|slot| slot.is_some()).count(),
            slots: tail,
        };
        self.len -= upper.len;
        upper.trim();
        self.trim();
        upper
    }

    /// The index range of `range` inside `slots`.
    fn indexes(&self, range: &impl RangeBounds<Instance>) -> std::ops::Range<usize> {
        let at = |instance: u64| -> usize {
            usize::try_from(instance.saturating_sub(self.base))
                .unwrap_or(usize::MAX)
                .min(self.slots.len())
        };
        let start = match range.start_bound() {
            Bound::Included(i) => at(i.0),
            Bound::Excluded(i) => at(i.0.saturating_add(1)),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) if i.0 < self.base => 0,
            Bound::Included(i) => at(i.0.saturating_add(1)),
            Bound::Excluded(i) => at(i.0),
            Bound::Unbounded => self.slots.len(),
        };
        start..end.max(start)
    }

    /// The slots, ascending, by value.
    pub(super) fn into_values(self) -> impl Iterator<Item = T> {
        self.slots.into_iter().flatten()
    }

    /// The slots in `range`, ascending.
    pub(super) fn range(
        &self,
        range: impl RangeBounds<Instance>,
    ) -> impl Iterator<Item = (Instance, &T)> + '_ {
        let indexes = self.indexes(&range);
        let base = self.base;
        self.slots
            .range(indexes.clone())
            .zip(indexes)
            .filter_map(move |(slot, i)| slot.as_ref().map(|s| (Instance(base + i as u64), s)))
    }

    /// The slots in `range`, ascending, mutable.
    pub(super) fn range_mut(
        &mut self,
        range: impl RangeBounds<Instance>,
    ) -> impl Iterator<Item = (Instance, &mut T)> + '_ {
        let indexes = self.indexes(&range);
        let base = self.base;
        self.slots
            .range_mut(indexes.clone())
            .zip(indexes)
            .filter_map(move |(slot, i)| slot.as_mut().map(|s| (Instance(base + i as u64), s)))
    }
}

#[cfg(test)]
mod tests {
    use super::SlotLog;
    use crate::paxos::types::Instance;
    use crate::prng::Prng;
    use std::collections::BTreeMap;

    fn same(log: &SlotLog<u64>, model: &BTreeMap<Instance, u64>, context: &str) {
        assert_eq!(log.len(), model.len(), "{context}: len");
        let got: Vec<(Instance, u64)> = log.range(..).map(|(i, v)| (i, *v)).collect();
        let want: Vec<(Instance, u64)> = model.iter().map(|(i, v)| (*i, *v)).collect();
        assert_eq!(got, want, "{context}: contents");
        assert_eq!(
            log.first_key_value().map(|(i, v)| (i, *v)),
            model.first_key_value().map(|(i, v)| (*i, *v)),
            "{context}: first"
        );
        assert_eq!(
            log.last_key_value().map(|(i, v)| (i, *v)),
            model.last_key_value().map(|(i, v)| (*i, *v)),
            "{context}: last"
        );
        if let (Some(front), Some(back)) = (log.slots.front(), log.slots.back()) {
            assert!(front.is_some() && back.is_some(), "{context}: ends trimmed");
        }
    }

    /// Every operation against a `BTreeMap` model, on random keys clustered as a
    /// group's are (a moving window with holes), with random ranges.
    #[test]
    fn behaves_as_an_ordered_map() {
        for seed in 0..200u64 {
            let mut rng = Prng::new(seed);
            let mut log = SlotLog::new();
            let mut model = BTreeMap::new();
            let mut floor = rng.range(0, 5);
            for step in 0..400 {
                let context = format!("seed {seed} step {step}");
                let key = Instance(floor + rng.range(0, 40));
                match rng.range(0, 10) {
                    0..=3 => {
                        let value = rng.next_u64();
                        assert_eq!(
                            log.insert(key, value),
                            model.insert(key, value),
                            "{context}"
                        );
                    }
                    4 => assert_eq!(log.remove(&key), model.remove(&key), "{context}"),
                    5 => {
                        if let Some(v) = log.get_mut(&key) {
                            *v += 1;
                        }
                        if let Some(v) = model.get_mut(&key) {
                            *v += 1;
                        }
                    }
                    6 => {
                        let lo = Instance(floor + rng.range(0, 45));
                        let hi = Instance(lo.0 + rng.range(0, 20));
                        let got: Vec<_> = log.range(lo..=hi).map(|(i, v)| (i, *v)).collect();
                        let want: Vec<_> = model.range(lo..=hi).map(|(i, v)| (*i, *v)).collect();
                        assert_eq!(got, want, "{context}: range {}..={}", lo.0, hi.0);
                        let got: Vec<_> = log.range(lo..).map(|(i, v)| (i, *v)).collect();
                        let want: Vec<_> = model.range(lo..).map(|(i, v)| (*i, *v)).collect();
                        assert_eq!(got, want, "{context}: range {}..", lo.0);
                        for (_, v) in log.range_mut(..=hi) {
                            *v ^= 1;
                        }
                        for (_, v) in model.range_mut(..=hi) {
                            *v ^= 1;
                        }
                    }
                    7 => {
                        let at = Instance(floor + rng.range(0, 45));
                        if rng.range(0, 2) == 0 {
                            log = log.split_off(&at);
                            model = model.split_off(&at);
                        } else {
                            let upper = log.split_off(&at);
                            let model_upper = model.split_off(&at);
                            same(&upper, &model_upper, &context);
                        }
                    }
                    8 => floor += rng.range(0, 8),
                    9..=u64::MAX => {
                        assert_eq!(log.get(&key), model.get(&key), "{context}");
                        assert_eq!(log.contains_key(&key), model.contains_key(&key));
                    }
                }
                same(&log, &model, &context);
            }
        }
    }

    #[test]
    fn ranges_at_the_edges() {
        let mut log = SlotLog::new();
        for i in [5u64, 6, 9] {
            log.insert(Instance(i), i);
        }
        let keys = |it: Vec<(Instance, &u64)>| it.into_iter().map(|(i, _)| i.0).collect::<Vec<_>>();
        assert_eq!(keys(log.range(..=Instance(4)).collect()), Vec::<u64>::new());
        assert_eq!(keys(log.range(..=Instance(0)).collect()), Vec::<u64>::new());
        assert_eq!(keys(log.range(Instance(10)..).collect()), Vec::<u64>::new());
        assert_eq!(keys(log.range(Instance(0)..).collect()), vec![5, 6, 9]);
        assert_eq!(
            keys(log.range(Instance(6)..=Instance(8)).collect()),
            vec![6]
        );
        assert_eq!(
            keys(log.range(Instance(u64::MAX)..).collect()),
            Vec::<u64>::new()
        );
        assert_eq!(
            keys(log.range(..=Instance(u64::MAX)).collect()),
            vec![5, 6, 9]
        );
        assert_eq!(log.remove(&Instance(5)), Some(5));
        assert_eq!(log.first_key_value().map(|(i, _)| i.0), Some(6));
        assert_eq!(log.remove(&Instance(9)), Some(9));
        assert_eq!(log.slots.len(), 1, "holes at the ends are dropped");
    }
}
