//! Arbitrary bytes as `Sec-WebSocket-Extensions` fields (split into fields at NUL) through the
//! permessage-deflate negotiation. An agreement must name a window the server can write
//! (9..=15) and its response must be a header value that negotiates to the same agreement
//! again; any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringcast::proto::ws::deflate::{negotiate, WINDOW_BITS_MAX, WINDOW_BITS_MIN};

fuzz_target!(|data: &[u8]| {
    let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    if let Some(agreed) = negotiate(fields.iter().copied()) {
        assert!((WINDOW_BITS_MIN..=WINDOW_BITS_MAX).contains(&agreed.server_window_bits));
        let response = agreed.response();
        assert!(!response.contains(['\r', '\n']));
        assert_eq!(negotiate([response.as_bytes()]), Some(agreed));
    }
});
