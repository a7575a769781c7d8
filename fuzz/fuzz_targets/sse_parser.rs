//! Feeds arbitrary bytes to the SSE client parser as the engine would: unconsumed bytes stay as
//! leftover, new bytes are appended. The first byte picks where the input is cut into two reads,
//! so line ends and BOMs split across reads are explored too. Checks `consumed <= len`, that the
//! leftover stays under the limit, and that nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringcast::proto::sse::{Parser, ParserLimits};

const LIMIT_BYTES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(data.len());
    let mut parser = Parser::new(ParserLimits {
        event_bytes_max: LIMIT_BYTES,
    });
    let mut leftover = Vec::new();
    for chunk in [&data[..cut], &data[cut..]] {
        leftover.extend_from_slice(chunk);
        loop {
            let Ok(progress) = parser.feed(&leftover) else {
                return;
            };
            assert!(progress.consumed <= leftover.len());
            leftover.drain(..progress.consumed);
            if progress.event.is_none() {
                // Only a partial line is left, plus at most a BOM still being recognised.
                assert!(leftover.len() <= LIMIT_BYTES + 3);
                break;
            }
        }
    }
});
