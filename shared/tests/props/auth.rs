//! The token parser never panics and accepts nothing but untouched tokens signed by a
//! trusted key: arbitrary bytes, token-shaped text, and valid tokens with one byte
//! flipped, inserted or removed are all refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use proptest::prelude::*;
use shared::auth::token::MAX_TOKEN_BYTES;
use shared::auth::{Action, Claims, sign, verify};

const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 30;

fn trusted(kid: &str) -> Option<VerifyingKey> {
    (kid == "k1").then(|| SigningKey::from_bytes(&[1; 32]).verifying_key())
}

fn check(token: &str) -> bool {
    verify(token, &trusted, NOW, SKEW).is_ok()
}

fn action() -> impl Strategy<Value = Action> {
    prop::sample::select(Action::ALL.to_vec())
}

/// Claims valid at `NOW`, with arbitrary text in the string fields.
fn claims() -> impl Strategy<Value = Claims> {
    (
        ".{0,40}",
        ".{0,80}",
        ".{0,40}",
        prop::collection::vec(action(), 0..4),
        0..NOW,
        1..1_000_000u64,
    )
        .prop_map(|(jti, sub, tbl, act, iat, ttl)| Claims {
            jti,
            sub,
            tbl,
            act,
            iat,
            exp: NOW + ttl,
        })
}

/// Token-shaped text: segments of base64url characters (and a few others) joined by
/// dots, so parsing gets past the segment split more often than random bytes do.
fn token_shaped() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_=+/-]{0,120}", 0..5).prop_map(|s| s.join("."))
}

/// A header segment that decodes to JSON naming EdDSA and the trusted key, followed by
/// arbitrary claims and signature segments: only the signature can refuse it.
fn trusted_header_shaped() -> impl Strategy<Value = String> {
    ("[A-Za-z0-9_-]{0,200}", "[A-Za-z0-9_-]{0,100}").prop_map(|(claims, sig)| {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
        format!("{header}.{claims}.{sig}")
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(token: &str, m: &Mutation) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let len = bytes.len();
    match *m {
        Mutation::Flip { at, mask } => bytes[at % len] ^= mask,
        Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
        Mutation::Remove { at } => {
            bytes.remove(at % len);
        }
        Mutation::Truncate { at } => bytes.truncate(at % len),
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(!check(&String::from_utf8_lossy(&bytes)));
    }

    #[test]
    fn arbitrary_text_is_refused(text in ".{0,300}") {
        prop_assert!(!check(&text));
    }

    #[test]
    fn token_shaped_text_is_refused(text in token_shaped()) {
        prop_assert!(!check(&text));
    }

    #[test]
    fn unsigned_text_under_a_trusted_header_is_refused(text in trusted_header_shaped()) {
        prop_assert!(!check(&text));
    }

    #[test]
    fn signed_tokens_round_trip(c in claims()) {
        let token = sign(&c, "k1", &SigningKey::from_bytes(&[1; 32]));
        prop_assert!(token.len() <= MAX_TOKEN_BYTES);
        prop_assert_eq!(verify(&token, &trusted, NOW, SKEW), Ok(c));
    }

    #[test]
    fn mutated_tokens_are_refused(c in claims(), m in mutation()) {
        let token = sign(&c, "k1", &SigningKey::from_bytes(&[1; 32]));
        let mutated = mutate(&token, &m);
        prop_assume!(mutated != token);
        prop_assert!(!check(&mutated), "{m:?} accepted: {mutated}");
    }

    #[test]
    fn tokens_of_untrusted_keys_are_refused(c in claims(), seed in 2..=255u8) {
        let signer = SigningKey::from_bytes(&[seed; 32]);
        prop_assert!(!check(&sign(&c, "k1", &signer)));
        prop_assert!(!check(&sign(&c, "k2", &signer)));
    }
}
