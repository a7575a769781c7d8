//! Timer wheel at one million timers (one per connection at the 1M-connection target).
//!
//! Each benchmark runs one batch of 1,000,000 operations per iteration, so
//! `time per iteration / 1e6` is the cost per operation (criterion's `thrpt` line shows the
//! same as elements per second). Deadlines are spread uniformly over 5 minutes of 10 ms ticks
//! (the server's default `tick`; the engine's own default is 20 ms),
//! the range of idle, heartbeat and ping timeouts; keys are touched in a shuffled order so that
//! node accesses miss the cache as they would under real traffic.
//!
//! Run: `cargo bench --bench wheel` (add `-- --quick` style filters as usual).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::time::Duration;
use uringcast::engine::wheel::Wheel;

const TIMERS: u32 = 1_000_000;
/// 5 minutes of 10 ms ticks: crosses levels 0, 1 and 2.
const SPREAD_TICKS: u64 = 30_000;

struct Fixture {
    deadlines: Vec<u64>,
    order: Vec<u32>,
}

impl Fixture {
    fn new() -> Fixture {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let deadlines = (0..TIMERS).map(|_| rng.u64(1..=SPREAD_TICKS)).collect();
        let mut order: Vec<u32> = (0..TIMERS).collect();
        rng.shuffle(&mut order);
        Fixture { deadlines, order }
    }

    fn full_wheel(&self) -> Wheel {
        let mut wheel = Wheel::with_capacity(TIMERS as usize);
        for &key in &self.order {
            wheel.insert(key, self.deadlines[key as usize]);
        }
        wheel
    }
}

fn wheel_1m(c: &mut Criterion) {
    let fx = Fixture::new();
    let mut group = c.benchmark_group("wheel_1m");
    group.throughput(Throughput::Elements(u64::from(TIMERS)));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));

    group.bench_function("insert", |b| {
        b.iter_batched(
            || Wheel::with_capacity(TIMERS as usize),
            |mut wheel| {
                for &key in &fx.order {
                    wheel.insert(key, fx.deadlines[key as usize]);
                }
                wheel // dropped outside the timed region
            },
            BatchSize::PerIteration,
        )
    });

    // Same deadlines, keys in slab order (a connect storm fills the slab sequentially): shows
    // how much of `insert` is cache misses on the 24 MB node array.
    group.bench_function("insert_sequential_keys", |b| {
        b.iter_batched(
            || Wheel::with_capacity(TIMERS as usize),
            |mut wheel| {
                for key in 0..TIMERS {
                    wheel.insert(key, fx.deadlines[key as usize]);
                }
                wheel
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("cancel", |b| {
        b.iter_batched(
            || fx.full_wheel(),
            |mut wheel| {
                for &key in &fx.order {
                    black_box(wheel.remove(key));
                }
                assert!(wheel.is_empty());
                wheel
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("advance_all_expire", |b| {
        b.iter_batched(
            || (fx.full_wheel(), Vec::with_capacity(TIMERS as usize)),
            |(mut wheel, mut expired)| {
                // One advance per tick, as the worker loop does.
                for tick in 1..=SPREAD_TICKS {
                    wheel.advance(tick, &mut expired);
                }
                assert_eq!(expired.len(), TIMERS as usize);
                (wheel, expired)
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("reschedule_later_lazy", |b| {
        b.iter_batched(
            || fx.full_wheel(),
            |mut wheel| {
                // An idle timeout pushed back on a read: later than the registered slot.
                for &key in &fx.order {
                    wheel.insert(key, fx.deadlines[key as usize] + 100);
                }
                wheel
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("reschedule_earlier_relink", |b| {
        b.iter_batched(
            || fx.full_wheel(),
            |mut wheel| {
                for &key in &fx.order {
                    wheel.insert(key, fx.deadlines[key as usize] / 2);
                }
                wheel
            },
            BatchSize::PerIteration,
        )
    });

    group.bench_function("advance_after_lazy_reschedule", |b| {
        b.iter_batched(
            || {
                let mut wheel = fx.full_wheel();
                for &key in &fx.order {
                    wheel.insert(key, fx.deadlines[key as usize] + 100);
                }
                (wheel, Vec::with_capacity(TIMERS as usize))
            },
            |(mut wheel, mut expired)| {
                for tick in 1..=SPREAD_TICKS + 100 {
                    wheel.advance(tick, &mut expired);
                }
                assert_eq!(expired.len(), TIMERS as usize);
                (wheel, expired)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, wheel_1m);
criterion_main!(benches);
