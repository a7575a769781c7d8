//! The echo payload: send time and sequence number as 32 ASCII hex digits, then `x` padding,
//! so the same bytes are valid in text and binary frames and are checked byte for byte when
//! they come back.
//!
//! ```text
//!   0               16              32            size
//!   | ts_ns (hex16) | seq (hex16)   | x x x ... x |
//! ```
//!
//! Pure functions; no clock, no I/O.

/// Bytes of the header; `--size` must be at least this.
pub const HEADER_BYTES: usize = 32;

/// Write a payload of exactly `size` bytes (`size >= HEADER_BYTES`) into `out`.
pub fn encode(ts_ns: u64, seq: u64, size: usize, out: &mut Vec<u8>) {
    debug_assert!(size >= HEADER_BYTES, "size {size} below header");
    // Digits written in place: no `format!` allocation per echo sent.
    for v in [ts_ns, seq] {
        out.extend(
            (0..16)
                .rev()
                .map(|i| b"0123456789abcdef"[(v >> (i * 4)) as usize & 0xf]),
        );
    }
    out.resize(out.len() + size.saturating_sub(HEADER_BYTES), b'x');
}

/// `(ts_ns, seq)` if `data` is a well-formed payload of exactly `size` bytes.
pub fn decode(data: &[u8], size: usize) -> Option<(u64, u64)> {
    if data.len() != size || size < HEADER_BYTES {
        return None;
    }
    let hex = |b: &[u8]| u64::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
    let ts = hex(&data[..16])?;
    let seq = hex(&data[16..32])?;
    data[HEADER_BYTES..]
        .iter()
        .all(|&b| b == b'x')
        .then_some((ts, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        for size in [32, 33, 100, 4096] {
            let mut v = Vec::new();
            encode(123_456_789, 42, size, &mut v);
            assert_eq!(v.len(), size);
            assert_eq!(decode(&v, size), Some((123_456_789, 42)));
            assert_eq!(decode(&v, size + 1), None);
            if size > 32 {
                v[size - 1] = b'y';
                assert_eq!(decode(&v, size), None);
            }
        }
        assert_eq!(decode(b"zz", 2), None);
        let mut v = Vec::new();
        encode(u64::MAX, u64::MAX, 32, &mut v);
        assert_eq!(decode(&v, 32), Some((u64::MAX, u64::MAX)));
        let mut w = Vec::new();
        encode(0x0123_4567_89ab_cdef, 0xa, 32, &mut w);
        assert_eq!(&w[..], b"0123456789abcdef000000000000000a");
        v[0] = b'g';
        assert_eq!(decode(&v, 32), None);
    }
}
