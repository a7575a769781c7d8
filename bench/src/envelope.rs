//! The fan-out message envelope: a text template carrying the sequence number, the INTENDED
//! send time (ns on the harness clock) and the topic, found again anywhere inside a delivery.
//!
//! Servers wrap published data differently (an SSE `data:` line, a JSON text frame with the
//! data as a string field, ...), so the subscriber does not parse the server's wrapping; it
//! searches the delivery for the envelope's leading literal and matches the rest of the
//! template from there. That works for any wrapping that keeps the envelope's characters
//! as they are, which is why the default uses no quotes or backslashes.
//!
//! Never allocates while decoding; never panics on any input.

use std::fmt;

/// The default: letters, digits, `=`, `:` and spaces only, unchanged by JSON and SSE framing.
pub const DEFAULT_TEMPLATE: &str = "ucb seq={seq} ts={ts} topic={topic} pad={pad}";

/// Longest template; envelopes are small by design.
const TEMPLATE_BYTES_MAX: usize = 1024;
/// A sequence number or timestamp has at most 20 decimal digits (u64::MAX).
const DIGITS_MAX: usize = 20;
/// Longest topic name the decoder accepts.
const TOPIC_BYTES_MAX: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(Vec<u8>),
    Seq,
    Ts,
    Topic,
    Pad,
}

/// A parsed envelope template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    TooLong,
    MustStartWithText,
    MissingField(&'static str),
    AdjacentFields,
    UnknownField(String),
    Unclosed,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::TooLong => write!(f, "longer than {TEMPLATE_BYTES_MAX} bytes"),
            TemplateError::MustStartWithText => {
                f.write_str("must start with literal text (the subscriber searches for it)")
            }
            TemplateError::MissingField(n) => write!(f, "must contain {{{n}}}"),
            TemplateError::AdjacentFields => {
                f.write_str("two placeholders need literal text between them")
            }
            TemplateError::UnknownField(n) => {
                write!(f, "unknown placeholder {{{n}}} (seq, ts, topic, pad)")
            }
            TemplateError::Unclosed => f.write_str("unclosed `{`"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// What a delivery's envelope said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub seq: u64,
    pub ts_ns: u64,
    /// Empty when the template has no `{topic}`.
    pub topic: &'a [u8],
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.len() > TEMPLATE_BYTES_MAX {
            return Err(TemplateError::TooLong);
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest.find('}').ok_or(TemplateError::Unclosed)?;
                    let piece = match &rest[1..end] {
                        "seq" => Piece::Seq,
                        "ts" => Piece::Ts,
                        "topic" => Piece::Topic,
                        "pad" => Piece::Pad,
                        other => return Err(TemplateError::UnknownField(other.to_owned())),
                    };
                    if !matches!(pieces.last(), Some(Piece::Lit(_))) {
                        return Err(if pieces.is_empty() {
                            TemplateError::MustStartWithText
                        } else {
                            TemplateError::AdjacentFields
                        });
                    }
                    pieces.push(piece);
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    pieces.push(Piece::Lit(rest.as_bytes()[..i].to_vec()));
                    rest = &rest[i..];
                }
                None => {
                    pieces.push(Piece::Lit(rest.as_bytes().to_vec()));
                    rest = "";
                }
            }
        }
        for (p, name) in [(Piece::Seq, "seq"), (Piece::Ts, "ts")] {
            if !pieces.contains(&p) {
                return Err(TemplateError::MissingField(name));
            }
        }
        Ok(Template { pieces })
    }

    /// Append the envelope to `out`, padded with `x` at `{pad}` so it is at least `size_min`
    /// bytes long (without `{pad}` no padding is added).
    pub fn encode(&self, seq: u64, ts_ns: u64, topic: &str, size_min: usize, out: &mut Vec<u8>) {
        let start = out.len();
        let mut pad_at = None;
        for p in &self.pieces {
            match p {
                Piece::Lit(l) => out.extend_from_slice(l),
                Piece::Seq => out.extend_from_slice(seq.to_string().as_bytes()),
                Piece::Ts => out.extend_from_slice(ts_ns.to_string().as_bytes()),
                Piece::Topic => out.extend_from_slice(topic.as_bytes()),
                Piece::Pad => pad_at = Some(out.len()),
            }
        }
        let len = out.len() - start;
        if let (Some(at), true) = (pad_at, len < size_min) {
            let pad = size_min - len;
            out.splice(at..at, std::iter::repeat_n(b'x', pad));
        }
    }

    /// Find the envelope in `data` (first match wins). `None` if there is none.
    pub fn decode<'a>(&self, data: &'a [u8]) -> Option<Envelope<'a>> {
        let Some(Piece::Lit(anchor)) = self.pieces.first() else {
            return None;
        };
        let mut from = 0;
        while let Some(i) = find(&data[from..], anchor) {
            let at = from + i;
            if let Some(env) = self.match_at(&data[at + anchor.len()..]) {
                return Some(env);
            }
            from = at + 1;
        }
        None
    }

    fn match_at<'a>(&self, mut rest: &'a [u8]) -> Option<Envelope<'a>> {
        let mut env = Envelope {
            seq: 0,
            ts_ns: 0,
            topic: &[],
        };
        let pieces = &self.pieces[1..];
        for (i, p) in pieces.iter().enumerate() {
            // The literal after a field ends it (fields are never adjacent).
            let stop = match pieces.get(i + 1) {
                Some(Piece::Lit(l)) => l.first().copied(),
                _ => None,
            };
            match p {
                Piece::Lit(l) => rest = rest.strip_prefix(l.as_slice())?,
                Piece::Seq | Piece::Ts => {
                    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    if n == 0 || n > DIGITS_MAX {
                        return None;
                    }
                    let v = std::str::from_utf8(&rest[..n]).ok()?.parse().ok()?;
                    if *p == Piece::Seq {
                        env.seq = v;
                    } else {
                        env.ts_ns = v;
                    }
                    rest = &rest[n..];
                }
                Piece::Topic => {
                    let n = rest
                        .iter()
                        .take(TOPIC_BYTES_MAX + 1)
                        .take_while(|&&b| Some(b) != stop && is_topic_byte(b))
                        .count();
                    if n > TOPIC_BYTES_MAX {
                        return None;
                    }
                    env.topic = &rest[..n];
                    rest = &rest[n..];
                }
                Piece::Pad => {
                    let n = rest.iter().take_while(|&&b| b == b'x').count();
                    rest = &rest[n..];
                }
            }
        }
        Some(env)
    }
}

/// Topic names the harness generates are printable ASCII without quotes, backslashes, spaces.
fn is_topic_byte(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'"' && b != b'\\'
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let j = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += j;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: &Template, seq: u64, ts: u64, topic: &str, size: usize) -> Vec<u8> {
        let mut v = Vec::new();
        t.encode(seq, ts, topic, size, &mut v);
        v
    }

    #[test]
    fn default_round_trips_inside_any_wrapping() {
        let t = Template::parse(DEFAULT_TEMPLATE).unwrap();
        let msg = enc(&t, 42, 1_234_567_890_123, "t7", 0);
        assert_eq!(msg, b"ucb seq=42 ts=1234567890123 topic=t7 pad=");
        let want = Envelope {
            seq: 42,
            ts_ns: 1_234_567_890_123,
            topic: b"t7",
        };
        assert_eq!(t.decode(&msg), Some(want));
        // As an SSE data line and inside a JSON text frame.
        let sse = [b"id: 9\ndata: ".as_slice(), &msg, b"\n\n"].concat();
        assert_eq!(t.decode(&sse), Some(want));
        let json = [
            br#"{"topic":"t7","id":9,"data":""#.as_slice(),
            &msg,
            br#""}"#,
        ]
        .concat();
        assert_eq!(t.decode(&json), Some(want));
    }

    #[test]
    fn padding_reaches_the_size_and_still_decodes() {
        let t = Template::parse(DEFAULT_TEMPLATE).unwrap();
        let msg = enc(&t, 1, 2, "a", 200);
        assert_eq!(msg.len(), 200);
        assert_eq!(t.decode(&msg).unwrap().seq, 1);
        let t = Template::parse("{seq}").unwrap_err();
        assert_eq!(t, TemplateError::MustStartWithText);
    }

    #[test]
    fn custom_templates_and_errors() {
        let t = Template::parse("<m s={seq}|t={ts}|p={pad}>").unwrap();
        let msg = enc(&t, 7, 8, "ignored", 30);
        assert_eq!(msg.len(), 30);
        let e = t.decode(&msg).unwrap();
        assert_eq!((e.seq, e.ts_ns, e.topic), (7, 8, &b""[..]));
        assert_eq!(
            Template::parse("a{seq}{ts}"),
            Err(TemplateError::AdjacentFields)
        );
        assert_eq!(
            Template::parse("a{seq}"),
            Err(TemplateError::MissingField("ts"))
        );
        assert!(matches!(
            Template::parse("a{nope}"),
            Err(TemplateError::UnknownField(_))
        ));
        assert_eq!(Template::parse("a{seq"), Err(TemplateError::Unclosed));
    }

    #[test]
    fn garbage_and_near_misses_decode_to_none_or_the_real_one() {
        let t = Template::parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(t.decode(b""), None);
        assert_eq!(t.decode(b"ucb seq=x"), None);
        assert_eq!(
            t.decode(b"ucb seq=99999999999999999999999 ts=1 topic=a pad="),
            None
        );
        // A false start before the real envelope is skipped.
        let d = b"ucb seq= ucb seq=5 ts=6 topic=q pad=";
        assert_eq!(t.decode(d).unwrap().seq, 5);
        for cut in 0..d.len() {
            // Any prefix decodes to nothing or a consistent value, never panics.
            let _ = t.decode(&d[..cut]);
        }
    }
}
