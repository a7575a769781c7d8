//! What a credential grants: topic [`Pattern`]s (`name`, `prefix*`, `*`), a [`Scope`] per
//! action, the [`Grant`] itself with its end, the [`AuthError`] every refusal is, the
//! [`Clock`] decisions read, and [`constant_time_eq`] for secrets.
//!
//! A leaf of `auth`: pure values and rules, no I/O, no clock of its own, no locks.

use std::fmt;

use crate::hub::{validate_topic, TOPIC_BYTES_MAX};

/// Most patterns one claim (`subscribe`, `publish`) or one ticket request may hold: a grant
/// lives in every ticket and on every authenticated WebSocket, so its size is bounded.
pub const PATTERNS_MAX: usize = 256;

/// The two clocks a decision needs: `now_ms` is the engine's monotonic clock (deadlines,
/// ticket expiry); `unix_ms` is the wall clock, only to read a JWT's `exp`/`nbf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now_ms: u64,
    pub unix_ms: u64,
}

impl Clock {
    /// `now_ms` from the engine, the wall clock from the OS.
    pub fn read(now_ms: u64) -> Clock {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock { now_ms, unix_ms }
    }
}

/// One entry of a `subscribe`/`publish` claim, of `public_topics`, or of a ticket request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: every topic.
    Any,
    /// `prefix*`: every topic starting with the prefix.
    Prefix(Box<str>),
    /// A topic name.
    Exact(Box<str>),
}

impl Pattern {
    /// `*`, `prefix*` or a topic name; the prefix and the name must be made of topic bytes.
    pub fn parse(text: &str) -> Option<Pattern> {
        if text == "*" {
            return Some(Pattern::Any);
        }
        let (body, prefix) = match text.strip_suffix('*') {
            Some(p) => (p, true),
            None => (text, false),
        };
        // A prefix is checked as a topic name: same bytes, same length bound.
        if validate_topic(body).is_err() || body.len() > TOPIC_BYTES_MAX {
            return None;
        }
        Some(if prefix {
            Pattern::Prefix(body.into())
        } else {
            Pattern::Exact(body.into())
        })
    }

    pub fn covers(&self, topic: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(p) => topic.starts_with(&**p),
            Pattern::Exact(t) => **t == *topic,
        }
    }

    /// Whether every topic `other` covers, this covers too.
    pub fn includes(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Any, _) => true,
            (_, Pattern::Any) => false,
            (Pattern::Prefix(p), Pattern::Prefix(q)) => q.starts_with(&**p),
            (_, Pattern::Exact(t)) => self.covers(t),
            (Pattern::Exact(_), Pattern::Prefix(_)) => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Any => f.write_str("*"),
            Pattern::Prefix(p) => write!(f, "{p}*"),
            Pattern::Exact(t) => f.write_str(t),
        }
    }
}

/// Parse a list of patterns; `Err` holds the first bad one.
pub fn parse_patterns<S: AsRef<str>>(items: &[S]) -> Result<Vec<Pattern>, String> {
    items
        .iter()
        .map(|s| Pattern::parse(s.as_ref()).ok_or_else(|| s.as_ref().to_owned()))
        .collect()
}

/// The topics a grant reaches for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The publish key: every topic.
    All,
    Patterns(Box<[Pattern]>),
}

impl Scope {
    pub fn covers(&self, topic: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Patterns(ps) => ps.iter().any(|p| p.covers(topic)),
        }
    }

    pub fn includes(&self, pattern: &Pattern) -> bool {
        match self {
            Scope::All => true,
            Scope::Patterns(ps) => ps.iter().any(|p| p.includes(pattern)),
        }
    }

    /// The patterns of `wanted` that this scope includes.
    pub fn narrow(&self, wanted: &[Pattern]) -> Scope {
        let kept: Vec<Pattern> = wanted
            .iter()
            .filter(|p| self.includes(p))
            .cloned()
            .collect();
        Scope::Patterns(kept.into())
    }
}

/// What an authenticated credential allows, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subscribe: Scope,
    pub publish: Scope,
    /// Engine milliseconds ([`Clock::now_ms`]) from which the grant is void; `u64::MAX` for
    /// the publish key, which does not expire.
    pub expires_ms: u64,
}

impl Grant {
    pub fn everything() -> Grant {
        Grant {
            subscribe: Scope::All,
            publish: Scope::All,
            expires_ms: u64::MAX,
        }
    }

    pub fn is_live(&self, now_ms: u64) -> bool {
        now_ms < self.expires_ms
    }
}

/// Why a request or a control message is refused. [`AuthError::status`] is the one place
/// mapping each to its HTTP answer; WebSocket `error` messages reuse the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credential where one is needed.
    Missing,
    /// A credential that does not verify: bad signature, malformed, wrong key, bad claims.
    Invalid(&'static str),
    /// A JWT past its `exp`.
    Expired,
    /// A ticket that was used already, has expired, or was never issued.
    TicketUnknown,
    /// A valid credential whose claims do not cover the topic.
    NotCovered { topic: String, publish: bool },
    /// A ticket request for a topic the token covers neither for subscribing nor publishing.
    NarrowingOutside { pattern: String },
    /// A browser page from an origin not in `allowed_origins`.
    ForeignOrigin,
    /// The ticket table holds `tickets_max` live tickets.
    TicketsFull { limit: usize },
}

impl AuthError {
    /// 401 when the credential is missing or worthless (the client should get a new one),
    /// 403 when it is valid but not enough, or the origin is refused, 503 when full.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing
            | AuthError::Invalid(_)
            | AuthError::Expired
            | AuthError::TicketUnknown => 401,
            AuthError::NotCovered { .. }
            | AuthError::NarrowingOutside { .. }
            | AuthError::ForeignOrigin => 403,
            AuthError::TicketsFull { .. } => 503,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str(
                "a token is needed: Authorization: Bearer, ?token=, ?ticket= or the auth cookie",
            ),
            AuthError::Invalid(why) => write!(f, "invalid token: {why}"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::TicketUnknown => {
                f.write_str("unknown ticket (used, expired or never issued)")
            }
            AuthError::NotCovered { topic, publish } => {
                let claim = if *publish { "publish" } else { "subscribe" };
                write!(
                    f,
                    "the token's {claim} claim does not cover topic {topic:?}"
                )
            }
            AuthError::NarrowingOutside { pattern } => {
                write!(f, "the token does not cover {pattern:?}")
            }
            AuthError::ForeignOrigin => f.write_str("origin not allowed"),
            AuthError::TicketsFull { limit } => {
                write!(f, "all {limit} tickets are in use; try again shortly")
            }
        }
    }
}

impl std::error::Error for AuthError {}

/// Compare secrets without an early exit, so the time taken does not reveal how many leading
/// bytes of a guess were right. (A length mismatch returns at once: lengths are not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        for (p, topic, want) in [
            ("*", "a", true),
            ("news", "news", true),
            ("news", "news2", false),
            ("news*", "news", true),
            ("news*", "news.eu", true),
            ("news*", "new", false),
            ("user:42", "user:4", false),
        ] {
            assert_eq!(
                Pattern::parse(p).unwrap().covers(topic),
                want,
                "{p} {topic}"
            );
        }
        for bad in ["", "a b", "*a", "a*b", "**", &"x".repeat(129)] {
            assert_eq!(Pattern::parse(bad), None, "{bad:?}");
        }
        let p = |s| Pattern::parse(s).unwrap();
        assert!(p("*").includes(&p("a*")));
        assert!(p("a*").includes(&p("ab*")));
        assert!(p("a*").includes(&p("ab")));
        assert!(!p("ab*").includes(&p("a*")));
        assert!(!p("ab").includes(&p("ab*")));
        assert!(!p("a*").includes(&p("*")));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
