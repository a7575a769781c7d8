//! Who may do what: the security policy of the server, in one place.
//!
//! - Credentials a request presents ([`Credential::of`]): a ticket (`?ticket=`), a bearer
//!   token (`Authorization: Bearer`), `?token=`, or the auth cookie.
//! - What a credential is worth ([`Auth::authenticate`]): the publish key grants everything;
//!   a JWT (HS256, RS256, ES256 or EdDSA, verified by `jsonwebtoken`) grants the topic
//!   patterns of its `subscribe` and `publish` claims until its `exp`; a ticket grants what the
//!   token that asked for it granted, once.
//! - What a grant allows ([`Auth::may_subscribe`], [`Auth::may_publish`]), with public topics
//!   and `publish_open`.
//! - The ticket table ([`Tickets`]): bounded, shared by all workers behind one mutex, expired
//!   entries purged as time passes.
//! - Origin policy and the CORS fields that follow it ([`Auth::cors_for`], [`Cors`]).
//!
//! Never here: sockets, responses, hub access. Time comes in as [`Clock`] (the engine's
//! monotonic milliseconds plus the wall clock that JWT `exp` is written in); the one thing read
//! from disk is the public key file, once, at start.
//!
//! Secrets (the publish key, ticket verifiers) are compared with [`constant_time_eq`]; JWT
//! signatures are checked by `jsonwebtoken` (constant-time HMAC comparison in `hmac`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::config::{Config, ConfigError};
use crate::hub::{validate_topic, TOPIC_BYTES_MAX};
use crate::proto::http1::{self, RequestHead};

/// Most patterns one claim (`subscribe`, `publish`) or one ticket request may hold: a grant
/// lives in every ticket and on every authenticated WebSocket, so its size is bounded.
pub const PATTERNS_MAX: usize = 256;

/// Shortest HS256 secret accepted: an HMAC key shorter than the hash can be brute-forced from
/// a single token offline (RFC 7518 §3.2 requires at least 256 bits).
pub const HS256_SECRET_BYTES_MIN: usize = 32;

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

/// Parse a list of patterns; `None` names the first bad one.
fn parse_patterns<S: AsRef<str>>(items: &[S]) -> Result<Vec<Pattern>, String> {
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

    fn includes(&self, pattern: &Pattern) -> bool {
        match self {
            Scope::All => true,
            Scope::Patterns(ps) => ps.iter().any(|p| p.includes(pattern)),
        }
    }

    /// The patterns of `wanted` that this scope includes.
    fn narrow(&self, wanted: &[Pattern]) -> Scope {
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
    fn everything() -> Grant {
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

/// A credential as presented, before it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Ticket(String),
    /// A JWT or the publish key (bearer header, `?token=`, or the cookie).
    Token(String),
}

/// Where a route accepts credentials from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// `Authorization` header only (`POST /tickets`).
    Header,
    /// Header or `?token=` (`POST /publish`): never the cookie, which a browser attaches to a
    /// cross-site form post by itself.
    HeaderOrQuery,
    /// Everything (`/sse`, `/ws`): `?ticket=`, header, `?token=`, cookie.
    Any,
}

impl Credential {
    /// The credential `head` presents, first found of: `?ticket=`, `Authorization: Bearer`,
    /// `?token=`, the cookie named `cookie` (when given).
    pub fn of(head: &RequestHead, accept: Accept, cookie: Option<&str>) -> Option<Credential> {
        let query = head.query().unwrap_or("");
        if accept == Accept::Any {
            if let Some((_, v)) = http1::query_pairs(query).find(|(k, _)| k == "ticket") {
                return Some(Credential::Ticket(v.into_owned()));
            }
        }
        if let Some(auth) = head.header("authorization") {
            let value = String::from_utf8_lossy(auth);
            let token = match value.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                // Another scheme: no bearer token, and not a reason to look elsewhere.
                _ => "",
            };
            return Some(Credential::Token(token.to_owned()));
        }
        if accept != Accept::Header {
            if let Some((_, v)) = http1::query_pairs(query).find(|(k, _)| k == "token") {
                return Some(Credential::Token(v.into_owned()));
            }
        }
        if accept == Accept::Any {
            if let Some(name) = cookie {
                let found = head
                    .headers()
                    .filter(|f| f.name.eq_ignore_ascii_case("cookie"))
                    .find_map(|f| cookie_value(f.value, name));
                if let Some(v) = found {
                    return Some(Credential::Token(v));
                }
            }
        }
        None
    }
}

/// The value of cookie `name` in one `Cookie` field (`a=1; b=2`, RFC 6265 §4.2.1).
fn cookie_value(field: &[u8], name: &str) -> Option<String> {
    let field = std::str::from_utf8(field).ok()?;
    field.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"').to_owned())
    })
}

/// The claims uringcast reads. `exp` is required; `sub` is accepted (a string) and not used
/// for authorisation; unknown claims are ignored.
#[derive(Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    sub: Option<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

/// The configured JWT keys, each with the one algorithm it verifies. Checking the header's
/// `alg` against the key's own algorithm (not against a list) is what stops algorithm
/// confusion: an HS256 token is never checked with a public key as its secret.
struct JwtKeys {
    keys: Vec<(DecodingKey, Validation)>,
}

impl JwtKeys {
    fn load(config: &Config) -> Result<JwtKeys, ConfigError> {
        let mut keys = Vec::new();
        if let Some(secret) = &config.jwt_hs256_secret {
            if secret.len() < HS256_SECRET_BYTES_MIN {
                return Err(ConfigError::Invalid {
                    key: "jwt_hs256_secret",
                    reason: format!(
                        "must be at least {HS256_SECRET_BYTES_MIN} bytes; a shorter HMAC secret \
                         can be guessed offline from one token"
                    ),
                });
            }
            keys.push((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(path) = &config.jwt_public_key_file {
            let invalid = |reason: String| ConfigError::Invalid {
                key: "jwt_public_key_file",
                reason,
            };
            let pem =
                std::fs::read(path).map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
            let key = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                (k, Algorithm::RS256)
            } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                (k, Algorithm::ES256)
            } else if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
                (k, Algorithm::EdDSA)
            } else {
                return Err(invalid(format!(
                    "{path} holds no RSA, EC (P-256) or Ed25519 public key in PEM form"
                )));
            };
            keys.push((key.0, validation(key.1)));
        }
        Ok(JwtKeys { keys })
    }

    /// Verify `token` and turn its claims into a grant.
    fn verify(&self, token: &str, clock: Clock) -> Result<Grant, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("not a JWT"))?;
        let (key, validation) = self
            .keys
            .iter()
            .find(|(_, v)| v.algorithms[0] == header.alg)
            .ok_or(AuthError::Invalid("algorithm not accepted"))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            AuthError::Invalid(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::MissingRequiredClaim(_) => "exp missing",
                ErrorKind::Json(_) => "claims of the wrong type",
                _ => "malformed",
            })
        })?;
        let claims = data.claims;
        let exp_unix_ms = claims.exp.saturating_mul(1000);
        if exp_unix_ms <= clock.unix_ms {
            return Err(AuthError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_mul(1000) > clock.unix_ms)
        {
            return Err(AuthError::Invalid("not valid yet (nbf)"));
        }
        if claims.subscribe.len() > PATTERNS_MAX || claims.publish.len() > PATTERNS_MAX {
            return Err(AuthError::Invalid("too many patterns in a claim"));
        }
        let scope = |items: &[String]| {
            parse_patterns(items)
                .map(|ps| Scope::Patterns(ps.into()))
                .map_err(|_| AuthError::Invalid("bad topic pattern in a claim"))
        };
        Ok(Grant {
            subscribe: scope(&claims.subscribe)?,
            publish: scope(&claims.publish)?,
            expires_ms: clock.now_ms.saturating_add(exp_unix_ms - clock.unix_ms),
        })
    }
}

/// `exp` is checked by [`JwtKeys::verify`] against the caller's clock with no leeway (the
/// crate's default leeway is 60 s), so validation here only requires it.
fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    // Audiences are not configured: a key given to uringcast must be uringcast's own.
    v.validate_aud = false;
    v.leeway = 0;
    v.set_required_spec_claims(&["exp"]);
    v
}

/// Origins whose pages may use the server, from `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origins {
    Any,
    /// Serialised origins (`https://app.example:8443`, `null`), lowercase.
    List(Vec<String>),
}

/// Which CORS fields a response carries: decided once per request by [`Auth::cors_for`],
/// rendered by [`Auth::cors_fields`]. `Copy`, so a connection keeps it across callbacks while
/// a body arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cors {
    /// No CORS fields (routes that are not for browsers).
    #[default]
    Off,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Echo allowed origin number `n`, with `Vary: Origin` (and credentials, with the cookie).
    Origin(u32),
    /// A request without `Origin` under an origin list: only `Vary: Origin`, so a cache does
    /// not hand this answer to a page of another origin.
    Vary,
}

/// The policy, built once from the config at start, shared by all workers.
pub struct Auth {
    jwt: JwtKeys,
    publish_key: Option<String>,
    publish_open: bool,
    public_topics: Vec<Pattern>,
    origins: Origins,
    /// The auth cookie's name, when it is read: only under a list of specific origins. With
    /// `*` any page could make a browser send it (cross-site WebSocket hijacking).
    cookie: Option<String>,
    pub tickets: Tickets,
}

impl Auth {
    /// Build the policy; every bad value is an error that names its key.
    pub fn from_config(config: &Config) -> Result<Auth, ConfigError> {
        let invalid = |key, reason: String| ConfigError::Invalid { key, reason };
        let jwt = JwtKeys::load(config)?;
        let public_topics = parse_patterns(&config.public_topics).map_err(|bad| {
            invalid(
                "public_topics",
                format!("{bad:?} is not a topic name, prefix* or *"),
            )
        })?;
        let origins = parse_origins(&config.allowed_origins)
            .map_err(|reason| invalid("allowed_origins", reason))?;
        if let Some(name) = &config.auth_cookie {
            let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if !name.chars().all(token_char) {
                return Err(invalid(
                    "auth_cookie",
                    "must be a cookie name (letters, digits, !#$%&'*+-.^_`|~)".to_owned(),
                ));
            }
        }
        if config.tickets_max == 0 {
            return Err(invalid("tickets_max", "must be at least 1".to_owned()));
        }
        if config.ticket_ttl.0 < 1_000 {
            return Err(invalid("ticket_ttl", "must be at least 1s".to_owned()));
        }
        let cookie = match origins {
            Origins::List(_) => config.auth_cookie.clone(),
            Origins::Any => None,
        };
        Ok(Auth {
            jwt,
            publish_key: config.publish_key.clone(),
            publish_open: config.publish_open,
            public_topics,
            origins,
            cookie,
            tickets: Tickets::new(config.tickets_max, config.ticket_ttl.0),
        })
    }

    /// A JWT key is configured: subscriptions outside `public_topics` need a token.
    pub fn subscriptions_need_token(&self) -> bool {
        !self.jwt.keys.is_empty()
    }

    /// Whether some credential could be valid at all (a publish key or a JWT key). Without
    /// either, credentials are ignored: there is nothing to check them against and nothing
    /// they could grant.
    fn checks_credentials(&self) -> bool {
        self.publish_key.is_some() || !self.jwt.keys.is_empty()
    }

    /// The cookie name that is read, if any (see the field's doc).
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    pub fn publish_open(&self) -> bool {
        self.publish_open
    }

    /// The grant of a token (a JWT or the publish key).
    pub fn authenticate_token(&self, token: &str, clock: Clock) -> Result<Grant, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if let Some(key) = &self.publish_key {
            if constant_time_eq(token.as_bytes(), key.as_bytes()) {
                return Ok(Grant::everything());
            }
        }
        if self.jwt.keys.is_empty() {
            return Err(AuthError::Invalid("not the publish key"));
        }
        self.jwt.verify(token, clock)
    }

    /// The grant of what a request presents: `Ok(None)` when it presents nothing, or when
    /// nothing is configured to check it against. A ticket is used up here.
    pub fn authenticate(
        &self,
        credential: Option<Credential>,
        clock: Clock,
    ) -> Result<Option<Grant>, AuthError> {
        if !self.checks_credentials() {
            return Ok(None);
        }
        match credential {
            None => Ok(None),
            Some(Credential::Token(t)) => self.authenticate_token(&t, clock).map(Some),
            Some(Credential::Ticket(t)) => self.tickets.take(&t, clock.now_ms).map(Some),
        }
    }

    /// May the holder of `grant` subscribe to `topic`? `Ok(true)` when that needed the grant
    /// (the topic is not public and tokens are required), so the subscription ends with it.
    pub fn may_subscribe(
        &self,
        grant: Option<&Grant>,
        topic: &str,
        now_ms: u64,
    ) -> Result<bool, AuthError> {
        if !self.subscriptions_need_token() || self.public_topics.iter().any(|p| p.covers(topic)) {
            return Ok(false);
        }
        match grant {
            None => Err(AuthError::Missing),
            Some(g) if !g.is_live(now_ms) => Err(AuthError::Expired),
            Some(g) if g.subscribe.covers(topic) => Ok(true),
            Some(_) => Err(AuthError::NotCovered {
                topic: topic.to_owned(),
                publish: false,
            }),
        }
    }

    /// May the holder of `grant` publish to `topic`? Always, with `publish_open`.
    pub fn may_publish(
        &self,
        grant: Option<&Grant>,
        topic: &str,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        if self.publish_open {
            return Ok(());
        }
        match grant {
            None => Err(AuthError::Missing),
            Some(g) if !g.is_live(now_ms) => Err(AuthError::Expired),
            Some(g) if g.publish.covers(topic) => Ok(()),
            Some(_) => Err(AuthError::NotCovered {
                topic: topic.to_owned(),
                publish: true,
            }),
        }
    }

    /// A new ticket for `grant`, narrowed to `topics` when given: each pattern must be within
    /// the grant's subscribe or publish scope, and the ticket keeps, for each action, the
    /// listed patterns the grant had for it. Returns the ticket and its lifetime in ms.
    pub fn issue_ticket(
        &self,
        grant: &Grant,
        topics: Option<&[String]>,
        now_ms: u64,
    ) -> Result<(String, u64), AuthError> {
        let mut grant = grant.clone();
        if let Some(topics) = topics {
            if topics.len() > PATTERNS_MAX {
                return Err(AuthError::NarrowingOutside {
                    pattern: format!("more than {PATTERNS_MAX} patterns"),
                });
            }
            let wanted = parse_patterns(topics)
                .map_err(|bad| AuthError::NarrowingOutside { pattern: bad })?;
            if let Some(p) = wanted
                .iter()
                .find(|p| !grant.subscribe.includes(p) && !grant.publish.includes(p))
            {
                return Err(AuthError::NarrowingOutside {
                    pattern: p.to_string(),
                });
            }
            grant.subscribe = grant.subscribe.narrow(&wanted);
            grant.publish = grant.publish.narrow(&wanted);
        }
        self.tickets.issue(grant, now_ms)
    }

    /// The CORS decision for a request with this `Origin` (absent for non-browser clients,
    /// which are not refused). `Err` for an origin outside the list.
    pub fn cors_for(&self, origin: Option<&[u8]>) -> Result<Cors, AuthError> {
        let list = match &self.origins {
            Origins::Any => return Ok(Cors::Any),
            Origins::List(list) => list,
        };
        let Some(origin) = origin else {
            return Ok(Cors::Vary);
        };
        list.iter()
            .position(|o| o.as_bytes().eq_ignore_ascii_case(origin))
            .map(|i| Cors::Origin(i as u32))
            .ok_or(AuthError::ForeignOrigin)
    }

    /// The fields `cors` stands for, appended to `fields`.
    pub fn cors_fields<'a>(&'a self, cors: Cors, fields: &mut Vec<(&'a str, &'a str)>) {
        match (cors, &self.origins) {
            (Cors::Off, _) => {}
            (Cors::Any, _) => fields.push(("Access-Control-Allow-Origin", "*")),
            (Cors::Vary, _) => fields.push(("Vary", "Origin")),
            (Cors::Origin(i), Origins::List(list)) => {
                fields.push(("Access-Control-Allow-Origin", &list[i as usize]));
                fields.push(("Vary", "Origin"));
                if self.cookie.is_some() {
                    fields.push(("Access-Control-Allow-Credentials", "true"));
                }
            }
            (Cors::Origin(_), Origins::Any) => {
                unreachable!("Cors::Origin is only decided under an origin list")
            }
        }
    }
}

/// `allowed_origins`: `*` alone, or serialised origins (`scheme://host[:port]`, or `null`).
fn parse_origins(items: &[String]) -> Result<Origins, String> {
    if items.iter().any(|o| o == "*") {
        return if items.len() == 1 {
            Ok(Origins::Any)
        } else {
            Err("* must stand alone".to_owned())
        };
    }
    if items.is_empty() {
        return Err("list at least one origin, or *".to_owned());
    }
    let mut list = Vec::with_capacity(items.len());
    for o in items {
        let lower = o.to_ascii_lowercase();
        let ok = lower == "null"
            || ["http://", "https://"].iter().any(|scheme| {
                lower.strip_prefix(scheme).is_some_and(|host| {
                    !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
            });
        if !ok {
            return Err(format!(
                "{o:?} is not an origin like https://app.example or http://localhost:3000 \
                 (scheme and host, no path)"
            ));
        }
        list.push(lower);
    }
    Ok(Origins::List(list))
}

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
    /// (selector, expiry) in issue order; since every ticket lives `ttl_ms`, also in expiry
    /// order, so the purge pops from the front. `live.len() <= order.len() <= max`.
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
    fn issue(&self, grant: Grant, now_ms: u64) -> Result<(String, u64), AuthError> {
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
        Ok((text, expires_ms - now_ms))
    }

    /// Use a ticket up: its grant, once. A wrong verifier leaves the entry alone (the caller
    /// did not hold the ticket, so it may not spend it).
    fn take(&self, ticket: &str, now_ms: u64) -> Result<Grant, AuthError> {
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

/// A random publish key for a server started without any publish credential: 128 bits from
/// the OS, as 32 hex digits.
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const CLOCK: Clock = Clock {
        now_ms: 5_000,
        unix_ms: 1_700_000_000_000,
    };

    fn claims(exp_s: u64, sub: &[&str], publish: &[&str]) -> serde_json::Value {
        serde_json::json!({"exp": exp_s, "sub": "u1", "subscribe": sub, "publish": publish})
    }

    fn hs256(claims: &serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn auth(edit: impl FnOnce(&mut Config)) -> Auth {
        let mut c = Config {
            jwt_hs256_secret: Some(SECRET.into()),
            ..Config::default()
        };
        edit(&mut c);
        Auth::from_config(&c).unwrap()
    }

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
    fn jwt_claims_become_a_grant_and_bad_tokens_are_refused() {
        let a = auth(|_| {});
        let exp = CLOCK.unix_ms / 1000 + 60;
        let good = hs256(&claims(exp, &["news*"], &["news.eu"]), SECRET);
        let g = a.authenticate_token(&good, CLOCK).unwrap();
        assert!(g.subscribe.covers("news.us") && !g.subscribe.covers("sports"));
        assert!(g.publish.covers("news.eu") && !g.publish.covers("news.us"));
        assert_eq!(g.expires_ms, CLOCK.now_ms + 60_000);

        let forged = hs256(
            &claims(exp, &["*"], &[]),
            "another-secret-of-32-bytes-or-more!",
        );
        assert_eq!(
            a.authenticate_token(&forged, CLOCK),
            Err(AuthError::Invalid("bad signature"))
        );
        let expired = hs256(&claims(CLOCK.unix_ms / 1000, &["*"], &[]), SECRET);
        assert_eq!(
            a.authenticate_token(&expired, CLOCK),
            Err(AuthError::Expired)
        );
        let no_exp = hs256(&serde_json::json!({"subscribe": ["*"]}), SECRET);
        assert!(matches!(
            a.authenticate_token(&no_exp, CLOCK),
            Err(AuthError::Invalid(_))
        ));
        let bad_pattern = hs256(&claims(exp, &["a*b"], &[]), SECRET);
        assert!(a.authenticate_token(&bad_pattern, CLOCK).is_err());
        assert!(a.authenticate_token("not.a.jwt", CLOCK).is_err());
        // alg "none" is never accepted.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64_url(&claims(exp, &["*"], &["*"]).to_string())
        );
        assert!(a.authenticate_token(&none, CLOCK).is_err());
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn public_key_algorithms_and_no_algorithm_confusion() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let exp = CLOCK.unix_ms / 1000 + 60;
        for (name, alg) in [
            ("rs256", Algorithm::RS256),
            ("es256", Algorithm::ES256),
            ("ed25519", Algorithm::EdDSA),
        ] {
            let public = format!("{dir}/tests/keys/{name}-public.pem");
            let private = std::fs::read(format!("{dir}/tests/keys/{name}-private.pem")).unwrap();
            let signing = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&private),
                Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
                _ => EncodingKey::from_ed_pem(&private),
            }
            .unwrap();
            let a = Auth::from_config(&Config {
                jwt_public_key_file: Some(public.clone()),
                ..Config::default()
            })
            .unwrap();
            let token = encode(&Header::new(alg), &claims(exp, &["x"], &[]), &signing).unwrap();
            let g = a.authenticate_token(&token, CLOCK).unwrap();
            assert!(g.subscribe.covers("x"), "{name}");
            // The public key's bytes used as an HS256 secret must not verify.
            let pem = std::fs::read_to_string(&public).unwrap();
            let confused = encode(
                &Header::new(Algorithm::HS256),
                &claims(exp, &["x"], &[]),
                &EncodingKey::from_secret(pem.as_bytes()),
            )
            .unwrap();
            assert!(a.authenticate_token(&confused, CLOCK).is_err(), "{name}");
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |c: Config| Auth::from_config(&c).err().unwrap().to_string();
        let e = err(Config {
            jwt_public_key_file: Some("/nonexistent/key.pem".into()),
            ..Config::default()
        });
        assert!(
            e.contains("jwt_public_key_file") && e.contains("cannot read"),
            "{e}"
        );
        let e = err(Config {
            jwt_public_key_file: Some(format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"))),
            ..Config::default()
        });
        assert!(
            e.contains("jwt_public_key_file") && e.contains("PEM"),
            "{e}"
        );
        let e = err(Config {
            jwt_hs256_secret: Some("short".into()),
            ..Config::default()
        });
        assert!(e.contains("jwt_hs256_secret"), "{e}");
        let e = err(Config {
            public_topics: vec!["a b".into()],
            ..Config::default()
        });
        assert!(e.contains("public_topics"), "{e}");
        for bad in [
            vec!["*".to_owned(), "http://a".to_owned()],
            vec!["a.example".to_owned()],
        ] {
            let e = err(Config {
                allowed_origins: bad,
                ..Config::default()
            });
            assert!(e.contains("allowed_origins"), "{e}");
        }
    }

    #[test]
    fn subscribe_and_publish_rules() {
        let a = auth(|c| c.public_topics = vec!["lobby".into(), "open.*".into()]);
        let g = a
            .authenticate_token(
                &hs256(&claims(CLOCK.unix_ms / 1000 + 1, &["a*"], &["a1"]), SECRET),
                CLOCK,
            )
            .unwrap();
        let now = CLOCK.now_ms;
        assert_eq!(a.may_subscribe(None, "lobby", now), Ok(false));
        assert_eq!(a.may_subscribe(None, "open.x", now), Ok(false));
        assert_eq!(a.may_subscribe(None, "a1", now), Err(AuthError::Missing));
        assert_eq!(a.may_subscribe(Some(&g), "a1", now), Ok(true));
        assert_eq!(
            a.may_subscribe(Some(&g), "b", now).unwrap_err().status(),
            403
        );
        assert_eq!(
            a.may_subscribe(Some(&g), "a1", now + 1_000),
            Err(AuthError::Expired)
        );
        assert_eq!(a.may_publish(Some(&g), "a1", now), Ok(()));
        assert_eq!(
            a.may_publish(Some(&g), "a2", now).unwrap_err().status(),
            403
        );
        assert_eq!(a.may_publish(None, "a1", now), Err(AuthError::Missing));
        let open = auth(|c| c.publish_open = true);
        assert_eq!(open.may_publish(None, "x", now), Ok(()));
        // Without a JWT key, subscribing needs nothing.
        let keyless = Auth::from_config(&Config::default()).unwrap();
        assert_eq!(keyless.may_subscribe(None, "x", now), Ok(false));
    }

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

    #[test]
    fn ticket_narrowing_stays_within_the_token() {
        let a = auth(|_| {});
        let g = Grant {
            subscribe: Scope::Patterns(vec![Pattern::parse("news*").unwrap()].into()),
            publish: Scope::Patterns(vec![Pattern::parse("news.eu").unwrap()].into()),
            expires_ms: u64::MAX,
        };
        let narrow = vec!["news.eu".to_owned()];
        let (ticket, _) = a.issue_ticket(&g, Some(&narrow), 0).unwrap();
        let got = a.tickets.take(&ticket, 1).unwrap();
        assert!(got.subscribe.covers("news.eu") && !got.subscribe.covers("news.us"));
        assert!(got.publish.covers("news.eu"));
        let outside = vec!["sports".to_owned()];
        assert_eq!(
            a.issue_ticket(&g, Some(&outside), 0).unwrap_err().status(),
            403
        );
        let wider = vec!["*".to_owned()];
        assert!(a.issue_ticket(&g, Some(&wider), 0).is_err());
    }

    #[test]
    fn origins_and_cors_fields() {
        let any = auth(|_| {});
        assert_eq!(any.cors_for(Some(b"https://x.example")), Ok(Cors::Any));
        let listed = auth(|c| c.allowed_origins = vec!["https://App.example".into()]);
        assert_eq!(listed.cors_for(None), Ok(Cors::Vary));
        assert_eq!(
            listed.cors_for(Some(b"https://evil.example")),
            Err(AuthError::ForeignOrigin)
        );
        let cors = listed.cors_for(Some(b"https://app.example")).unwrap();
        let mut fields = Vec::new();
        listed.cors_fields(cors, &mut fields);
        assert_eq!(
            fields,
            [
                ("Access-Control-Allow-Origin", "https://app.example"),
                ("Vary", "Origin"),
                ("Access-Control-Allow-Credentials", "true"),
            ]
        );
        // With `*`, the cookie is not read, and no credentials are allowed.
        assert_eq!(any.cookie(), None);
        assert_eq!(listed.cookie(), Some("uringcast_token"));
    }

    #[test]
    fn credentials_are_found_in_order() {
        let mut d = http1::RequestDecoder::new();
        let limits = http1::HttpLimits::default();
        let mut head_of = |raw: &'static [u8]| {
            d.reset();
            let p = d.decode(&limits, raw).unwrap();
            p.event.unwrap()
        };
        let h = head_of(b"GET /sse?topic=a&ticket=T&token=Q HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer H\r\nCookie: x=1; c=C\r\n\r\n");
        assert_eq!(
            Credential::of(&h, Accept::Any, Some("c")),
            Some(Credential::Ticket("T".into()))
        );
        assert_eq!(
            Credential::of(&h, Accept::Header, Some("c")),
            Some(Credential::Token("H".into()))
        );
        let h =
            head_of(b"GET /sse?topic=a&token=Q HTTP/1.1\r\nHost: t\r\nCookie: x=1; c=C\r\n\r\n");
        assert_eq!(
            Credential::of(&h, Accept::HeaderOrQuery, Some("c")),
            Some(Credential::Token("Q".into()))
        );
        let h = head_of(b"GET /sse?topic=a HTTP/1.1\r\nHost: t\r\nCookie: x=1; c=C\r\n\r\n");
        assert_eq!(
            Credential::of(&h, Accept::Any, Some("c")),
            Some(Credential::Token("C".into()))
        );
        assert_eq!(Credential::of(&h, Accept::HeaderOrQuery, Some("c")), None);
        assert_eq!(Credential::of(&h, Accept::Any, None), None);
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
