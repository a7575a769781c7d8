//! Encode once, send many: the allocations of one publish plus its local fan-out must not
//! depend on how many subscribers receive it. A counting global allocator measures them.
//!
//! This binary holds one `#[test]` so no other test thread allocates while we count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use uringcast::hub::{admit, Admit, ConnTopics, HubLimits, LocalIndex, Message, Topics};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call unchanged to `System`, which upholds the `GlobalAlloc` contract;
// the only addition is a relaxed counter increment, which cannot allocate or unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same `layout` the caller gave us, valid per `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout` (we forward all allocs).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr`/`layout` came from `System` via this allocator; forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A worker with `subscribers` connections on topic "t", each with a pre-sized send queue.
struct Worker {
    index: LocalIndex<u32>,
    _conns: Vec<ConnTopics>,
    queues: Vec<Vec<Bytes>>,
    queued_bytes: Vec<usize>,
    inbox: Vec<Arc<Message>>,
}

impl Worker {
    fn new(subscribers: usize) -> Worker {
        let mut index = LocalIndex::new(4);
        let mut conns = Vec::new();
        for k in 0..subscribers {
            let mut c = ConnTopics::new();
            let _ = index.subscribe(&mut c, k as u32, "t", 0).unwrap();
            conns.push(c);
        }
        Worker {
            index,
            _conns: conns,
            queues: (0..subscribers).map(|_| Vec::with_capacity(64)).collect(),
            queued_bytes: vec![0; subscribers],
            inbox: Vec::with_capacity(64),
        }
    }

    /// The engine's delivery path: drain the inbox, clone the SSE bytes handle per subscriber.
    fn drain(&mut self) {
        for msg in self.inbox.drain(..) {
            for key in self.index.deliveries(&msg) {
                let k = key as usize;
                if admit(self.queued_bytes[k], msg.sse.len(), 1 << 20) == Admit::Send {
                    self.queued_bytes[k] += msg.sse.len();
                    self.queues[k].push(msg.sse.clone());
                }
            }
        }
        // The send completed: queues empty, capacity kept (as a real send queue would).
        for (q, b) in self.queues.iter_mut().zip(&mut self.queued_bytes) {
            q.clear();
            *b = 0;
        }
    }
}

/// Allocations for `rounds` publishes, each delivered to every subscriber, measured after a
/// warm-up that fills the history (so its ring buffer no longer grows).
fn allocs_per_publish(subscribers: usize, event: Option<&str>) -> (usize, usize) {
    let limits = HubLimits {
        history_messages: 16,
        ..HubLimits::default()
    };
    let mut topics = Topics::new(limits);
    let mut worker = Worker::new(subscribers);
    let data = "payload with a\nsecond line";
    for _ in 0..32 {
        worker.inbox.push(topics.publish("t", event, data).unwrap());
        worker.drain();
    }
    let rounds = 50;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        worker.inbox.push(topics.publish("t", event, data).unwrap());
        worker.drain();
    }
    let total = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(
        total % rounds,
        0,
        "every publish costs the same: {total} over {rounds}"
    );
    (total / rounds, worker.queues.len())
}

#[test]
fn allocations_per_publish_do_not_grow_with_subscribers() {
    for event in [None, Some("price")] {
        let (one, _) = allocs_per_publish(1, event);
        for n in [10, 1000, 10_000] {
            let (many, subs) = allocs_per_publish(n, event);
            assert_eq!(subs, n);
            assert_eq!(
                many, one,
                "allocations per publish: {one} with 1 subscriber, {many} with {n} (event {event:?})"
            );
        }
        // Message Arc, SSE buffer, WS buffer, event name when present, and the one-time
        // promotion of each Bytes handle on its first clone: small and fixed.
        assert!(one <= 6, "{one} allocations per publish");
        eprintln!("event {event:?}: {one} allocations per publish at 1..=10000 subscribers");
    }
}
