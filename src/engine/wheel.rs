//! STUB: replaced by the real wheel at merge
//!
//! Throwaway timer wheel with the exact API of the real one (docs API.md), built on a
//! `BTreeMap` so the engine branch compiles and its tests run. It never touches a clock.

use std::collections::{BTreeSet, HashMap};

/// Stand-in for the hierarchical hashed wheel: ordered set of (deadline, key).
#[derive(Debug, Default)]
pub struct Wheel {
    now: u64,
    by_key: HashMap<u32, u64>,
    ordered: BTreeSet<(u64, u32)>,
}

impl Wheel {
    pub fn with_capacity(keys: usize) -> Wheel {
        Wheel {
            now: 0,
            by_key: HashMap::with_capacity(keys.min(1 << 16)),
            ordered: BTreeSet::new(),
        }
    }

    pub fn insert(&mut self, key: u32, deadline_tick: u64) {
        self.remove(key);
        self.by_key.insert(key, deadline_tick);
        self.ordered.insert((deadline_tick, key));
    }

    pub fn remove(&mut self, key: u32) -> bool {
        match self.by_key.remove(&key) {
            Some(d) => {
                self.ordered.remove(&(d, key));
                true
            }
            None => false,
        }
    }

    pub fn deadline(&self, key: u32) -> Option<u64> {
        self.by_key.get(&key).copied()
    }

    pub fn advance(&mut self, now_tick: u64, expired: &mut Vec<u32>) {
        self.now = self.now.max(now_tick);
        while let Some(&(d, key)) = self.ordered.first() {
            if d > self.now {
                break;
            }
            self.ordered.pop_first();
            self.by_key.remove(&key);
            expired.push(key);
        }
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.ordered.first().map(|&(d, _)| d)
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
