//! Model tests: the wheel against a `BTreeMap` of (deadline, key), checking the exact set of
//! expired keys after every advance, plus `len`, `deadline` and the "never late" promise of
//! `next_deadline`.

use super::{Wheel, MAX_DELAY_TICKS};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Reference implementation: an ordered set of (deadline, key) and a key → deadline map.
#[derive(Default)]
struct Model {
    now: u64,
    by_deadline: BTreeSet<(u64, u32)>,
    by_key: BTreeMap<u32, u64>,
}

impl Model {
    fn insert(&mut self, key: u32, deadline: u64) {
        let deadline = deadline.min(self.now + MAX_DELAY_TICKS);
        self.remove(key);
        self.by_deadline.insert((deadline, key));
        self.by_key.insert(key, deadline);
    }

    fn remove(&mut self, key: u32) -> bool {
        match self.by_key.remove(&key) {
            Some(old) => self.by_deadline.remove(&(old, key)),
            None => false,
        }
    }

    fn advance(&mut self, now: u64) -> Vec<u32> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        while let Some(&(deadline, key)) = self.by_deadline.first() {
            if deadline > self.now {
                break;
            }
            self.by_deadline.pop_first();
            self.by_key.remove(&key);
            out.push(key);
        }
        out.sort_unstable();
        out
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Insert or move `key` to `now + delta` (delta may be negative: a deadline in the past).
    Insert {
        key: u32,
        delta: i64,
    },
    Remove {
        key: u32,
    },
    Advance {
        ticks: u64,
    },
}

/// Step against both and compare everything observable. Returns a description on mismatch.
fn step(wheel: &mut Wheel, model: &mut Model, op: &Op) -> Result<(), String> {
    match *op {
        Op::Insert { key, delta } => {
            let deadline = model.now.saturating_add_signed(delta);
            wheel.insert(key, deadline);
            model.insert(key, deadline);
        }
        Op::Remove { key } => {
            let (got, want) = (wheel.remove(key), model.remove(key));
            if got != want {
                return Err(format!("remove({key}) = {got}, model says {want}"));
            }
        }
        Op::Advance { ticks } => {
            let now = model.now + ticks;
            let mut got = Vec::new();
            wheel.advance(now, &mut got);
            got.sort_unstable();
            let want = model.advance(now);
            if got != want {
                return Err(format!("advance({now}): got {got:?}, want {want:?}"));
            }
        }
    }
    if wheel.now() != model.now || wheel.len() != model.by_key.len() {
        return Err(format!(
            "now {} vs {}, len {} vs {}",
            wheel.now(),
            model.now,
            wheel.len(),
            model.by_key.len()
        ));
    }
    for (&key, &deadline) in &model.by_key {
        if wheel.deadline(key) != Some(deadline) {
            return Err(format!(
                "deadline({key}) = {:?}, want {deadline}",
                wheel.deadline(key)
            ));
        }
    }
    let earliest = model.by_deadline.first().map(|&(d, _)| d.max(model.now));
    match (wheel.next_deadline(), earliest) {
        (None, None) => {}
        (Some(next), Some(earliest)) if next <= earliest && next >= model.now => {}
        (next, earliest) => {
            return Err(format!(
                "next_deadline {next:?} vs earliest due {earliest:?}"
            ));
        }
    }
    Ok(())
}

/// Deltas spread over every level, the top-level wrap and beyond the range.
fn delta_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -70i64..200,
        3 => 0i64..20_000,
        2 => 0i64..(1 << 26),
        1 => (1i64 << 30)..(1i64 << 37),
        1 => Just(MAX_DELAY_TICKS as i64),
        1 => Just(i64::MAX),
    ]
}

fn ticks_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..80,
        2 => 0u64..5_000,
        1 => 0u64..(1 << 25),
        1 => (1u64 << 30)..(1u64 << 37),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u32..48, delta_strategy()).prop_map(|(key, delta)| Op::Insert { key, delta }),
        1 => (0u32..48).prop_map(|key| Op::Remove { key }),
        3 => ticks_strategy().prop_map(|ticks| Op::Advance { ticks }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wheel_matches_btreemap_model(
        start in prop_oneof![Just(0u64), 0u64..(1 << 40)],
        ops in proptest::collection::vec(op_strategy(), 1..200),
    ) {
        let mut wheel = Wheel::with_capacity(16); // keys up to 47 exercise growth
        let mut model = Model::default();
        step(&mut wheel, &mut model, &Op::Advance { ticks: start }).map_err(TestCaseError::fail)?;
        for (i, op) in ops.iter().enumerate() {
            step(&mut wheel, &mut model, op)
                .map_err(|e| TestCaseError::fail(format!("op #{i} {op:?}: {e}")))?;
        }
        // Drain everything: the full range plus one rotation of the top level.
        step(&mut wheel, &mut model, &Op::Advance { ticks: 2 * MAX_DELAY_TICKS + 2 })
            .map_err(TestCaseError::fail)?;
        prop_assert!(wheel.is_empty());
    }
}

/// Many keys, long runs, idle-timeout style resets: deterministic so a failure replays exactly.
#[test]
fn wheel_matches_model_deterministic_random() {
    for seed in 0..8u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut wheel = Wheel::with_capacity(256);
        let mut model = Model::default();
        for i in 0..20_000 {
            let op = match rng.u32(0..10) {
                0..=4 => {
                    let delta = match rng.u32(0..6) {
                        0 => rng.i64(-10..100),
                        1 | 2 => rng.i64(0..5_000),
                        3 => rng.i64(0..1 << 24),
                        4 => rng.i64(0..1 << 37),
                        _ => 3_000 + rng.i64(0..64), // idle reset: mostly later, lazy
                    };
                    Op::Insert {
                        key: rng.u32(0..1_000),
                        delta,
                    }
                }
                5 => Op::Remove {
                    key: rng.u32(0..1_000),
                },
                _ => Op::Advance {
                    ticks: match rng.u32(0..8) {
                        0..=5 => rng.u64(0..64),
                        6 => rng.u64(0..10_000),
                        _ => rng.u64(0..1 << 31),
                    },
                },
            };
            if let Err(e) = step(&mut wheel, &mut model, &op) {
                panic!("seed {seed} op #{i} {op:?}: {e}");
            }
        }
    }
}
