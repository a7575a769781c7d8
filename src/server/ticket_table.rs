//! The ticket table: tickets issued by `POST /tickets`, each a [`Grant`] usable once before
//! it expires. Bounded (at most `tickets_max` issued within one `ticket_ttl`), shared by every
//! worker behind one mutex, expired entries purged as time passes. Ticket ids come from the
//! OS random number generator.
//!
//! Never here: who may get a ticket or what it is narrowed to (see `auth`), I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::grant::{constant_time_eq, AuthError, Grant};

/// Ticket layout, as 48 lowercase hex digits:
/// ```text
/// 0         16                                48
/// | selector | verifier                        |
///   64 bits    128 bits (the secret)
/// ```
/// The selector finds the entry (a hash-map lookup, whose timing may depend on it); the
/// verifier is then compared in constant time, so timing reveals nothing of the secret part.
const SELECTOR_HEX: usize = 16;
const TICKET_HEX: usize = 48;

/// The ticket table. Bounded: at most `max` tickets issued within the last `ttl_ms` (used ones
/// included, until they expire), so its memory is at most `max` grants. Shared by every
/// worker behind one mutex, held for a lookup or an insert and the purge of expired entries.
pub struct Tickets {
    inner: Mutex<TicketTable>,
    max: usize,
    ttl_ms: u64,
}

struct TicketEntry {
    verifier: [u8; 16],
    grant: Grant,
    expires_ms: u64,
}

#[derive(Default)]
struct TicketTable {
    live: HashMap<u64, TicketEntry>,
    /// (selector, expiry) in issue order, which is expiry order except for tickets cut short
    /// by their token's expiry; the purge pops expired entries from the front, so such a
    /// ticket may stay (counted, and refused by `take`, which checks each entry's own expiry)
    /// until the entries before it expire, at most `ttl_ms` later.
    /// `live.len() <= order.len() <= max`.
    order: VecDeque<(u64, u64)>,
}

impl TicketTable {
    fn purge(&mut self, now_ms: u64) {
        while let Some(&(selector, expires_ms)) = self.order.front() {
            if expires_ms > now_ms {
                break;
            }
            self.order.pop_front();
            if self
                .live
                .get(&selector)
                .is_some_and(|e| e.expires_ms == expires_ms)
            {
                self.live.remove(&selector);
            }
        }
    }
}

impl Tickets {
    pub fn new(max: usize, ttl_ms: u64) -> Tickets {
        Tickets {
            inner: Mutex::new(TicketTable::default()),
            max,
            ttl_ms,
        }
    }

    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TicketTable> {
        // The table stays consistent at every step (insert, then push), so a panic elsewhere
        // while it was held leaves nothing half-done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ticket for `grant`, valid for `ttl_ms` or until the grant expires if sooner.
    /// Returns it and its lifetime in ms.
    pub fn issue(&self, grant: Grant, now_ms: u64) -> Result<(String, u64), AuthError> {
        let expires_ms = (now_ms + self.ttl_ms).min(grant.expires_ms);
        let mut t = self.lock();
        t.purge(now_ms);
        if t.order.len() >= self.max {
            return Err(AuthError::TicketsFull { limit: self.max });
        }
        let (selector, verifier) = loop {
            let mut bytes = [0u8; 24];
            getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
            let selector = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
            if !t.live.contains_key(&selector) {
                break (selector, bytes[8..].try_into().expect("16 bytes"));
            }
        };
        t.live.insert(
            selector,
            TicketEntry {
                verifier,
                grant,
                expires_ms,
            },
        );
        t.order.push_back((selector, expires_ms));
        drop(t);
        let mut text = format!("{selector:016x}");
        for b in verifier {
            text.push_str(&format!("{b:02x}"));
        }
        Ok((text, expires_ms.saturating_sub(now_ms)))
    }

    /// Use a ticket up: its grant, once. A wrong verifier leaves the entry alone (the caller
    /// did not hold the ticket, so it may not spend it).
    pub fn take(&self, ticket: &str, now_ms: u64) -> Result<Grant, AuthError> {
        let (selector, verifier) = parse_ticket(ticket).ok_or(AuthError::TicketUnknown)?;
        let mut t = self.lock();
        t.purge(now_ms);
        let matches = t
            .live
            .get(&selector)
            .is_some_and(|e| constant_time_eq(&e.verifier, &verifier));
        if !matches {
            return Err(AuthError::TicketUnknown);
        }
        let entry = t.live.remove(&selector).expect("found above");
        if entry.expires_ms <= now_ms {
            return Err(AuthError::TicketUnknown);
        }
        Ok(entry.grant)
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let t = self.lock();
        (t.live.len(), t.order.len())
    }
}

fn parse_ticket(text: &str) -> Option<(u64, [u8; 16])> {
    if text.len() != TICKET_HEX || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let selector = u64::from_str_radix(&text[..SELECTOR_HEX], 16).ok()?;
    let mut verifier = [0u8; 16];
    for (i, b) in verifier.iter_mut().enumerate() {
        let at = SELECTOR_HEX + 2 * i;
        *b = u8::from_str_radix(&text[at..at + 2], 16).ok()?;
    }
    Some((selector, verifier))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_expire_and_are_bounded() {
        let t = Tickets::new(2, 1_000);
        let (a, life) = t.issue(Grant::everything(), 0).unwrap();
        assert_eq!((a.len(), life), (TICKET_HEX, 1_000));
        // A wrong verifier with the right selector does not spend it.
        let mut wrong = a.clone();
        wrong.replace_range(47.., if a.ends_with('0') { "1" } else { "0" });
        assert_eq!(t.take(&wrong, 1), Err(AuthError::TicketUnknown));
        assert_eq!(t.take(&a, 1), Ok(Grant::everything()));
        assert_eq!(t.take(&a, 2), Err(AuthError::TicketUnknown), "second use");
        let (b, _) = t.issue(Grant::everything(), 10).unwrap();
        assert_eq!(
            t.issue(Grant::everything(), 20),
            Err(AuthError::TicketsFull { limit: 2 }),
            "a used ticket still counts until it expires"
        );
        assert_eq!(t.take(&b, 1_010), Err(AuthError::TicketUnknown), "expired");
        assert_eq!(t.len(), (0, 0), "purged");
        assert!(t.issue(Grant::everything(), 1_020).is_ok());
        assert_eq!(t.take("zz", 0), Err(AuthError::TicketUnknown));
        // A ticket does not outlive the token it came from.
        let short = Grant {
            expires_ms: 1_500,
            ..Grant::everything()
        };
        assert_eq!(t.issue(short, 1_100).unwrap().1, 400);
    }
}
