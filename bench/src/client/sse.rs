//! SSE subscriber: `GET path` → response head (must be 200) → an endless event stream parsed
//! by `proto::sse::Parser`. Events are deliveries (envelope, sequence tracking, latency);
//! comment lines are heartbeats; an `event: reset` (the server's history no longer reaches
//! back to our `Last-Event-ID`) is counted as `ResumeReset`, a loss.
//!
//! A reconnect (`SseSub::resume`) keeps the subscription's sequence tracker and sends
//! `Last-Event-ID` with the raw text of the last `id:` field received, as a browser does.
//!
//! The body is read as the server frames it: until close (uringcast) straight from the
//! engine's buffer with no copy, or chunked / with a length (other servers) through
//! `proto::http1::BodyDecoder` into a small buffer that exists only while it holds a partial
//! line. Every whole event in a read is parsed in that call, and each is handed back to the
//! parser (`Parser::recycle`), so a delivery allocates nothing. Never touches a socket or a
//! clock.

use super::{header_refs, Env, Io, Outcome, Subscription};
use crate::stats::ErrorKind;
use uringcast::proto::http1::{
    write_get_request, BodyDecoder, BodyEvent, BodyKind, ResponseDecoder,
};
use uringcast::proto::sse::{Event, Parser, ParserLimits};

#[derive(Debug)]
enum Phase {
    Head(ResponseDecoder),
    /// Body runs until close: parse the engine's bytes in place.
    Direct(Parser),
    /// Chunked or sized body: de-frame into `buf`, parse from there.
    Framed {
        body: BodyDecoder,
        parser: Parser,
        buf: Vec<u8>,
    },
}

#[derive(Debug)]
pub struct SseSub {
    phase: Phase,
    pub sub: Subscription,
    /// Sent as `Last-Event-ID` by `request` when not empty.
    resume_from: String,
}

impl SseSub {
    pub fn new(topic: u32) -> SseSub {
        SseSub {
            phase: Phase::Head(ResponseDecoder::new()),
            sub: Subscription::new(topic),
            resume_from: String::new(),
        }
    }

    /// The machine for a reconnect of `old`: same subscription (sequence figures carry over),
    /// resuming after the last event id `old` received.
    pub fn resume(old: SseSub) -> SseSub {
        let resume_from = old.last_event_id().to_owned();
        SseSub {
            phase: Phase::Head(ResponseDecoder::new()),
            sub: old.sub,
            resume_from,
        }
    }

    /// The last event ID string (the raw `id:` text; empty before any): what a reconnect
    /// sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        match &self.phase {
            Phase::Head(_) => &self.resume_from,
            Phase::Direct(p) | Phase::Framed { parser: p, .. } => {
                // A stream that carried no id yet keeps the one it resumed from.
                match p.last_event_id() {
                    "" => &self.resume_from,
                    id => id,
                }
            }
        }
    }

    /// Append the GET request for `path` to `io.out`.
    pub fn request(&self, env: &Env, io: &mut Io, authority: &str, path: &str) {
        let mut fields = header_refs(&env.headers);
        fields.push(("Accept", "text/event-stream"));
        fields.push(("Cache-Control", "no-cache"));
        if !self.resume_from.is_empty() {
            fields.push(("Last-Event-ID", &self.resume_from));
        }
        write_get_request(&mut io.out, path, authority, &fields);
    }

    pub fn on_data(&mut self, env: &Env, io: &mut Io, data: &mut [u8]) -> Outcome {
        let mut o = Outcome::default();
        if !data.is_empty() {
            self.sub.last_rx_ns = io.now_ns;
        }
        loop {
            let rest = &data[o.consumed..];
            match &mut self.phase {
                Phase::Head(dec) => {
                    let head = match dec.decode(&env.http_limits, rest) {
                        Err(_) => return fatal(o, ErrorKind::HttpParse),
                        Ok(p) => match p.event {
                            None => return o,
                            Some(h) => {
                                o.consumed += p.consumed;
                                h
                            }
                        },
                    };
                    if head.status() != 200 {
                        return fatal(o, ErrorKind::HttpStatus);
                    }
                    let limits = ParserLimits {
                        event_bytes_max: env.sse_event_bytes_max,
                    };
                    self.phase = match head.body() {
                        BodyKind::UntilClose => Phase::Direct(Parser::new(limits)),
                        // An event stream never ends on its own; a sized or empty body is
                        // an odd server but still parsed, and its end reported.
                        kind => {
                            let mut l = env.http_limits.clone();
                            l.body_bytes_max = u64::MAX;
                            match BodyDecoder::new(kind, &l) {
                                Ok(body) => Phase::Framed {
                                    body,
                                    parser: Parser::new(limits),
                                    buf: Vec::new(),
                                },
                                Err(_) => return fatal(o, ErrorKind::HttpParse),
                            }
                        }
                    };
                    o.ready = true;
                }
                Phase::Direct(parser) => {
                    let mut p = 0;
                    while p < rest.len() {
                        match parser.feed(&rest[p..]) {
                            Err(_) => return fatal(o, ErrorKind::SseParse),
                            Ok(step) => {
                                p += step.consumed;
                                match step.event {
                                    None => break,
                                    Some(ev) => {
                                        Self::event(&mut self.sub, env, io, &ev);
                                        parser.recycle(ev);
                                    }
                                }
                            }
                        }
                    }
                    o.consumed += p;
                    return o;
                }
                Phase::Framed { body, parser, buf } => {
                    let mut p = 0;
                    let mut ended = false;
                    while p < rest.len() && !ended {
                        match body.decode(&rest[p..]) {
                            Err(_) => return fatal(o, ErrorKind::HttpParse),
                            Ok(step) => {
                                p += step.consumed;
                                match step.event {
                                    None => break,
                                    Some(BodyEvent::Data(d)) => buf.extend_from_slice(d),
                                    Some(BodyEvent::End) => ended = true,
                                }
                            }
                        }
                    }
                    o.consumed += p;
                    let mut q = 0;
                    while q < buf.len() {
                        match parser.feed(&buf[q..]) {
                            Err(_) => return fatal(o, ErrorKind::SseParse),
                            Ok(step) => {
                                q += step.consumed;
                                match step.event {
                                    None => break,
                                    Some(ev) => {
                                        Self::event(&mut self.sub, env, io, &ev);
                                        parser.recycle(ev);
                                    }
                                }
                            }
                        }
                    }
                    buf.drain(..q);
                    if buf.is_empty() && buf.capacity() > 4096 {
                        // Give a burst's buffer back; an idle stream holds none.
                        *buf = Vec::new();
                    }
                    if ended {
                        return fatal(o, ErrorKind::PeerClosed);
                    }
                    return o;
                }
            }
        }
    }

    fn event(sub: &mut Subscription, env: &Env, io: &mut Io, ev: &Event) {
        match ev {
            Event::Comment(_) => io.stats.heartbeats += 1,
            Event::Message(m) if m.event_type == "reset" => {
                io.stats.errors.add(ErrorKind::ResumeReset)
            }
            Event::Message(m) => sub.delivery(env, io, m.data.as_bytes()),
        }
    }
}

fn fatal(mut o: Outcome, kind: ErrorKind) -> Outcome {
    o.fatal = Some(kind);
    o
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{env, feed};
    use super::*;
    use crate::envelope::Template;

    fn stream(template: &Template, seqs: &[u64], chunked: bool) -> Vec<u8> {
        let mut body = b"retry: 2000\n\n: heartbeat\n\n".to_vec();
        for &s in seqs {
            let mut msg = Vec::new();
            template.encode(s, 1_000, "t1", 0, &mut msg);
            body.extend_from_slice(format!("id: {s}\ndata: ").as_bytes());
            body.extend_from_slice(&msg);
            body.extend_from_slice(b"\n\n");
        }
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n".to_vec();
        if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for c in body.chunks(7) {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
        } else {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
        }
        out
    }

    /// WHATWG HTML §9.2.6: events dispatch on a blank line, comments are heartbeats; the
    /// figures must not depend on how the stream is cut or framed.
    #[test]
    fn counts_deliveries_and_heartbeats_at_every_split() {
        let e = env();
        for chunked in [false, true] {
            let bytes = stream(&e.template, &[1, 2, 4, 3, 3], chunked);
            for chunk in [1, 2, 5, 13, 64, bytes.len()] {
                let mut sub = SseSub::new(1);
                let mut io = Io {
                    now_ns: 51_000,
                    ..Io::default()
                };
                let (ready, fatal) = feed(|io, d| sub.on_data(&e, io, d), &mut io, &bytes, chunk);
                assert!(ready && fatal.is_none(), "chunk {chunk} chunked {chunked}");
                assert_eq!(io.stats.heartbeats, 1);
                assert_eq!(io.stats.deliveries, 5);
                assert_eq!(io.stats.latency.count(), 4, "duplicates are not timed");
                let mut s = crate::stats::Stats::default();
                sub.sub.finish(5, &mut s);
                assert_eq!((s.missing, s.duplicates, s.out_of_order), (1, 1, 1));
                assert!((io.stats.latency.summary_us().p50 - 50.0).abs() < 0.1);
            }
        }
    }

    #[test]
    fn rejections_are_typed() {
        let e = env();
        let mut io = Io::default();
        let mut sub = SseSub::new(0);
        let r = sub.on_data(&e, &mut io, &mut b"HTTP/1.1 404 Not Found\r\n\r\n".to_vec());
        assert_eq!(r.fatal, Some(ErrorKind::HttpStatus));
        let mut sub = SseSub::new(0);
        let r = sub.on_data(&e, &mut io, &mut b"SSH-2.0-x\r\n\r\n".to_vec());
        assert_eq!(r.fatal, Some(ErrorKind::HttpParse));
        // Wrong topic: the subscription is t0, the stream carries t1.
        let bytes = stream(&e.template, &[1], false);
        let mut sub = SseSub::new(0);
        let (_, fatal) = feed(|io, d| sub.on_data(&e, io, d), &mut io, &bytes, 9);
        assert_eq!(fatal, None);
        assert_eq!(io.stats.errors.get(ErrorKind::WrongTopic), 1);
        // The request names the path and asks for an event stream.
        let mut io = Io::default();
        SseSub::new(0).request(&e, &mut io, "h:1", "/sse?topic=t0");
        let req = String::from_utf8(io.out).unwrap();
        assert!(req.starts_with("GET /sse?topic=t0 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Host: h:1\r\n") && req.ends_with("\r\n\r\n"));
    }

    /// WHATWG HTML §9.2.4: a reconnect sends `Last-Event-ID` with the last id string as
    /// received (opaque text); sequence figures carry over; `event: reset` counts as loss.
    #[test]
    fn resume_sends_the_raw_last_id_and_counts_resets() {
        let e = env();
        let mut bytes = stream(&e.template, &[1, 2], false);
        // A server id is opaque: keep it byte for byte (epoch-sequence here).
        bytes.extend_from_slice(b"id: 1765015200123-17\ndata: ");
        e.template.encode(3, 1_000, "t1", 0, &mut bytes);
        bytes.extend_from_slice(b"\n\n");
        let mut sub = SseSub::new(1);
        let mut io = Io::default();
        assert_eq!(sub.last_event_id(), "");
        let (ready, fatal) = feed(|io, d| sub.on_data(&e, io, d), &mut io, &bytes, 7);
        assert!(ready && fatal.is_none());
        assert_eq!(sub.last_event_id(), "1765015200123-17");
        let mut again = SseSub::resume(sub);
        assert_eq!(again.last_event_id(), "1765015200123-17");
        again.request(&e, &mut io, "h:1", "/sse?topic=t1");
        let req = String::from_utf8(std::mem::take(&mut io.out)).unwrap();
        assert!(
            req.contains("\r\nLast-Event-ID: 1765015200123-17\r\n"),
            "{req}"
        );
        // The resumed stream: a reset notice, then 5 (4 was lost).
        let mut resumed = b"HTTP/1.1 200 OK\r\n\r\nevent: reset\ndata: {}\n\n".to_vec();
        resumed.extend_from_slice(b"id: x-5\ndata: ");
        e.template.encode(5, 1_000, "t1", 0, &mut resumed);
        resumed.extend_from_slice(b"\n\n");
        let (ready, fatal) = feed(|io, d| again.on_data(&e, io, d), &mut io, &resumed, 5);
        assert!(ready && fatal.is_none());
        assert_eq!(io.stats.errors.get(ErrorKind::ResumeReset), 1);
        assert_eq!(again.last_event_id(), "x-5");
        let mut s = crate::stats::Stats::default();
        again.sub.finish(5, &mut s);
        assert_eq!((s.missing, s.duplicates), (1, 0));
        assert_eq!(io.stats.deliveries, 4);
    }
}
