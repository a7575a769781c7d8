//! Property test: `Topics::replay` against a model that keeps every message ever published
//! in one `Vec` and marks evictions, recomputing everything by brute force.

use proptest::prelude::*;

use super::*;

const TOPICS: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Op {
    Publish {
        topic: usize,
        len: usize,
        event: bool,
    },
    /// Topics as a bitmask over `TOPICS` (plus a duplicate of the first), and an id offset
    /// from 0 that may run past the last id.
    Replay { mask: u8, dup: bool, requested: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..TOPICS.len(), 0usize..60, any::<bool>())
            .prop_map(|(topic, len, event)| Op::Publish { topic, len, event }),
        1 => (1u8..16, any::<bool>(), 0u64..40)
            .prop_map(|(mask, dup, requested)| Op::Replay { mask, dup, requested }),
    ]
}

struct ModelMsg {
    id: u64,
    topic: usize,
    bytes: usize,
    evicted: bool,
}

struct Model {
    msgs: Vec<ModelMsg>,
}

impl Model {
    fn publish(&mut self, id: u64, topic: usize, bytes: usize, limits: &HubLimits) {
        self.msgs.push(ModelMsg {
            id,
            topic,
            bytes,
            evicted: false,
        });
        loop {
            let held: Vec<usize> = (0..self.msgs.len())
                .filter(|&i| self.msgs[i].topic == topic && !self.msgs[i].evicted)
                .collect();
            let bytes: usize = held.iter().map(|&i| self.msgs[i].bytes).sum();
            if held.len() <= limits.history_messages && bytes <= limits.history_bytes {
                break;
            }
            self.msgs[held[0]].evicted = true;
        }
    }

    /// (gap?, event ids, per-topic gaps as (name, oldest_held), overall oldest_held)
    fn replay(
        &self,
        topics: &[usize],
        requested: u64,
        last_id: u64,
    ) -> (bool, Vec<u64>, Vec<(String, u64)>, u64) {
        let future = requested > last_id;
        let after = if future { 0 } else { requested };
        let mut uniq: Vec<usize> = Vec::new();
        for &t in topics {
            if !uniq.contains(&t) {
                uniq.push(t);
            }
        }
        let events: Vec<u64> = self
            .msgs
            .iter()
            .filter(|m| uniq.contains(&m.topic) && !m.evicted && m.id > after)
            .map(|m| m.id)
            .collect();
        let mut gaps = Vec::new();
        for &t in &uniq {
            let of_t = || self.msgs.iter().filter(move |m| m.topic == t);
            if future {
                let oldest = of_t().find(|m| !m.evicted).map_or(last_id + 1, |m| m.id);
                gaps.push((TOPICS[t].to_string(), oldest));
            } else if let Some(lost) = of_t()
                .filter(|m| m.evicted && m.id > requested)
                .max_by_key(|m| m.id)
            {
                gaps.push((TOPICS[t].to_string(), lost.id + 1));
            }
        }
        let oldest = gaps.iter().map(|g| g.1).max().unwrap_or(0);
        (!gaps.is_empty(), events, gaps, oldest)
    }
}

proptest! {
    #[test]
    fn replay_matches_a_brute_force_model(
        history_messages in 0usize..5,
        history_bytes in 150usize..900,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let limits = HubLimits { history_messages, history_bytes, ..HubLimits::default() };
        let mut topics = Topics::new(limits.clone());
        let mut model = Model { msgs: Vec::new() };
        for op in ops {
            match op {
                Op::Publish { topic, len, event } => {
                    let data = "é".repeat(len / 2) + &"\n".repeat(len % 2);
                    let event = event.then_some("ev");
                    let msg = topics.publish(TOPICS[topic], event, &data).unwrap();
                    model.publish(msg.id, topic, msg.held_bytes(), &limits);
                }
                Op::Replay { mask, dup, requested } => {
                    let mut names: Vec<usize> =
                        (0..TOPICS.len()).filter(|i| mask & (1 << i) != 0).collect();
                    if dup {
                        names.push(names[0]);
                    }
                    let strs: Vec<&str> = names.iter().map(|&i| TOPICS[i]).collect();
                    let got = topics.replay(&strs, requested);
                    let got = match &got {
                        Replay::Events { events, last_id } => {
                            prop_assert_eq!(*last_id, topics.last_id());
                            (false, events.iter().map(|m| m.id).collect(), vec![], 0)
                        }
                        Replay::Gap { oldest_held, requested: r, gaps, events, last_id } => {
                            prop_assert_eq!(*r, requested);
                            prop_assert_eq!(*last_id, topics.last_id());
                            let gaps: Vec<(String, u64)> = gaps
                                .iter()
                                .map(|g| (g.topic.to_string(), g.oldest_held))
                                .collect();
                            (true, events.iter().map(|m| m.id).collect(), gaps, *oldest_held)
                        }
                    };
                    prop_assert_eq!(got, model.replay(&names, requested, topics.last_id()));
                }
            }
            topics.check_invariants();
        }
    }
}
