//! Unit tests for `Topics`: history bounds, replay order, gap edges, the topic-count bound, and
//! the replay-then-live contract of the module doc, with a fake worker inbox.

use std::sync::Arc;

use super::*;

fn limits(history_messages: usize, history_bytes: usize) -> HubLimits {
    HubLimits {
        history_messages,
        history_bytes,
        ..HubLimits::default()
    }
}

fn ids(msgs: &[Arc<Message>]) -> Vec<u64> {
    msgs.iter().map(|m| m.id).collect()
}

/// (variant is gap, event ids, last_id, overall oldest_held or 0)
fn summary(r: &Replay) -> (bool, Vec<u64>, u64, u64) {
    match r {
        Replay::Events { events, last_id } => (false, ids(events), *last_id, 0),
        Replay::Gap {
            oldest_held,
            events,
            last_id,
            ..
        } => (true, ids(events), *last_id, *oldest_held),
    }
}

#[test]
fn ids_start_at_one_and_increase_across_topics() {
    let mut t = Topics::new(HubLimits::default());
    assert_eq!(t.last_id(), 0);
    let a = t.publish("a", None, "x").unwrap();
    let b = t.publish("b", Some("e"), "y").unwrap();
    assert_eq!((a.id, b.id, t.last_id()), (1, 2, 2));
    assert_eq!(&*b.topic, "b");
    assert_eq!(b.event.as_deref(), Some("e"));
}

#[test]
fn failed_publish_consumes_no_id() {
    let mut t = Topics::new(limits(8, 1 << 20));
    t.publish("a", None, "x").unwrap();
    assert_eq!(
        t.publish("bad topic", None, "x").unwrap_err(),
        HubError::TopicInvalid
    );
    assert_eq!(
        t.publish("a", Some("reset"), "x").unwrap_err(),
        HubError::EventInvalid
    );
    let big = "x".repeat(t.limits().data_bytes_max + 1);
    assert!(matches!(
        t.publish("a", None, &big),
        Err(HubError::DataTooLarge { .. })
    ));
    assert_eq!(t.publish("a", None, "y").unwrap().id, 2);
    t.check_invariants();
}

#[test]
fn history_bounded_by_message_count() {
    let mut t = Topics::new(limits(3, 1 << 20));
    for _ in 0..5 {
        t.publish("a", None, "x").unwrap();
        t.check_invariants();
    }
    let r = t.replay(&["a"], 0);
    assert_eq!(summary(&r), (true, vec![3, 4, 5], 5, 3));
}

#[test]
fn history_bytes_accounting_is_exact_at_the_boundary() {
    // All messages on "a" with 10-byte data have the same encoded size for one-digit ids.
    let m = Message::encode(
        crate::hub::EventId { epoch: 0, seq: 1 },
        "a".into(),
        None,
        "0123456789",
    )
    .held_bytes();
    for (budget, held) in [(3 * m, 3), (3 * m - 1, 2), (m, 1), (m - 1, 0)] {
        let mut t = Topics::new(limits(100, budget));
        for _ in 0..5 {
            t.publish("a", None, "0123456789").unwrap();
            t.check_invariants();
        }
        assert_eq!(t.held_bytes(), held * m, "budget {budget}");
        let r = t.replay(&["a"], 0);
        let want: Vec<u64> = (6 - held as u64..=5).collect();
        assert_eq!(ids(r.events()), want, "budget {budget}");
    }
}

#[test]
fn message_larger_than_history_goes_out_but_is_recorded_as_evicted() {
    let mut t = Topics::new(limits(10, 200));
    t.publish("a", None, "small").unwrap();
    let big = t.publish("a", None, &"x".repeat(300)).unwrap();
    assert_eq!(big.id, 2);
    t.check_invariants();
    assert_eq!(t.held_bytes(), 0);
    match t.replay(&["a"], 1) {
        Replay::Gap { gaps, events, .. } => {
            assert!(events.is_empty());
            assert_eq!(gaps[0].oldest_held, 3, "id 2 is lost for replay");
        }
        r => panic!("expected a gap, got {r:?}"),
    }
}

#[test]
fn replay_merges_topics_in_id_order_and_ignores_duplicate_names() {
    let mut t = Topics::new(HubLimits::default());
    for topic in ["a", "b", "c", "a", "c", "b", "c", "a"] {
        t.publish(topic, None, topic).unwrap();
    }
    let r = t.replay(&["c", "a", "c"], 0);
    assert_eq!(summary(&r), (false, vec![1, 3, 4, 5, 7, 8], 8, 0));
    let r = t.replay(&["c", "a"], 4);
    assert_eq!(ids(r.events()), vec![5, 7, 8]);
}

#[test]
fn gap_edges_at_the_oldest_id_from_zero_and_beyond_last() {
    let mut t = Topics::new(limits(3, 1 << 20));
    for _ in 0..5 {
        t.publish("a", None, "x").unwrap(); // ids 1..=5; 1 and 2 evicted
    }
    // (requested, gap?, events, oldest_held)
    let table = [
        (0, true, vec![3, 4, 5], 3),  // "from the start", but the start is gone
        (1, true, vec![3, 4, 5], 3),  // id 2 is lost
        (2, false, vec![3, 4, 5], 0), // exactly at the edge: the client has id 2
        (3, false, vec![4, 5], 0),
        (5, false, vec![], 0),       // up to date
        (6, true, vec![3, 4, 5], 3), // from the future: not from this server instance
        (u64::MAX, true, vec![3, 4, 5], 3),
    ];
    for (requested, gap, events, oldest) in table {
        let r = t.replay(&["a"], requested);
        assert_eq!(
            summary(&r),
            (gap, events, 5, oldest),
            "requested {requested}"
        );
        if let Replay::Gap {
            requested: got,
            gaps,
            ..
        } = &r
        {
            assert_eq!(*got, requested);
            assert_eq!(
                gaps,
                &vec![TopicGap {
                    topic: "a".into(),
                    oldest_held: 3
                }]
            );
        }
    }
}

#[test]
fn a_topic_whose_evictions_are_all_old_enough_is_no_gap() {
    let mut t = Topics::new(limits(2, 1 << 20));
    for topic in ["b", "b", "b", "a", "a"] {
        t.publish(topic, None, "x").unwrap(); // b: 1 evicted, 2 and 3 held; a: 4, 5
    }
    let r = t.replay(&["a", "b"], 1);
    assert_eq!(summary(&r), (false, vec![2, 3, 4, 5], 5, 0));
    match t.replay(&["a", "b", "never"], 0) {
        Replay::Gap {
            gaps, oldest_held, ..
        } => {
            assert_eq!(
                gaps,
                vec![TopicGap {
                    topic: "b".into(),
                    oldest_held: 2
                }]
            );
            assert_eq!(oldest_held, 2);
        }
        r => panic!("b lost id 1 after 0: {r:?}"),
    }
    // A topic never seen is not a gap, and replay creates no state for it.
    assert_eq!(summary(&t.replay(&["never"], 0)), (false, vec![], 5, 0));
    assert_eq!(t.topic_count(), 2);
}

#[test]
fn topic_count_bound_evicts_empty_topics_first_then_the_least_recently_published() {
    let mut full = Topics::new(HubLimits {
        topics_max: 2,
        ..limits(1, 1 << 20)
    });
    full.publish("a", None, "x").unwrap(); // 1
    full.publish("b", None, "x").unwrap(); // 2
    full.publish("a", None, "x").unwrap(); // 3: b is now the least recently published
    full.check_invariants();
    // Full, nothing empty: "c" evicts "b" with its history (id 2), never refuses.
    full.publish("c", None, "x").unwrap(); // 4
    full.check_invariants();
    assert_eq!(full.topic_count(), 2);
    assert!(
        matches!(full.replay(&["b"], 1), Replay::Gap { .. }),
        "b's id 2 is gone and replay says so"
    );
    assert!(matches!(full.replay(&["a"], 2), Replay::Events { .. }));
    // The table never fills for good: a thousand new topics through a table of two.
    for i in 0..1000 {
        full.publish(&format!("t{i}"), None, "x").unwrap();
    }
    full.check_invariants();
    assert_eq!(full.topic_count(), 2);

    // With no history every topic is empty after its publish, so it can make room; the
    // dropped topics' eviction records become one conservative bound.
    let mut t = Topics::new(HubLimits {
        topics_max: 2,
        ..limits(0, 1 << 20)
    });
    t.publish("a", None, "x").unwrap(); // 1
    t.publish("b", None, "x").unwrap(); // 2
    t.publish("c", None, "x").unwrap(); // 3: drops a and b
    t.check_invariants();
    assert_eq!(t.topic_count(), 1);
    assert!(
        matches!(t.replay(&["a"], 1), Replay::Gap { .. }),
        "a lost id 1"
    );
    assert!(
        matches!(t.replay(&["zz"], 1), Replay::Gap { .. }),
        "unknown now may be a forgotten topic: conservative"
    );
    assert!(matches!(t.replay(&["a"], 2), Replay::Events { .. }));
}

/// One worker: an inbox the publisher pushes to under the lock, drained later, plus a local
/// index and one connection's queue. Every interleaving of "worker drained k inbox entries"
/// and "subscriber resumes from L" must yield each id after L once, in order.
fn race(watermark: bool) -> Result<(), String> {
    const TOTAL: usize = 6;
    for before in 0..=TOTAL {
        for drained in 0..=before {
            for requested in 0..=before as u64 {
                let mut topics = Topics::new(HubLimits::default());
                let mut inbox: Vec<Arc<Message>> = Vec::new();
                let mut index: LocalIndex<u32> = LocalIndex::new(4);
                let mut conn = ConnTopics::new();
                let mut queue: Vec<u64> = Vec::new();
                let publish = |topics: &mut Topics, inbox: &mut Vec<Arc<Message>>, i: usize| {
                    let topic = if i % 3 == 2 { "other" } else { "a" };
                    inbox.push(topics.publish(topic, None, "x").unwrap());
                };
                for i in 0..before {
                    publish(&mut topics, &mut inbox, i);
                }
                let drain = |inbox: &[Arc<Message>], index: &LocalIndex<u32>, q: &mut Vec<u64>| {
                    for m in inbox {
                        q.extend(index.deliveries(m).map(|_| m.id));
                    }
                };
                drain(&inbox[..drained], &index, &mut queue);
                // Under the lock: replay, then subscribe with its last_id.
                let replay = topics.replay(&["a"], requested);
                let after = if watermark { replay.last_id() } else { 0 };
                let _ = index.subscribe(&mut conn, 1, "a", after).unwrap();
                queue.extend(ids(replay.events()));
                for i in before..TOTAL {
                    publish(&mut topics, &mut inbox, i);
                }
                drain(&inbox[drained..], &index, &mut queue);
                let want: Vec<u64> = (1..=TOTAL as u64)
                    .filter(|id| id % 3 != 0 && *id > requested)
                    .collect();
                if queue != want {
                    return Err(format!(
                        "before {before} drained {drained} requested {requested}: {queue:?} != {want:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn publish_racing_replay_has_no_gap_and_no_duplicate() {
    race(true).unwrap();
}

#[test]
fn without_the_watermark_the_race_test_does_see_duplicates() {
    // Proves the test above can fail: with watermark 0, undrained inbox entries that the
    // replay already carried are delivered twice.
    let err = race(false).unwrap_err();
    assert!(err.contains("!="), "{err}");
}

/// Paging: with a budget of a few messages per page and publishes between pages, the pages
/// together carry exactly every message after the resume point, in id order, and the replay
/// catches up with a watermark equal to the last id at that moment.
#[test]
fn paged_replay_with_publishes_between_pages_is_exact_and_in_order() {
    let mut rng = fastrand::Rng::with_seed(7);
    for seed_round in 0..50 {
        let mut t = Topics::new(limits(10_000, 1 << 30));
        let topics = ["a", "b", "c"];
        for i in 0..200 {
            let _ = t
                .publish(topics[rng.usize(..3)], None, &format!("m{i}"))
                .unwrap();
        }
        let requested = rng.u64(0..=200);
        let subscribed = ["a", "c"];
        let mut cursor = ReplayCursor::default();
        for s in subscribed {
            cursor.add(s, Some(requested));
        }
        let one = t.history_bytes_of_one_for_tests();
        let mut got: Vec<u64> = Vec::new();
        let watermark = loop {
            let page = t.replay_page(&mut cursor, one * rng.usize(1..5), false);
            assert!(page.gaps.is_empty(), "round {seed_round}");
            assert!(!page.events.is_empty() || page.caught_up.is_some());
            got.extend(ids(&page.events));
            if let Some(w) = page.caught_up {
                break w;
            }
            for _ in 0..rng.usize(0..4) {
                let _ = t.publish(topics[rng.usize(..3)], None, "later").unwrap();
            }
        };
        assert_eq!(watermark, t.last_id());
        let want: Vec<u64> = (requested + 1..=t.last_id())
            .filter(|&id| {
                let m = t.replay(&["a", "b", "c"], id - 1);
                m.events()
                    .first()
                    .is_some_and(|m| m.id == id && subscribed.contains(&&*m.topic))
            })
            .collect();
        assert_eq!(got, want, "round {seed_round}, requested {requested}");
    }
}

#[test]
fn paged_replay_reports_a_gap_when_history_is_trimmed_between_pages() {
    let mut t = Topics::new(limits(5, 1 << 30));
    for i in 0..5 {
        let _ = t.publish("a", None, &format!("{i}")).unwrap();
    }
    let mut cursor = ReplayCursor::default();
    cursor.add("a", Some(0));
    let one = t.history_bytes_of_one_for_tests();
    let page = t.replay_page(&mut cursor, one, false);
    assert_eq!((page.gaps.len(), ids(&page.events)), (0, vec![1]));
    // Eight more: ids 2..=8 are evicted (history keeps 9..=13).
    for i in 0..8 {
        let _ = t.publish("a", None, &format!("{i}")).unwrap();
    }
    let page = t.replay_page(&mut cursor, usize::MAX, false);
    assert_eq!(page.gaps.len(), 1);
    assert_eq!(page.gaps[0].oldest_held, 9);
    assert_eq!(ids(&page.events), (9..=13).collect::<Vec<_>>());
    assert_eq!(page.caught_up, Some(13));
}

#[test]
fn foreign_resume_resets_every_topic_and_replays_all_held() {
    let mut t = Topics::new(limits(3, 1 << 30));
    for i in 0..5 {
        let _ = t
            .publish(if i % 2 == 0 { "a" } else { "b" }, None, "x")
            .unwrap();
    }
    let mut cursor = ReplayCursor::default();
    cursor.add("a", None);
    cursor.add("b", None);
    cursor.add("never", None);
    let page = t.replay_page(&mut cursor, usize::MAX, true);
    let mut gaps: Vec<(String, u64)> = page
        .gaps
        .iter()
        .map(|g| (g.topic.to_string(), g.oldest_held))
        .collect();
    gaps.sort();
    assert_eq!(
        gaps,
        vec![("a".into(), 1), ("b".into(), 2), ("never".into(), 6)]
    );
    assert_eq!(ids(&page.events), vec![1, 2, 3, 4, 5]);
    assert_eq!(page.caught_up, Some(5));
}

#[test]
fn system_topics_take_only_the_system_publish_and_client_topics_only_the_client_one() {
    let mut t = Topics::new(limits(8, 1 << 20));
    assert_eq!(
        t.publish("$stats", None, "x").unwrap_err(),
        HubError::TopicInvalid
    );
    assert_eq!(
        t.publish_system("stats", None, "x").unwrap_err(),
        HubError::TopicInvalid
    );
    let m = t.publish_system("$stats", None, "x").unwrap();
    assert_eq!((m.id, &*m.topic), (1, "$stats"));
    t.check_invariants();
}

#[test]
fn topic_info_and_name_ordered_pages() {
    let mut t = Topics::new(limits(2, 1 << 20));
    for (topic, n) in [("c", 3), ("a", 1), ("b", 2), ("d", 1)] {
        for _ in 0..n {
            t.publish(topic, None, "x").unwrap();
        }
    }
    let c = t.topic_info("c").unwrap();
    assert_eq!(
        (&*c.name, c.held_messages, c.last_id),
        ("c", 2, 3),
        "history bounded at 2; c's last id is its third publish"
    );
    assert!(c.held_bytes > 0);
    assert_eq!(t.topic_info("zz"), None);
    let names = |v: Vec<TopicInfo>| v.iter().map(|i| i.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(t.topics_after(None, 2)), ["a", "b"]);
    assert_eq!(names(t.topics_after(Some("b"), 2)), ["c", "d"]);
    assert_eq!(names(t.topics_after(Some("a0"), 10)), ["b", "c", "d"]);
    assert_eq!(names(t.topics_after(Some("d"), 10)), Vec::<String>::new());
    assert_eq!(names(t.topics_after(None, 0)), Vec::<String>::new());
}
