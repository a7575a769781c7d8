//! Property tests: encoder and parser agree (§9.2.5 line ends, §9.2.6 interpretation), and the
//! parser's output does not depend on how the stream is cut into reads.

use proptest::prelude::*;

use super::parse::parse_all;
use super::*;

/// An owned event to encode, or a comment line.
#[derive(Debug, Clone)]
enum Item {
    Ev(OwnedEvent),
    Comment(String),
}

/// What an [`OutEvent`] borrows, owned.
#[derive(Debug, Clone)]
struct OwnedEvent {
    id: Option<OwnedId>,
    event: Option<String>,
    retry_ms: Option<u64>,
    data: String,
}

impl OwnedEvent {
    fn as_out(&self) -> OutEvent<'_> {
        OutEvent {
            id: self.id.as_ref().map(|i| match i {
                OwnedId::Num(n) => Id::Num(*n),
                OwnedId::Str(s) => Id::Str(s),
            }),
            event: self.event.as_deref(),
            retry_ms: self.retry_ms,
            data: &self.data,
        }
    }
}

#[derive(Debug, Clone)]
enum OwnedId {
    Num(u64),
    Str(String),
}

/// Text with every kind of line break, spaces, colons, NUL and multi-byte characters.
fn payload() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &["\n", "\r\n", "\r", " ", ":", "\0", "é€😀"];
    // Each piece as likely as a run of letters.
    let piece = prop_oneof![
        PIECES.len() as u32 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => "[a-z]{1,5}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

/// Text without CR, LF or NUL: what ids and event names may hold.
fn single_line() -> impl Strategy<Value = String> {
    "[ a-zA-Z0-9:é€-]{0,12}"
}

fn item() -> impl Strategy<Value = Item> {
    let id = prop_oneof![
        any::<u64>().prop_map(OwnedId::Num),
        single_line().prop_map(OwnedId::Str),
    ];
    let ev = (
        prop::option::of(id),
        prop::option::of(single_line()),
        prop::option::of(any::<u64>()),
        payload(),
    )
        .prop_map(|(id, event, retry_ms, data)| {
            Item::Ev(OwnedEvent {
                id,
                event,
                retry_ms,
                data,
            })
        });
    prop_oneof![4 => ev, 1 => single_line().prop_map(Item::Comment)]
}

fn encode_all(items: &[Item]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        match it {
            Item::Ev(ev) => {
                encode(&mut out, &ev.as_out()).unwrap();
            }
            Item::Comment(text) => write_comment(&mut out, text).unwrap(),
        }
    }
    out
}

/// What a conforming client must see: events in order, `data` line breaks as LF, empty event
/// names as "message", the id carried forward; and the final retry time.
fn model(items: &[Item]) -> (Vec<Event>, Option<u64>) {
    let mut out = Vec::new();
    let mut last_id = String::new();
    let mut retry = None;
    for it in items {
        match it {
            Item::Ev(ev) => {
                match &ev.id {
                    Some(OwnedId::Num(n)) => last_id = n.to_string(),
                    Some(OwnedId::Str(s)) => last_id.clone_from(s),
                    None => {}
                }
                retry = ev.retry_ms.or(retry);
                let event_type = match ev.event.as_deref() {
                    None | Some("") => "message".to_string(),
                    Some(e) => e.to_string(),
                };
                out.push(Event::Message(Message {
                    event_type,
                    data: ev.data.replace("\r\n", "\n").replace('\r', "\n"),
                    last_event_id: last_id.clone(),
                }));
            }
            Item::Comment(text) => out.push(Event::Comment(text.clone())),
        }
    }
    (out, retry)
}

/// A caller as the engine is one: keeps unconsumed bytes and appends each new read to them.
fn parse_chunked(stream: &[u8], cuts: &[usize]) -> (Vec<Event>, Option<u64>) {
    let mut p = Parser::new(ParserLimits::default());
    let mut leftover: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        let cut = cut.clamp(at, stream.len());
        leftover.extend_from_slice(&stream[at..cut]);
        at = cut;
        loop {
            let prog = p.feed(&leftover).unwrap();
            assert!(prog.consumed <= leftover.len());
            leftover.drain(..prog.consumed);
            match prog.event {
                Some(ev) => events.push(ev),
                None => break,
            }
        }
    }
    assert!(leftover.is_empty(), "a complete stream leaves no leftover");
    (events, p.retry_ms())
}

/// Rewrites the encoder's LF line ends as CR or CRLF; data never holds a raw break, so every
/// LF in the output is a line end and the result is an equivalent stream.
fn with_line_end(stream: &[u8], end: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() * 2);
    for &b in stream {
        if b == b'\n' {
            out.extend_from_slice(end);
        } else {
            out.push(b);
        }
    }
    out
}

proptest! {
    #[test]
    fn parse_of_encode_is_identity_up_to_line_breaks(items in prop::collection::vec(item(), 0..8)) {
        let stream = encode_all(&items);
        let mut p = Parser::new(ParserLimits::default());
        let got = parse_all(&mut p, &stream).unwrap();
        let (want, retry) = model(&items);
        prop_assert_eq!(got, want);
        prop_assert_eq!(p.retry_ms(), retry);
    }

    #[test]
    fn every_split_point_gives_identical_events(
        items in prop::collection::vec(item(), 1..5),
        end in prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])],
        bom in any::<bool>(),
    ) {
        let mut stream = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        stream.extend(with_line_end(&encode_all(&items), end));
        let want = model(&items);
        for cut in 0..=stream.len() {
            prop_assert_eq!(&parse_chunked(&stream, &[cut]), &want, "cut at {}", cut);
        }
    }

    #[test]
    fn random_chunks_give_identical_events(
        items in prop::collection::vec(item(), 1..10),
        end in prop_oneof![Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\r\n"[..])],
        mut cuts in prop::collection::vec(0usize..2000, 0..40),
    ) {
        let stream = with_line_end(&encode_all(&items), end);
        cuts.sort_unstable();
        prop_assert_eq!(parse_chunked(&stream, &cuts), model(&items));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        input in prop::collection::vec(any::<u8>(), 0..300),
        cut in 0usize..300,
    ) {
        let mut p = Parser::new(ParserLimits { event_bytes_max: 32 });
        let cut = cut.min(input.len());
        let mut leftover = input[..cut].to_vec();
        for chunk in [&input[cut..], &[][..]] {
            loop {
                match p.feed(&leftover) {
                    Ok(prog) => {
                        prop_assert!(prog.consumed <= leftover.len());
                        leftover.drain(..prog.consumed);
                        if prog.event.is_none() {
                            // Only a partial line (or a partial BOM plus one) is left over.
                            prop_assert!(leftover.len() <= 32 + 3);
                            break;
                        }
                    }
                    Err(_) => return Ok(()),
                }
            }
            leftover.extend_from_slice(chunk);
        }
    }
}
