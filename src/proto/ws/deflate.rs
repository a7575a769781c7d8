//! permessage-deflate (RFC 7692) negotiation, server side, sans-IO: read the client's
//! `Sec-WebSocket-Extensions` offers, pick the first one this server can honour, and write the
//! response parameters. Also the frame-level constants of the extension.
//!
//! What the server answers, whatever the offer: `server_no_context_takeover` (each message it
//! sends is compressed on its own, so one compressed frame can be shared by every subscriber,
//! and no compressor outlives a message) and `client_no_context_takeover` (RFC 7692 §7.1.1.2
//! lets a server require it; then no decompressor outlives a message either, so a connection
//! between messages holds no deflate state). `server_max_window_bits=N` is echoed when the
//! offer asks for it (the server then compresses with a window of at most 2^N bytes);
//! `client_max_window_bits` needs no answer, since a decompressor with the largest window reads
//! any smaller one.
//!
//! An offer is declined (the next one is tried) when it has an unknown parameter, a parameter
//! twice, a value where none is allowed or a bad one (§7.1), or `server_max_window_bits=8`:
//! zlib cannot write raw deflate with a 256-byte window, and RFC 7692 §7.1.2.1 lets a server
//! decline what it cannot honour.
//!
//! Never here: compression itself (the server does it with flate2), sockets.

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// The bytes every compressed message ends with before the sender strips them, and the
/// receiver appends again before inflating (RFC 7692 §7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RSV1 in a frame's first byte: set on the first frame of a compressed message (§6).
pub const RSV1: u8 = 0x40;

/// The smallest compression window this server writes: zlib's raw deflate starts at 2^9.
pub const WINDOW_BITS_MIN: u8 = 9;
/// The largest window (32 KiB), the default when the client asks for no bound.
pub const WINDOW_BITS_MAX: u8 = 15;

/// The agreed parameters of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The window the server compresses with, at most what the client asked for
    /// (`server_max_window_bits`), 9 to 15.
    pub server_window_bits: u8,
    /// Whether the answer carries `server_max_window_bits` (the offer had it).
    server_window_asked: bool,
}

impl Agreed {
    /// The response's `Sec-WebSocket-Extensions` value.
    pub fn response(&self) -> String {
        let mut s = format!("{EXTENSION}; server_no_context_takeover; client_no_context_takeover");
        if self.server_window_asked {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        s
    }
}

/// Pick the first offer in `values` (every `Sec-WebSocket-Extensions` field of the request, in
/// order) that this server honours. `None`: no permessage-deflate offer it can take; the
/// connection goes on without compression.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreed> {
    for value in values {
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        for offer in split_outside_quotes(text, ',') {
            if let Some(agreed) = offer_params(offer) {
                return Some(agreed);
            }
        }
    }
    None
}

/// One offer (`name *(; param)`): the agreement if it is a permessage-deflate offer this server
/// honours.
fn offer_params(offer: &str) -> Option<Agreed> {
    let mut parts = split_outside_quotes(offer, ';');
    let name = parts.next()?.trim();
    if !name.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreed = Agreed {
        server_window_bits: WINDOW_BITS_MAX,
        server_window_asked: false,
    };
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let slot = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match (slot, value) {
            (0 | 1, None) => {}
            (0 | 1, Some(_)) => return None,
            (2, Some(v)) => {
                let bits = window_bits(v)?;
                if bits < WINDOW_BITS_MIN {
                    return None;
                }
                agreed.server_window_bits = bits;
                agreed.server_window_asked = true;
            }
            (2, None) => return None,
            (3, Some(v)) => {
                window_bits(v)?;
            }
            (3, None) => {}
            _ => unreachable!("four slots"),
        }
    }
    Some(agreed)
}

/// A window-bits value: 8 to 15, decimal, no leading zero (§7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = v.parse().ok()?;
    (8..=15).contains(&bits).then_some(bits)
}

/// A parameter value: a token, or a quoted string whose content is a token (§7.1; RFC 6455
/// §9.1). Backslash escapes inside quotes are taken as written.
fn unquote(v: &str) -> Option<&str> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!inner.is_empty() && inner.bytes().all(token)).then_some(inner)
}

/// `s` split at `sep`, except inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        for (i, c) in s.char_indices() {
            match c {
                '"' => quoted = !quoted,
                c if c == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agree(values: &[&str]) -> Option<String> {
        negotiate(values.iter().map(|v| v.as_bytes())).map(|a| a.response())
    }

    const BASE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn offers_browsers_and_autobahn_send() {
        // Chrome and Firefox.
        assert_eq!(
            agree(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some(BASE)
        );
        assert_eq!(agree(&["permessage-deflate"]).as_deref(), Some(BASE));
        // Autobahn 12.*, 13.1 - 13.7.
        for (offer, window) in [
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits",
                None,
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover",
                None,
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=9",
                Some(9),
            ),
            (
                "permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=15",
                Some(15),
            ),
        ] {
            let want = match window {
                Some(n) => format!("{BASE}; server_max_window_bits={n}"),
                None => BASE.to_owned(),
            };
            assert_eq!(agree(&[offer]), Some(want), "{offer}");
        }
        let a = negotiate([&b"permessage-deflate; server_max_window_bits=10"[..]]).unwrap();
        assert_eq!(a.server_window_bits, 10);
    }

    #[test]
    fn the_first_acceptable_offer_wins_rfc7692_5() {
        // Autobahn 13.7 sends three offers in one field; the first is taken.
        let three = "permessage-deflate; server_no_context_takeover; server_max_window_bits=9, \
                     permessage-deflate; server_no_context_takeover, permessage-deflate";
        assert_eq!(
            agree(&[three]),
            Some(format!("{BASE}; server_max_window_bits=9"))
        );
        // A declined offer passes the turn to the next one, in the next field too.
        assert_eq!(
            agree(&[
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate"
            ])
            .as_deref(),
            Some(BASE)
        );
        assert_eq!(
            agree(&["x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=10"])
                .as_deref(),
            Some(BASE)
        );
    }

    #[test]
    fn bad_offers_are_declined_rfc7692_7_1() {
        for offer in [
            "x-webkit-deflate-frame",
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; client_max_window_bits; client_max_window_bits",
            "",
        ] {
            assert_eq!(agree(&[offer]), None, "{offer:?}");
        }
        assert_eq!(agree(&[]), None);
        assert_eq!(negotiate([&[0xffu8, 0xfe][..]]), None, "not UTF-8");
    }

    #[test]
    fn quoted_values_case_and_spaces() {
        assert_eq!(
            agree(&["PerMessage-Deflate ;  Server_Max_Window_Bits = \"12\" ; client_max_window_bits=\"15\""]),
            Some(format!("{BASE}; server_max_window_bits=12"))
        );
        // A comma inside quotes does not end the offer (and the value is then no token).
        assert_eq!(
            agree(&["permessage-deflate; client_max_window_bits=\"1,2\""]),
            None
        );
    }
}
