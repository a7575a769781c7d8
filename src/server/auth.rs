//! Who may do what: the security policy of the server, in one place; the files below it hold
//! its parts (`grant`: patterns, scopes, grants, errors; `jwt`: token verification;
//! `ticket_table`: the tickets), and every other server file asks this one.
//!
//! - Credentials a request presents ([`Credential::of`]): a ticket (`?ticket=`), a bearer
//!   token (`Authorization: Bearer`), `?token=`, or the auth cookie.
//! - What a credential is worth ([`Auth::authenticate`]): the publish key grants everything;
//!   a JWT (HS256, RS256, ES256 or EdDSA, verified by `jsonwebtoken`) grants the topic
//!   patterns of its `subscribe` and `publish` claims until its `exp`; a ticket grants what the
//!   token that asked for it granted, once.
//! - What a grant allows ([`Auth::may_subscribe`], [`Auth::may_publish`]), with public topics
//!   and `publish_open`.
//! - Tickets: issued narrowed to what the asking token had (`ticket_table` holds them).
//! - Origin policy and the CORS fields that follow it ([`Auth::cors_for`], [`Cors`]).
//!
//! Never here: sockets, responses, hub access. Time comes in as [`Clock`] (the engine's
//! monotonic milliseconds plus the wall clock that JWT `exp` is written in); the one thing read
//! from disk is the public key file, once, at start.
//!
//! Secrets (the publish key, ticket verifiers) are compared with [`constant_time_eq`]; JWT
//! signatures are checked by `jsonwebtoken` (constant-time HMAC comparison in `hmac`).

use super::config::{Config, ConfigError};
use super::grant::{constant_time_eq, parse_patterns, Pattern};
pub use super::grant::{AuthError, Clock, Grant, PATTERNS_MAX};
use super::jwt::JwtKeys;
use super::ticket_table::Tickets;
use crate::proto::http1::{self, RequestHead};

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
    /// Everything (`/sse`, `/ws`, `/poll`): `?ticket=`, header, `?token=`, cookie.
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
        // Only the Bearer scheme is ours: another (`Basic` from a proxy in front, say) is not a
        // credential for uringcast, so the search goes on.
        if let Some(auth) = head.header("authorization") {
            let value = String::from_utf8_lossy(auth);
            if let Some((scheme, rest)) = value.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    return Some(Credential::Token(rest.trim().to_owned()));
                }
            }
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

/// A random publish key for a server started without any publish credential: 128 bits from
/// the OS, as 32 hex digits.
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).expect("the OS random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::grant::Scope;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

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
        let h = head_of(
            b"GET /sse?topic=a&token=Q HTTP/1.1\r\nHost: t\r\nAuthorization: Basic eDp5\r\n\r\n",
        );
        assert_eq!(
            Credential::of(&h, Accept::Any, None),
            Some(Credential::Token("Q".into())),
            "another scheme is not ours"
        );
    }
}
