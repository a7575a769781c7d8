//! Property tests: generated valid requests (random methods, targets, fields, bodies incl.
//! chunked) decode to what was generated, and identically whether fed whole, split at every
//! point, one byte at a time, or in random chunks; pipelined requests come out in order.
//! Arbitrary bytes get the same verdict (event sequence or error) however they are split.

use proptest::prelude::*;

use super::*;

/// One decoded request, owned, with its body joined from however many `Data` slices.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decoded {
    method: String,
    target: String,
    version: Version,
    fields: Vec<(String, Vec<u8>)>,
    body_kind: BodyKind,
    keep_alive: bool,
    body: Vec<u8>,
}

/// Everything a stream of bytes decoded to: the requests, then either an error or the
/// number of bytes still waiting (an incomplete request).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Decoded>,
    error: Option<HttpError>,
    pending_bytes: usize,
}

/// Drive the decoders the way the engine does: append each read to a leftover buffer, decode
/// until "need more", drop `consumed` bytes after every call.
fn decode_stream(input: &[u8], cuts: &[usize], limits: &HttpLimits) -> Outcome {
    let mut out = Outcome {
        requests: Vec::new(),
        error: None,
        pending_bytes: 0,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut head_dec = RequestDecoder::new();
    let mut body: Option<(BodyDecoder, Decoded)> = None;
    let mut start = 0;
    let ends = cuts.iter().copied().chain(std::iter::once(input.len()));
    for end in ends {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            let step = match body.as_mut() {
                None => head_dec.decode(limits, &buf).and_then(|p| {
                    let Some(h) = p.event else {
                        return Ok((p.consumed, false));
                    };
                    let d = Decoded {
                        method: h.method().to_string(),
                        target: h.target().to_string(),
                        version: h.version(),
                        fields: h
                            .headers()
                            .map(|f| (f.name.to_string(), f.value.to_vec()))
                            .collect(),
                        body_kind: h.body(),
                        keep_alive: h.keep_alive(),
                        body: Vec::new(),
                    };
                    body = Some((BodyDecoder::new(h.body(), limits)?, d));
                    Ok((p.consumed, true))
                }),
                Some((bd, d)) => match bd.decode(&buf) {
                    Err(e) => Err(e),
                    Ok(p) => {
                        let more = match p.event {
                            None => false,
                            Some(BodyEvent::Data(s)) => {
                                assert!(!s.is_empty());
                                d.body.extend_from_slice(s);
                                true
                            }
                            Some(BodyEvent::End) => {
                                let (_, d) = body.take().expect("body state present");
                                out.requests.push(d);
                                true
                            }
                        };
                        Ok((p.consumed, more))
                    }
                },
            };
            match step {
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
                Ok((consumed, more)) => {
                    assert!(consumed <= buf.len());
                    buf.drain(..consumed);
                    if !more {
                        break;
                    }
                }
            }
        }
    }
    out.pending_bytes = buf.len();
    out
}

/// How a generated request frames its body.
#[derive(Debug, Clone)]
enum GenBody {
    None,
    Length(Vec<u8>),
    /// Chunks (possibly with an extension each) and trailer lines.
    Chunked(Vec<(Vec<u8>, Option<String>)>, Vec<(String, String)>),
}

#[derive(Debug, Clone)]
struct GenRequest {
    method: String,
    target: String,
    http10: bool,
    close: bool,
    fields: Vec<(String, String)>,
    body: GenBody,
}

impl GenRequest {
    /// The wire bytes, and the request the decoder must produce.
    fn encode(&self, out: &mut Vec<u8>) -> Decoded {
        let version = if self.http10 {
            Version::Http10
        } else {
            Version::Http11
        };
        let mut fields: Vec<(String, String)> = vec![("Host".into(), "example.test".into())];
        fields.extend(self.fields.iter().cloned());
        if self.close {
            fields.push(("Connection".into(), "close".into()));
        } else if self.http10 {
            fields.push(("Connection".into(), "Keep-Alive".into()));
        }
        let (kind, body) = match &self.body {
            GenBody::None => (BodyKind::None, Vec::new()),
            GenBody::Length(b) => {
                fields.push(("Content-Length".into(), b.len().to_string()));
                (BodyKind::ContentLength(b.len() as u64), b.clone())
            }
            GenBody::Chunked(chunks, _) => {
                fields.push(("Transfer-Encoding".into(), "chunked".into()));
                (
                    BodyKind::Chunked,
                    chunks.iter().flat_map(|c| c.0.clone()).collect(),
                )
            }
        };
        out.extend_from_slice(
            format!("{} {} {}\r\n", self.method, self.target, version.as_str()).as_bytes(),
        );
        for (n, v) in &fields {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        match &self.body {
            GenBody::None => {}
            GenBody::Length(b) => out.extend_from_slice(b),
            GenBody::Chunked(chunks, trailers) => encode_chunked(out, chunks, trailers),
        }
        Decoded {
            method: self.method.clone(),
            target: self.target.clone(),
            version,
            fields: fields
                .into_iter()
                .map(|(n, v)| (n, v.into_bytes()))
                .collect(),
            body_kind: kind,
            keep_alive: !self.close,
            body,
        }
    }
}

fn encode_chunked(
    out: &mut Vec<u8>,
    chunks: &[(Vec<u8>, Option<String>)],
    trailers: &[(String, String)],
) {
    for (data, ext) in chunks.iter().filter(|c| !c.0.is_empty()) {
        out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
        if let Some(ext) = ext {
            out.extend_from_slice(format!(";{ext}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn field_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,12}".prop_filter("framing fields are generated separately", |n| {
        !["host", "content-length", "transfer-encoding", "connection"]
            .contains(&n.to_ascii_lowercase().as_str())
    })
}

fn field_value() -> impl Strategy<Value = String> {
    // No leading or trailing whitespace: the decoder trims it (RFC 9112 §5.1).
    prop_oneof![Just(String::new()), "[!-~]([ -~]{0,16}[!-~])?"]
}

fn chunks() -> impl Strategy<Value = Vec<(Vec<u8>, Option<String>)>> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<u8>(), 0..40),
            prop::option::of("[a-z]{1,5}(=[a-z0-9]{1,5})?"),
        ),
        0..5,
    )
}

fn gen_request() -> impl Strategy<Value = GenRequest> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("POST".to_string()),
        Just("PUT".to_string()),
        Just("DELETE".to_string()),
        Just("OPTIONS".to_string()),
        "[A-Z]{1,10}",
    ];
    let target = "/[a-zA-Z0-9._~-]{0,8}(/[a-z0-9%]{0,6}){0,2}(\\?[a-zA-Z0-9=&+%]{0,16})?";
    let fields = prop::collection::vec((field_name(), field_value()), 0..6);
    let body = prop_oneof![
        Just(GenBody::None),
        prop::collection::vec(any::<u8>(), 0..60).prop_map(GenBody::Length),
        (
            chunks(),
            prop::collection::vec((field_name(), field_value()), 0..3)
        )
            .prop_map(|(c, t)| GenBody::Chunked(c, t)),
    ];
    (method, target, any::<bool>(), any::<bool>(), fields, body).prop_map(
        |(method, target, http10, close, fields, mut body)| {
            // HTTP/1.0 has no chunked coding (RFC 9112 §6.1); send it a length instead.
            if let (true, GenBody::Chunked(c, _)) = (http10, &body) {
                body = GenBody::Length(c.iter().flat_map(|c| c.0.clone()).collect());
            }
            GenRequest {
                method,
                target,
                http10,
                close,
                fields,
                body,
            }
        },
    )
}

/// Cut positions from random sizes, so reads of 1..=n bytes each.
fn cuts_from(sizes: &[usize], len: usize) -> Vec<usize> {
    let mut at = 0;
    let mut cuts = Vec::new();
    for s in sizes.iter().cycle().take(len) {
        at += s;
        if at >= len {
            break;
        }
        cuts.push(at);
    }
    cuts
}

/// HTTP-flavoured bytes: tokens the grammar cares about plus noise.
fn http_noise() -> impl Strategy<Value = Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"POST /p HTTP/1.1\r\nHost: h\r\n",
        b"Host: h\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 3\r\n",
        b"\r\n",
        b"\r",
        b"\n",
        b" ",
        b":",
        b"5;x=y\r\nhello\r\n",
        b"0\r\n\r\n",
    ];
    // Each token as likely as the noise.
    let piece = prop_oneof![
        TOKENS.len() as u32 => prop::sample::select(TOKENS).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..6),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    // 192 cases by default; PROPTEST_CASES=n runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(192),
        ..ProptestConfig::default()
    })]

    /// RFC 9112 §9.3.2: pipelined requests decode in order, each to what was sent, with the
    /// same result at every split point and one byte at a time.
    #[test]
    fn generated_requests_decode_identically_at_every_split(
        reqs in prop::collection::vec(gen_request(), 1..4),
    ) {
        let limits = HttpLimits::default();
        let mut wire = Vec::new();
        let expected: Vec<Decoded> = reqs.iter().map(|r| r.encode(&mut wire)).collect();
        let whole = decode_stream(&wire, &[], &limits);
        prop_assert_eq!(&whole, &Outcome { requests: expected, error: None, pending_bytes: 0 });
        for cut in 0..=wire.len() {
            prop_assert_eq!(&decode_stream(&wire, &[cut], &limits), &whole, "cut at {}", cut);
        }
        let bytewise: Vec<usize> = (1..wire.len()).collect();
        prop_assert_eq!(&decode_stream(&wire, &bytewise, &limits), &whole);
    }

    /// Random read sizes give the same requests as one read.
    #[test]
    fn generated_requests_decode_identically_in_random_chunks(
        reqs in prop::collection::vec(gen_request(), 1..6),
        sizes in prop::collection::vec(1usize..64, 1..32),
    ) {
        let limits = HttpLimits::default();
        let mut wire = Vec::new();
        let expected: Vec<Decoded> = reqs.iter().map(|r| r.encode(&mut wire)).collect();
        let got = decode_stream(&wire, &cuts_from(&sizes, wire.len()), &limits);
        prop_assert_eq!(got, Outcome { requests: expected, error: None, pending_bytes: 0 });
    }

    /// RFC 9112 §7.1: a generated chunked body (with extensions and trailers) round-trips,
    /// and decoding stops exactly at its end.
    #[test]
    fn chunked_body_round_trips(
        chunks in chunks(),
        trailers in prop::collection::vec((field_name(), field_value()), 0..3),
        sizes in prop::collection::vec(1usize..16, 1..16),
    ) {
        let mut wire = Vec::new();
        encode_chunked(&mut wire, &chunks, &trailers);
        let body_len = wire.len();
        wire.extend_from_slice(b"NEXT");
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.0.clone()).collect();
        let mut d = BodyDecoder::new(BodyKind::Chunked, &HttpLimits::default()).unwrap();
        let (mut pos, mut avail, mut got) = (0, 0, Vec::new());
        let mut sizes = sizes.iter().cycle();
        let ended = 'feed: loop {
            avail = (avail + sizes.next().unwrap()).min(wire.len());
            loop {
                let p = d.decode(&wire[pos..avail]).unwrap();
                prop_assert!(p.consumed <= avail - pos);
                pos += p.consumed;
                match p.event {
                    Some(BodyEvent::Data(s)) => got.extend_from_slice(s),
                    Some(BodyEvent::End) => break 'feed true,
                    None => break,
                }
            }
            if avail == wire.len() {
                break false;
            }
        };
        prop_assert!(ended);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(pos, body_len);
    }

    /// Any bytes, valid or not: same requests and same error whole, bytewise and chunked,
    /// because every check fires at a fixed byte offset.
    #[test]
    fn arbitrary_bytes_same_verdict_however_split(
        wire in http_noise(),
        sizes in prop::collection::vec(1usize..8, 1..8),
    ) {
        let limits = HttpLimits {
            request_line_bytes_max: 24,
            head_bytes_max: 96,
            headers_max: 4,
            body_bytes_max: 16,
            chunk_ext_bytes_max: 6,
            trailer_bytes_max: 12,
        };
        let whole = decode_stream(&wire, &[], &limits);
        let bytewise: Vec<usize> = (1..wire.len()).collect();
        prop_assert_eq!(&decode_stream(&wire, &bytewise, &limits), &whole);
        prop_assert_eq!(&decode_stream(&wire, &cuts_from(&sizes, wire.len()), &limits), &whole);
    }
}
