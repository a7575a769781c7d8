//! The run over time: per interval, how many latency samples arrived (deliveries or echoes)
//! and their percentiles, for the report's `timeline` and its SVG plot.
//!
//! Memory is bounded whatever the run's length: at most `BUCKETS_MAX` intervals, each with a
//! coarse histogram (2 significant digits, 1 µs to 60 s: about 11 KB). Intervals start at one
//! second; when the run outgrows them, neighbours merge pairwise and the interval doubles.
//! Each worker keeps its own; they merge at the end like the rest of `Stats`.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Intervals kept at most (the plot's resolution).
pub const BUCKETS_MAX: usize = 300;
const SECOND_NS: u64 = 1_000_000_000;
const LOW_NS: u64 = 1_000;
const HIGH_NS: u64 = 60 * SECOND_NS;

#[derive(Clone)]
struct Bucket {
    count: u64,
    latency: Histogram<u32>,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            count: 0,
            latency: Histogram::new_with_bounds(LOW_NS, HIGH_NS, 2).expect("static bounds"),
        }
    }

    fn merge(&mut self, o: &Bucket) {
        self.count += o.count;
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.latency.add(&o.latency);
    }
}

/// Latency samples by the harness-clock interval they arrived in.
#[derive(Clone)]
pub struct Timeline {
    width_ns: u64,
    buckets: Vec<Bucket>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            width_ns: SECOND_NS,
            buckets: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Timeline({} x {} ns)", self.buckets.len(), self.width_ns)
    }
}

/// One interval of the report's timeline; latency fields are `null` for an interval without
/// samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Start of the interval, seconds since the harness started.
    pub t_s: f64,
    pub width_s: f64,
    /// Samples (deliveries or echoes) per second in the interval.
    pub per_s: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
}

impl Timeline {
    /// A latency sample that arrived at `now_ns` (harness clock).
    pub fn record(&mut self, now_ns: u64, latency_ns: u64) {
        let mut at = (now_ns / self.width_ns) as usize;
        while at >= BUCKETS_MAX {
            self.widen(2);
            at = (now_ns / self.width_ns) as usize;
        }
        if self.buckets.len() <= at {
            self.buckets.resize_with(at + 1, Bucket::new);
        }
        let b = &mut self.buckets[at];
        b.count += 1;
        b.latency
            .saturating_record(latency_ns.clamp(LOW_NS, HIGH_NS));
    }

    /// Merge every `factor` neighbouring intervals into one.
    fn widen(&mut self, factor: u64) {
        if factor <= 1 {
            return;
        }
        let mut merged: Vec<Bucket> = Vec::with_capacity(self.buckets.len() / factor as usize + 1);
        for chunk in self.buckets.chunks(factor as usize) {
            let mut b = chunk[0].clone();
            for o in &chunk[1..] {
                b.merge(o);
            }
            merged.push(b);
        }
        self.buckets = merged;
        self.width_ns *= factor;
    }

    pub fn merge(&mut self, o: &Timeline) {
        // Widths are one second times a power of two, so the wider divides by the narrower.
        let width = self.width_ns.max(o.width_ns);
        self.widen(width / self.width_ns);
        let mut o = o.clone();
        o.widen(width / o.width_ns);
        if self.buckets.len() < o.buckets.len() {
            self.buckets.resize_with(o.buckets.len(), Bucket::new);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            a.merge(b);
        }
    }

    /// Every interval from the harness start to the last one with a sample.
    pub fn points(&self) -> Vec<TimelinePoint> {
        let width_s = self.width_ns as f64 / SECOND_NS as f64;
        let us = |ns: u64| (ns as f64 / 100.0).round() / 10.0;
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let h = &b.latency;
                let some = |v: u64| (!h.is_empty()).then(|| us(v));
                TimelinePoint {
                    t_s: i as f64 * width_s,
                    width_s,
                    per_s: b.count as f64 / width_s,
                    p50_us: some(h.value_at_quantile(0.5)),
                    p99_us: some(h.value_at_quantile(0.99)),
                    max_us: some(h.max()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_their_second_with_their_percentiles() {
        let mut t = Timeline::default();
        for i in 0..100u64 {
            t.record(SECOND_NS / 2, (i + 1) * 10_000); // 10 µs .. 1 ms in second 0
        }
        t.record(2 * SECOND_NS + 5, 5_000_000); // one 5 ms sample in second 2
        let p = t.points();
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].t_s, p[0].width_s, p[0].per_s), (0.0, 1.0, 100.0));
        let p50 = p[0].p50_us.unwrap();
        assert!((495.0..=510.0).contains(&p50), "{p50}");
        assert!((p[0].max_us.unwrap() - 1000.0).abs() <= 10.0, "{:?}", p[0]);
        assert_eq!((p[1].per_s, p[1].p50_us), (0.0, None), "an empty second");
        assert!((p[2].p99_us.unwrap() - 5000.0).abs() <= 50.0);
    }

    #[test]
    fn long_runs_stay_bounded_and_merge_across_workers() {
        let mut a = Timeline::default();
        for s in 0..1000u64 {
            a.record(s * SECOND_NS, 100_000);
        }
        assert!(a.buckets.len() <= BUCKETS_MAX);
        assert_eq!(
            a.width_ns,
            4 * SECOND_NS,
            "1000 s in 300 intervals: 4 s each"
        );
        let total: f64 = a.points().iter().map(|p| p.per_s * p.width_s).sum();
        assert_eq!(total, 1000.0, "no sample lost by widening");
        let mut b = Timeline::default();
        b.record(3 * SECOND_NS, 200_000);
        b.merge(&a);
        assert_eq!(b.width_ns, 4 * SECOND_NS);
        let p = b.points();
        assert_eq!(
            p[0].per_s * p[0].width_s,
            5.0,
            "4 of a's and b's one in 0..4 s"
        );
        let mut c = a.clone();
        c.merge(&Timeline::default());
        assert_eq!(c.points(), a.points());
    }
}
