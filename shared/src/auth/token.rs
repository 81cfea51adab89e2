//! Credentials: compact JWTs (RFC 7519) signed with EdDSA over Ed25519 (RFC 8037).
//!
//! A token is `base64url(header) "." base64url(claims) "." base64url(signature)`, all
//! without padding, where the header is `{"alg":"EdDSA","typ":"JWT","kid":"..."}` and
//! the signature is Ed25519 over the ASCII text of the first two segments.
//!
//! No maintained JWT crate signs with ed25519-dalek, so this is encoded by hand, with
//! the RFC 8037 Appendix A.4 vector as a test. [`verify`] accepts only what [`sign`]
//! produces: exactly three canonical base64url segments, at most [`MAX_TOKEN_BYTES`],
//! `alg` exactly `EdDSA` (never `none`, never an HMAC that a public key could be fed
//! to), a known `kid`, a strictly verified signature (no small-order keys, canonical
//! `s`), and only then the claims. Unknown header parameters (`crit`, `jwk`, `jku`,
//! ...) and unknown or duplicate claims are refused: the header must not be able to
//! choose the key, and a claim an older verifier does not understand may be a
//! restriction it would otherwise silently drop (so a new claim needs every verifier
//! upgraded before any signer emits it).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Action;

/// Longest token [`verify`] looks at, in bytes. A token [`sign`] makes is a few hundred.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The only accepted `alg` header value (RFC 8037 §3.1), compared case-sensitively.
pub const ALGORITHM: &str = "EdDSA";
/// The `typ` header value [`sign`] writes; [`verify`] accepts it in any case, or none.
pub const TOKEN_TYPE: &str = "JWT";
/// Length of a base64url (no padding) Ed25519 signature: 64 bytes → 86 characters.
const SIGNATURE_B64_CHARS: usize = 86;
/// Longest piece of untrusted header text quoted in an error (errors end up in logs).
const QUOTE_CHARS_MAX: usize = 32;

/// What a credential grants: `act` on table `tbl` to principal `sub`, from `iat` to
/// `exp` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Unique token id, the handle for revocation.
    pub jti: String,
    /// Principal ARN (`arn:<cluster>:principal/<name>`).
    pub sub: String,
    /// Table name.
    pub tbl: String,
    /// Granted actions.
    pub act: Vec<Action>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expires at, Unix seconds (the token is invalid from this second on).
    pub exp: u64,
}

impl Claims {
    /// Whether the token grants `action`.
    pub fn grants(&self, action: Action) -> bool {
        self.act.contains(&action)
    }

    /// Checks the validity window against `now_secs`, tolerating `skew_secs` of clock
    /// difference between the signer and this node: `exp > iat`, `exp > now - skew`,
    /// `iat <= now + skew`.
    pub fn check_lifetime(&self, now_secs: u64, skew_secs: u64) -> Result<(), TokenError> {
        if self.exp <= self.iat {
            return Err(TokenError::InvalidLifetime {
                iat: self.iat,
                exp: self.exp,
            });
        }
        if self.exp.saturating_add(skew_secs) <= now_secs {
            return Err(TokenError::Expired {
                exp: self.exp,
                now: now_secs,
            });
        }
        if self.iat > now_secs.saturating_add(skew_secs) {
            return Err(TokenError::NotYetValid {
                iat: self.iat,
                now: now_secs,
            });
        }
        Ok(())
    }
}

/// Why [`verify`] refused a token. Verification changes no state: every variant is a
/// plain refusal (401 at the API edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`]; nothing was decoded.
    #[error("the token is {len} bytes, at most {max}")]
    TooLarge {
        /// Length of the token.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three canonical base64url segments, or a segment does not decode to the
    /// expected JSON or signature; the text names the part.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header's `alg` is not `EdDSA` (for example `none` or `HS256`).
    #[error("unsupported algorithm {0:?}: only EdDSA is accepted")]
    UnsupportedAlgorithm(String),
    /// The header's `typ` is present and not `JWT`.
    #[error("unsupported token type {0:?}: only JWT is accepted")]
    UnsupportedType(String),
    /// The header has no `kid`.
    #[error("the token names no signing key (kid)")]
    MissingKeyId,
    /// The `kid` is not a trusted key (never known, or retired and dropped).
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The signature does not verify under the named key.
    #[error("bad signature")]
    BadSignature,
    /// Correctly signed, but `exp <= iat`.
    #[error("empty validity window: exp {exp} <= iat {iat}")]
    InvalidLifetime {
        /// Issued at.
        iat: u64,
        /// Expires at.
        exp: u64,
    },
    /// Correctly signed, but expired (beyond the allowed clock skew).
    #[error("the token expired at {exp} (now {now})")]
    Expired {
        /// Expires at.
        exp: u64,
        /// The verifier's time.
        now: u64,
    },
    /// Correctly signed, but issued in the future (beyond the allowed clock skew).
    #[error("the token is issued at {iat}, in the future (now {now})")]
    NotYetValid {
        /// Issued at.
        iat: u64,
        /// The verifier's time.
        now: u64,
    },
}

/// The header [`sign`] writes, in this field order.
#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// The header [`verify`] reads: nothing but these three parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Signs `claims` with `key`, naming it `kid` in the header.
///
/// Claims made by the issuer (ids, an ARN, a table name, at most three actions) give a
/// token far below [`MAX_TOKEN_BYTES`].
pub fn sign(claims: &Claims, kid: &str, key: &SigningKey) -> String {
    let header = HeaderOut {
        alg: ALGORITHM,
        typ: TOKEN_TYPE,
        kid,
    };
    let mut token = String::with_capacity(512);
    push_json_segment(&header, &mut token);
    token.push('.');
    push_json_segment(claims, &mut token);
    let signature = signature_over(token.as_bytes(), key);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    debug_assert!(
        token.len() <= MAX_TOKEN_BYTES,
        "signed an unverifiable token"
    );
    token
}

/// Verifies `token` and returns its claims.
///
/// `keys` maps a `kid` to a trusted public key; `now_secs` is the verifier's Unix time
/// and `skew_secs` the tolerated clock difference. Checks, in order: size, three
/// segments, header (`alg`, `typ`, `kid`), key known, signature (strict), claims,
/// validity window. Nothing is decoded from the claims before the signature verifies.
pub fn verify(
    token: &str,
    keys: &dyn Fn(&str) -> Option<VerifyingKey>,
    now_secs: u64,
    skew_secs: u64,
) -> Result<Claims, TokenError> {
    let parts = Parts::split(token)?;
    let kid = decode_header(parts.header)?;
    let key = keys(&kid).ok_or_else(|| TokenError::UnknownKey(quote(&kid)))?;
    check_signature(&parts, &key)?;
    let claims = decode_claims(parts.claims)?;
    claims.check_lifetime(now_secs, skew_secs)?;
    Ok(claims)
}

/// SHA-256 of the token text: the key of a verified-token cache. Two tokens with the
/// same hash are the same token (collision resistance), so a hit needs no signature
/// check; the claim and policy checks still run on every request.
pub fn token_id_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The JWK Set (RFC 7517) of trusted public keys, as RFC 8037 OKP keys:
/// `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":..,"x":..,"alg":"EdDSA","use":"sig"}]}`.
pub fn jwks(keys: &[(String, VerifyingKey)]) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(kid, key)| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
                "alg": ALGORITHM,
                "use": "sig",
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// The three segments of a token, still encoded.
struct Parts<'a> {
    /// `header "." claims`: the bytes the signature covers.
    signing_input: &'a str,
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let mut segments = token.split('.');
        let (Some(header), Some(claims), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed(
                "a token has three dot-separated segments",
            ));
        };
        Ok(Parts {
            signing_input: &token[..header.len() + 1 + claims.len()],
            header,
            claims,
            signature,
        })
    }
}

/// Decodes the header and returns its `kid` once `alg` and `typ` are acceptable.
fn decode_header(segment: &str) -> Result<String, TokenError> {
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("the header is not base64url"))?;
    let header: HeaderIn = json_object(&json).ok_or(TokenError::Malformed(
        "the header is not a JOSE header of alg, typ, kid",
    ))?;
    if header.alg != ALGORITHM {
        return Err(TokenError::UnsupportedAlgorithm(quote(&header.alg)));
    }
    if let Some(typ) = header.typ
        && !typ.eq_ignore_ascii_case(TOKEN_TYPE)
    {
        return Err(TokenError::UnsupportedType(quote(&typ)));
    }
    header.kid.ok_or(TokenError::MissingKeyId)
}

fn check_signature(parts: &Parts<'_>, key: &VerifyingKey) -> Result<(), TokenError> {
    if parts.signature.len() != SIGNATURE_B64_CHARS {
        return Err(TokenError::Malformed("the signature is not 64 bytes"));
    }
    let mut bytes = [0u8; 64];
    let written = URL_SAFE_NO_PAD
        .decode_slice(parts.signature, &mut bytes)
        .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    if written != bytes.len() {
        return Err(TokenError::Malformed("the signature is not 64 bytes"));
    }
    key.verify_strict(
        parts.signing_input.as_bytes(),
        &Signature::from_bytes(&bytes),
    )
    .map_err(|_| TokenError::BadSignature)
}

fn decode_claims(segment: &str) -> Result<Claims, TokenError> {
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed("the claims are not base64url"))?;
    json_object(&json).ok_or(TokenError::Malformed(
        "the claims are not exactly jti, sub, tbl, act, iat, exp",
    ))
}

/// A JSON *object* of the fields of `T` (serde would also take them as an array).
fn json_object<T: serde::de::DeserializeOwned>(json: &[u8]) -> Option<T> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Ed25519 signature of `input` (RFC 8032, deterministic).
fn signature_over(input: &[u8], key: &SigningKey) -> [u8; 64] {
    key.sign(input).to_bytes()
}

fn push_json_segment<T: Serialize>(value: &T, out: &mut String) {
    // Header and claims hold only strings, integers and unit enum variants, which
    // serde_json always serializes.
    let json = serde_json::to_vec(value).expect("header and claims always serialize");
    URL_SAFE_NO_PAD.encode_string(json, out);
}

/// Untrusted text for an error message: at most [`QUOTE_CHARS_MAX`] characters.
fn quote(text: &str) -> String {
    text.chars().take(QUOTE_CHARS_MAX).collect()
}

#[cfg(test)]
mod tests;
