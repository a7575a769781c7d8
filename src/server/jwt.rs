//! JWT verification: the configured keys (an HS256 secret, and/or one RS256, ES256 or EdDSA
//! public key from a PEM file), each checked only with its own algorithm, and the claims
//! uringcast reads (`exp`, `nbf`, `sub`, `subscribe`, `publish`) turned into a [`Grant`].
//! The cryptography is `jsonwebtoken`'s; nothing here compares signatures.
//!
//! Never here: where a token comes from, what a grant allows (see `auth`). The key file is
//! read once, by [`JwtKeys::load`] at start.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::config::{Config, ConfigError};
use super::grant::{parse_patterns, AuthError, Clock, Grant, Scope, PATTERNS_MAX};

/// Shortest HS256 secret accepted: an HMAC key shorter than the hash can be brute-forced from
/// a single token offline (RFC 7518 §3.2 requires at least 256 bits).
pub const HS256_SECRET_BYTES_MIN: usize = 32;

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
pub(super) struct JwtKeys {
    pub keys: Vec<(DecodingKey, Validation)>,
}

impl JwtKeys {
    pub fn load(config: &Config) -> Result<JwtKeys, ConfigError> {
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
    pub fn verify(&self, token: &str, clock: Clock) -> Result<Grant, AuthError> {
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
