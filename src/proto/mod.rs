//! Sans-IO protocol core: HTTP/1.1 requests, RFC 6455 WebSocket frames and SSE events.
//!
//! Nothing in here touches a socket, a clock or a thread. Decoders are fed `&[u8]` and report
//! how many bytes they consumed; encoders write into a caller's buffer. Time, where a rule needs
//! it, comes in as an argument.
#![forbid(unsafe_code)]

pub mod http1;
pub mod sse;
pub mod ws;

/// What a decoder made of the bytes it was given.
///
/// The caller drops `consumed` bytes from the front of its input (`0 <= consumed <= input.len()`)
/// and calls again. `event: None` means "need more bytes": feed the rest plus whatever arrives.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<E> {
    pub consumed: usize,
    pub event: Option<E>,
}

/// Which end of a connection this codec speaks for. The server role requires masked frames
/// from its peer; the client role masks what it sends and rejects masked frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// Decimal digits in `v` (1 for 0): the length [`write_u64`] writes.
pub(crate) fn digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

/// Append the decimal digits of `n` without a temporary `String` (at most 20 bytes). The one
/// number writer of HTTP heads, SSE `id:`/`retry:` and the WebSocket JSON `"id"`.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20]; // u64::MAX has 20 digits
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_numbers_match_std() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12345,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            write_u64(&mut out, n);
            assert_eq!(out[1..], *n.to_string().as_bytes());
            assert_eq!(digits(n), n.to_string().len());
        }
    }
}
