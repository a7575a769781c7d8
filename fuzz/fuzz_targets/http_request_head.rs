//! Arbitrary bytes through the HTTP/1.1 request-head decoder, then the body decoder, in a
//! loop as the engine runs them (pipelining included). The first byte picks small or default
//! limits and a read size, so both the early-limit paths and resumed scanning are reached.
//! Checks `consumed <= len` at every step; any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringcast::proto::http1::{BodyDecoder, BodyEvent, HttpLimits, RequestDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let limits = if knob & 1 == 0 {
        HttpLimits::default()
    } else {
        HttpLimits {
            request_line_bytes_max: 32,
            head_bytes_max: 128,
            headers_max: 4,
            body_bytes_max: 64,
            chunk_ext_bytes_max: 8,
            trailer_bytes_max: 16,
        }
    };
    // Read size 1..=128 bytes: the engine's leftover-plus-new-bytes contract.
    let read_bytes = usize::from(knob >> 1) + 1;
    let mut heads = RequestDecoder::new();
    let mut body: Option<BodyDecoder> = None;
    let (mut pos, mut avail) = (0usize, 0usize);
    while avail < input.len() {
        avail = (avail + read_bytes).min(input.len());
        loop {
            let buf = &input[pos..avail];
            let (consumed, more) = match body.as_mut() {
                None => match heads.decode(&limits, buf) {
                    Err(_) => return,
                    Ok(p) => match p.event {
                        None => (p.consumed, false),
                        Some(head) => {
                            let _ = (head.path(), head.query(), head.header("host"));
                            match BodyDecoder::new(head.body(), &limits) {
                                Ok(d) => body = Some(d),
                                Err(_) => return,
                            }
                            (p.consumed, true)
                        }
                    },
                },
                Some(d) => match d.decode(buf) {
                    Err(_) => return,
                    Ok(p) => match p.event {
                        None => (p.consumed, false),
                        Some(BodyEvent::Data(s)) => {
                            assert!(!s.is_empty());
                            (p.consumed, true)
                        }
                        Some(BodyEvent::End) => {
                            body = None;
                            (p.consumed, true)
                        }
                    },
                },
            };
            assert!(
                consumed <= buf.len(),
                "consumed {consumed} > len {}",
                buf.len()
            );
            pos += consumed;
            if !more {
                break;
            }
        }
    }
});
