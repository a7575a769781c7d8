//! The publisher: an open-loop schedule of (topic, sequence number, intended send time) and a
//! keep-alive HTTP POST client that sends it one request at a time.
//!
//! Open loop: message k is due at `t0 + k * interval`, whatever happened before. A publisher
//! that falls behind (slow server answers) sends late, but the envelope carries the INTENDED
//! time, so subscribers' latency includes the delay (no coordinated omission). Topics are
//! owned by one publisher connection each, so each topic's messages leave in order.
//!
//! ```text
//!   global message k:  topic = k mod K,  seq = k div K + 1,  due = t0 + k * 1e9 / (P * K) ns
//!   connection j of n sends the k whose topic mod n == j
//! ```
//!
//! No socket, no clock: the transport passes `now_ns` and sends `io.out`.

use super::{header_refs, Env, Io, Outcome};
use crate::stats::ErrorKind;
use uringcast::proto::http1::{write_request, BodyDecoder, BodyEvent, Framing, ResponseDecoder};

/// One publisher connection's share of the run's messages.
#[derive(Debug, Clone)]
pub struct Schedule {
    t0_ns: u64,
    /// Time between consecutive global messages, in ns (fractional, to keep long runs exact).
    interval_ns: f64,
    topics: u64,
    conns: u64,
    me: u64,
    /// Next global message index this connection owns.
    next_k: u64,
    /// Global messages in the run: per_topic * topics.
    end_k: u64,
    skip_seq: Option<u64>,
}

/// A message to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub topic: u32,
    pub seq: u64,
    pub intended_ns: u64,
    /// The test hook's skipped number: account for it, send nothing.
    pub skip: bool,
}

impl Schedule {
    /// `rate_per_topic` messages/s on each of `topics` topics, `per_topic` messages each,
    /// starting at `t0_ns`; this is connection `me` of `conns`.
    pub fn new(
        t0_ns: u64,
        rate_per_topic: f64,
        topics: u32,
        per_topic: u64,
        me: u32,
        conns: u32,
        skip_seq: Option<u64>,
    ) -> Schedule {
        let topics = u64::from(topics.max(1));
        let mut s = Schedule {
            t0_ns,
            interval_ns: 1e9 / (rate_per_topic * topics as f64),
            topics,
            conns: u64::from(conns.max(1)),
            me: u64::from(me),
            next_k: 0,
            end_k: per_topic * topics,
            skip_seq,
        };
        s.seek_owned();
        s
    }

    fn owns(&self, k: u64) -> bool {
        (k % self.topics) % self.conns == self.me
    }

    fn seek_owned(&mut self) {
        // At most `topics` steps: every run of K consecutive k covers every topic once.
        while self.next_k < self.end_k && !self.owns(self.next_k) {
            self.next_k += 1;
        }
    }

    fn due_of(&self, k: u64) -> Due {
        let seq = k / self.topics + 1;
        Due {
            topic: (k % self.topics) as u32,
            seq,
            intended_ns: self.t0_ns + (k as f64 * self.interval_ns) as u64,
            skip: Some(seq) == self.skip_seq,
        }
    }

    /// The next message if it is due at `now_ns`, advancing past it. The test hook's
    /// `skip_seq` comes out with `skip` set: the caller accounts for it and sends nothing.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Due> {
        if self.next_k >= self.end_k {
            return None;
        }
        let d = self.due_of(self.next_k);
        if d.intended_ns > now_ns {
            return None;
        }
        self.next_k += 1;
        self.seek_owned();
        Some(d)
    }

    /// When the next message is due (ns), `None` when this connection is done.
    pub fn next_due_ns(&self) -> Option<u64> {
        (self.next_k < self.end_k).then(|| self.due_of(self.next_k).intended_ns)
    }

    pub fn done(&self) -> bool {
        self.next_k >= self.end_k
    }
}

/// Build the body of message `d`: the envelope inside the `--publish-body` / WS template.
pub fn build_body(env: &Env, io: &mut Io, body_template: &str, d: Due, size: usize) -> Vec<u8> {
    let topic = env.topics.get(d.topic as usize).map_or("", |t| t.as_str());
    io.scratch.clear();
    env.template
        .encode(d.seq, d.intended_ns, topic, size, &mut io.scratch);
    let msg = std::str::from_utf8(&io.scratch).unwrap_or_default();
    body_template
        .replace("{topic}", topic)
        .replace("{msg}", msg)
        .into_bytes()
}

#[derive(Debug)]
enum Phase {
    /// Nothing in flight.
    Idle,
    Head(ResponseDecoder),
    Body(BodyDecoder),
}

/// Keep-alive HTTP publisher: one POST in flight at a time.
#[derive(Debug)]
pub struct HttpPub {
    phase: Phase,
    /// Set once the server said it will close (or did not offer keep-alive).
    pub closing: bool,
    /// The previous answer was 2xx (decided at its head, counted when its body ends).
    ok: bool,
}

impl Default for HttpPub {
    fn default() -> Self {
        HttpPub::new()
    }
}

impl HttpPub {
    pub fn new() -> HttpPub {
        HttpPub {
            phase: Phase::Idle,
            closing: false,
            ok: false,
        }
    }

    pub fn idle(&self) -> bool {
        matches!(self.phase, Phase::Idle) && !self.closing
    }

    /// The server answered and said it closes the connection: no further POST can go out.
    pub fn not_kept_alive(&self) -> bool {
        matches!(self.phase, Phase::Idle) && self.closing
    }

    /// Append `POST path` with `body` to `io.out`. Call only when `idle()`.
    pub fn post(&mut self, env: &Env, io: &mut Io, authority: &str, path: &str, body: &[u8]) {
        debug_assert!(self.idle());
        let mut fields = header_refs(&env.headers);
        fields.push(("Content-Type", "text/plain; charset=utf-8"));
        write_request(
            &mut io.out,
            "POST",
            path,
            authority,
            &fields,
            Framing::ContentLength(body.len() as u64),
        );
        io.out.extend_from_slice(body);
        self.phase = Phase::Head(ResponseDecoder::new());
    }

    /// Read answers. `ready` in the outcome means "an answer completed: send the next".
    pub fn on_data(&mut self, env: &Env, io: &mut Io, data: &mut [u8]) -> Outcome {
        let mut o = Outcome::default();
        loop {
            let rest = &data[o.consumed..];
            match &mut self.phase {
                Phase::Idle => {
                    if !rest.is_empty() {
                        // Bytes nobody asked for: the server is not speaking HTTP/1.1 to us.
                        return fatal(o, ErrorKind::PublishParse);
                    }
                    return o;
                }
                Phase::Head(dec) => {
                    let head = match dec.decode(&env.http_limits, rest) {
                        Err(_) => return fatal(o, ErrorKind::PublishParse),
                        Ok(p) => match p.event {
                            None => return o,
                            Some(h) => {
                                o.consumed += p.consumed;
                                h
                            }
                        },
                    };
                    self.ok = (200..300).contains(&head.status());
                    self.closing |= !head.keep_alive();
                    match BodyDecoder::new(head.body(), &env.http_limits) {
                        Ok(b) => self.phase = Phase::Body(b),
                        Err(_) => return fatal(o, ErrorKind::PublishParse),
                    }
                }
                Phase::Body(body) => {
                    let step = match body.decode(rest) {
                        Err(_) => return fatal(o, ErrorKind::PublishParse),
                        Ok(s) => s,
                    };
                    o.consumed += step.consumed;
                    match step.event {
                        None => return o,
                        Some(BodyEvent::Data(_)) => {}
                        Some(BodyEvent::End) => {
                            if self.ok {
                                io.stats.published += 1;
                            } else {
                                io.stats.publish_failed += 1;
                                io.stats.errors.add(ErrorKind::PublishStatus);
                            }
                            self.phase = Phase::Idle;
                            o.ready = true;
                        }
                    }
                }
            }
        }
    }
}

fn fatal(mut o: Outcome, kind: ErrorKind) -> Outcome {
    o.fatal = Some(kind);
    o
}

#[cfg(test)]
mod tests {
    use super::super::testutil::env;
    use super::*;

    #[test]
    fn schedule_is_open_loop_exact_and_split_by_topic() {
        // 10 msg/s per topic on 3 topics for 2 s: 20 per topic, 60 in all, 1/30 s apart.
        let mut all = Vec::new();
        let mut skipped = 0;
        for me in 0..2 {
            let mut s = Schedule::new(1_000, 10.0, 3, 20, me, 2, Some(5));
            // Nothing is due before t0.
            assert_eq!(s.pop_due(999), None);
            while let Some(d) = s.pop_due(u64::MAX) {
                // Connection 0 owns topics 0 and 2, connection 1 owns topic 1.
                assert_eq!(d.topic % 2, me);
                if d.skip {
                    skipped += 1;
                } else {
                    all.push(d);
                }
            }
            assert!(s.done());
        }
        assert_eq!(skipped, 3, "seq 5 skipped once per topic");
        assert_eq!(all.len(), 57);
        for t in 0..3 {
            let seqs: Vec<u64> = all.iter().filter(|d| d.topic == t).map(|d| d.seq).collect();
            let want: Vec<u64> = (1..=20).filter(|&s| s != 5).collect();
            assert_eq!(seqs, want, "topic {t} in order");
        }
        let last = all.iter().max_by_key(|d| d.intended_ns).unwrap();
        // k = 59 at 59/30 s after t0.
        assert_eq!(last.intended_ns, 1_000 + (59.0 * 1e9 / 30.0) as u64);
        // Behind schedule: everything overdue comes out at once, with its intended time.
        let mut s = Schedule::new(0, 1000.0, 1, 100, 0, 1, None);
        let mut n = 0;
        while s.pop_due(10_000_000).is_some() {
            n += 1;
        }
        assert_eq!(n, 11, "k = 0..=10 are due by 10 ms");
        assert_eq!(s.next_due_ns(), Some(11_000_000));
    }

    /// RFC 9112 §6: keep-alive answers with Content-Length and chunked bodies, split anywhere.
    #[test]
    fn posts_and_answers() {
        let e = env();
        let mut io = Io::default();
        let mut p = HttpPub::new();
        assert!(p.idle());
        let d = Due {
            topic: 1,
            seq: 7,
            intended_ns: 99,
            skip: false,
        };
        let body = build_body(&e, &mut io, "{msg}", d, 0);
        assert_eq!(body, b"ucb seq=7 ts=99 topic=t1 pad=");
        p.post(&e, &mut io, "h:1", "/publish?topic=t1", &body);
        let req = String::from_utf8(std::mem::take(&mut io.out)).unwrap();
        assert!(req.starts_with("POST /publish?topic=t1 HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.contains("Content-Length: 29\r\n") && req.ends_with("pad="));
        assert!(!p.idle());
        let answers = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":1}";
        let mut chunked =
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n".to_vec();
        for cut in 0..answers.len() {
            let mut p = HttpPub::new();
            p.phase = Phase::Head(ResponseDecoder::new());
            let mut io = Io::default();
            let mut a = answers[..cut].to_vec();
            let o = p.on_data(&e, &mut io, &mut a);
            let mut rest = answers[o.consumed..].to_vec();
            let o2 = p.on_data(&e, &mut io, &mut rest);
            assert!(o2.ready && o2.fatal.is_none(), "cut {cut}");
            assert_eq!(io.stats.published, 1);
            assert!(p.idle());
        }
        let mut p = HttpPub::new();
        p.phase = Phase::Head(ResponseDecoder::new());
        let o = p.on_data(&e, &mut io, &mut chunked);
        assert!(o.ready);
        assert_eq!((io.stats.publish_failed, io.stats.published), (1, 0));
        // An answer that closes the connection leaves the publisher unable to go on.
        let mut p2 = HttpPub::new();
        p2.phase = Phase::Head(ResponseDecoder::new());
        let mut close =
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec();
        assert!(p2.on_data(&e, &mut io, &mut close).ready);
        assert!(p2.not_kept_alive() && !p2.idle());
        // Unasked-for bytes are an error.
        assert_eq!(
            p.on_data(&e, &mut io, &mut b"x".to_vec()).fatal,
            Some(ErrorKind::PublishParse)
        );
    }
}
