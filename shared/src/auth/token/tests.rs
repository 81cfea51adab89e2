//! One test per refusal reason, the RFC 8037 vector, and the JWKS shape.

use super::*;

const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 30;

/// RFC 8037 Appendix A.1 private key `d`.
const RFC_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
/// RFC 8037 Appendix A.1 public key `x`.
const RFC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
/// RFC 8037 Appendix A.4 JWS.
const RFC_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// Trusts `k1` (key 1) and `k2` (key 2).
fn keys(kid: &str) -> Option<VerifyingKey> {
    match kid {
        "k1" => Some(key(1).verifying_key()),
        "k2" => Some(key(2).verifying_key()),
        _ => None,
    }
}

fn claims() -> Claims {
    Claims {
        jti: "t-0001".into(),
        sub: "arn:c1:principal/alice".into(),
        tbl: "orders".into(),
        act: vec![Action::Read, Action::Write],
        iat: NOW - 10,
        exp: NOW + 3600,
    }
}

fn check(token: &str) -> Result<Claims, TokenError> {
    verify(token, &keys, NOW, SKEW)
}

/// A token of arbitrary header and claims JSON, correctly signed by `signer`.
fn forge(header: &str, claims: &str, signer: &SigningKey) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let signature = signature_over(input.as_bytes(), signer);
    format!("{input}.{}", b64(signature))
}

fn segments(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}

const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#;

fn claims_json() -> String {
    serde_json::to_string(&claims()).unwrap()
}

#[test]
fn rfc8037_vector_signature_is_reproduced_and_verifies() {
    let d: [u8; 32] = URL_SAFE_NO_PAD.decode(RFC_D).unwrap().try_into().unwrap();
    let x: [u8; 32] = URL_SAFE_NO_PAD.decode(RFC_X).unwrap().try_into().unwrap();
    let signing = SigningKey::from_bytes(&d);
    assert_eq!(
        signing.verifying_key().to_bytes(),
        x,
        "A.1/A.2: x derives from d"
    );

    let (input, expected) = RFC_JWS.rsplit_once('.').unwrap();
    assert_eq!(b64(signature_over(input.as_bytes(), &signing)), expected);

    let parts = Parts::split(RFC_JWS).unwrap();
    let public = VerifyingKey::from_bytes(&x).unwrap();
    assert_eq!(check_signature(&parts, &public), Ok(()));
    assert_eq!(
        check_signature(&parts, &key(1).verifying_key()),
        Err(TokenError::BadSignature)
    );
    // The vector's header has no kid (and its payload is not claims): not a credential.
    assert_eq!(
        verify(RFC_JWS, &|_| Some(public), NOW, SKEW),
        Err(TokenError::MissingKeyId)
    );
}

#[test]
fn round_trip() {
    let token = sign(&claims(), "k1", &key(1));
    assert_eq!(check(&token), Ok(claims()));
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&segments(&token)[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"})
    );
    let claims_json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&segments(&token)[1]).unwrap()).unwrap();
    assert_eq!(claims_json["act"], serde_json::json!(["read", "write"]));
    assert!(token.len() < 512, "{} bytes", token.len());
}

#[test]
fn signing_is_deterministic() {
    assert_eq!(
        sign(&claims(), "k1", &key(1)),
        sign(&claims(), "k1", &key(1))
    );
}

#[test]
fn tampered_claims_are_refused() {
    let token = sign(&claims(), "k1", &key(1));
    let mut s = segments(&token);
    let mut grown = claims();
    grown.act.push(Action::Admin);
    s[1] = b64(serde_json::to_vec(&grown).unwrap());
    assert_eq!(check(&s.join(".")), Err(TokenError::BadSignature));
}

#[test]
fn tampered_header_is_refused() {
    let token = sign(&claims(), "k1", &key(1));
    let mut s = segments(&token);
    s[0] = b64(r#"{"alg":"EdDSA","kid":"k1"}"#);
    assert_eq!(check(&s.join(".")), Err(TokenError::BadSignature));
    // Pointing the header at another trusted key does not help either.
    s[0] = b64(r#"{"alg":"EdDSA","typ":"JWT","kid":"k2"}"#);
    assert_eq!(check(&s.join(".")), Err(TokenError::BadSignature));
}

#[test]
fn bad_signature_is_refused() {
    let token = sign(&claims(), "k1", &key(1));
    let mut s = segments(&token);
    let mut sig = URL_SAFE_NO_PAD.decode(&s[2]).unwrap();
    sig[10] ^= 1;
    s[2] = b64(&sig);
    assert_eq!(check(&s.join(".")), Err(TokenError::BadSignature));
    // Signed by a key other than the one the kid names.
    let other = sign(&claims(), "k1", &key(2));
    assert_eq!(check(&other), Err(TokenError::BadSignature));
    // An all-zero signature.
    s[2] = b64([0u8; 64]);
    assert_eq!(check(&s.join(".")), Err(TokenError::BadSignature));
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let token = sign(&claims(), "k9", &key(1));
    assert_eq!(check(&token), Err(TokenError::UnknownKey("k9".into())));
    let no_kid = forge(r#"{"alg":"EdDSA","typ":"JWT"}"#, &claims_json(), &key(1));
    assert_eq!(check(&no_kid), Err(TokenError::MissingKeyId));
}

#[test]
fn expiry_honours_skew() {
    let mut c = claims();
    c.iat = NOW - 3600;
    c.exp = NOW - SKEW;
    let token = sign(&c, "k1", &key(1));
    assert_eq!(
        check(&token),
        Err(TokenError::Expired {
            exp: NOW - SKEW,
            now: NOW
        })
    );
    c.exp = NOW - SKEW + 1;
    assert!(check(&sign(&c, "k1", &key(1))).is_ok());
}

#[test]
fn not_yet_valid_honours_skew() {
    let mut c = claims();
    c.iat = NOW + SKEW + 1;
    let token = sign(&c, "k1", &key(1));
    assert_eq!(
        check(&token),
        Err(TokenError::NotYetValid {
            iat: NOW + SKEW + 1,
            now: NOW
        })
    );
    c.iat = NOW + SKEW;
    assert!(check(&sign(&c, "k1", &key(1))).is_ok());
}

#[test]
fn empty_lifetime_is_refused() {
    let mut c = claims();
    c.exp = c.iat;
    assert_eq!(
        check(&sign(&c, "k1", &key(1))),
        Err(TokenError::InvalidLifetime {
            iat: c.iat,
            exp: c.iat
        })
    );
}

#[test]
fn time_checks_do_not_overflow() {
    let mut c = claims();
    c.exp = u64::MAX;
    assert!(c.check_lifetime(u64::MAX - 1, u64::MAX).is_ok());
    assert!(c.check_lifetime(NOW, 0).is_ok());
    c.iat = 0;
    c.exp = 1;
    assert!(matches!(
        c.check_lifetime(u64::MAX, 0),
        Err(TokenError::Expired { .. })
    ));
}

#[test]
fn alg_none_and_hmac_are_refused() {
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(claims_json())
    );
    assert_eq!(
        check(&none),
        Err(TokenError::UnsupportedAlgorithm("none".into()))
    );
    // HS256 "signed" with the public key bytes as the HMAC secret (key confusion).
    let hs = forge(
        r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#,
        &claims_json(),
        &key(1),
    );
    assert_eq!(
        check(&hs),
        Err(TokenError::UnsupportedAlgorithm("HS256".into()))
    );
    let lower = forge(
        r#"{"alg":"eddsa","typ":"JWT","kid":"k1"}"#,
        &claims_json(),
        &key(1),
    );
    assert_eq!(
        check(&lower),
        Err(TokenError::UnsupportedAlgorithm("eddsa".into()))
    );
    let missing = forge(r#"{"typ":"JWT","kid":"k1"}"#, &claims_json(), &key(1));
    assert!(matches!(check(&missing), Err(TokenError::Malformed(_))));
}

#[test]
fn other_types_are_refused_and_typ_is_optional() {
    let jose = forge(
        r#"{"alg":"EdDSA","typ":"JOSE","kid":"k1"}"#,
        &claims_json(),
        &key(1),
    );
    assert_eq!(
        check(&jose),
        Err(TokenError::UnsupportedType("JOSE".into()))
    );
    let untyped = forge(r#"{"alg":"EdDSA","kid":"k1"}"#, &claims_json(), &key(1));
    assert_eq!(check(&untyped), Ok(claims()));
    let lower = forge(
        r#"{"alg":"EdDSA","typ":"jwt","kid":"k1"}"#,
        &claims_json(),
        &key(1),
    );
    assert_eq!(check(&lower), Ok(claims()));
}

#[test]
fn unknown_header_parameters_are_refused() {
    for header in [
        r#"{"alg":"EdDSA","typ":"JWT","kid":"k1","crit":["exp"]}"#,
        r#"{"alg":"EdDSA","typ":"JWT","kid":"k1","jku":"http://evil"}"#,
        r#"{"alg":"EdDSA","typ":"JWT","kid":"k1","kid":"k2"}"#,
        r#"["EdDSA", null, "k1"]"#,
        r#" ["EdDSA", null, "k1"]"#,
        "not json",
    ] {
        let token = forge(header, &claims_json(), &key(1));
        assert!(
            matches!(check(&token), Err(TokenError::Malformed(_))),
            "{header}"
        );
    }
}

#[test]
fn signed_but_unexpected_claims_are_refused() {
    let unknown = claims_json().replace(r#""jti""#, r#""aud":"x","jti""#);
    let duplicate = claims_json().replace(r#""tbl":"orders""#, r#""tbl":"orders","tbl":"other""#);
    let bad_action = claims_json().replace(r#""read""#, r#""Read""#);
    let as_array = r#"["t-1","arn:c1:principal/alice","orders",["read"],1,2]"#.to_string();
    for json in [
        unknown,
        duplicate,
        bad_action,
        as_array,
        "{}".to_string(),
        "[]".to_string(),
    ] {
        let token = forge(HEADER, &json, &key(1));
        assert!(
            matches!(check(&token), Err(TokenError::Malformed(_))),
            "{json}"
        );
    }
}

#[test]
fn wrong_segment_count_is_refused() {
    let token = sign(&claims(), "k1", &key(1));
    let s = segments(&token);
    for bad in [
        String::new(),
        s[0].clone(),
        format!("{}.{}", s[0], s[1]),
        format!("{token}."),
        format!("{token}.{}", s[2]),
        format!(".{token}"),
    ] {
        assert!(
            matches!(check(&bad), Err(TokenError::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn oversized_token_is_refused_before_decoding() {
    let big = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        check(&big),
        Err(TokenError::TooLarge {
            len: MAX_TOKEN_BYTES + 1,
            max: MAX_TOKEN_BYTES
        })
    );
    let mut c = claims();
    c.jti = "x".repeat(MAX_TOKEN_BYTES);
    assert!(matches!(
        verify(
            &forge(HEADER, &serde_json::to_string(&c).unwrap(), &key(1)),
            &keys,
            NOW,
            SKEW
        ),
        Err(TokenError::TooLarge { .. })
    ));
}

#[test]
fn non_base64url_is_refused() {
    let token = sign(&claims(), "k1", &key(1));
    let s = segments(&token);
    let padded_sig = format!("{}.{}.{}==", s[0], s[1], s[2]);
    let std_alphabet = format!(
        "{}.{}.{}",
        s[0],
        s[1],
        s[2].replace('-', "+").replace('_', "/")
    );
    let bad_header = format!("{}*.{}.{}", s[0], s[1], s[2]);
    // Claims are decoded only once the signature verifies.
    let bad_claims = format!("{}.{}!.{}", s[0], s[1], s[2]);
    assert_eq!(check(&bad_claims), Err(TokenError::BadSignature));
    let short_sig = format!("{}.{}.{}", s[0], s[1], &s[2][..85]);
    for bad in [padded_sig, bad_header, short_sig] {
        assert!(
            matches!(check(&bad), Err(TokenError::Malformed(_))),
            "{bad}"
        );
    }
    if std_alphabet != token {
        assert!(matches!(
            check(&std_alphabet),
            Err(TokenError::Malformed(_))
        ));
    }
    // Claims that are not base64url, correctly signed as text.
    let input = format!("{}.{}", s[0], "e30=");
    let sig = b64(signature_over(input.as_bytes(), &key(1)));
    assert!(matches!(
        check(&format!("{input}.{sig}")),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn non_canonical_signature_encoding_is_refused() {
    let token = sign(&claims(), "k1", &key(1));
    let (input, sig) = token.rsplit_once('.').unwrap();
    // The last character of an 86-char segment carries 2 data bits and 4 zero bits:
    // setting a zero bit keeps the decoded bytes of a lenient decoder unchanged.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = sig.as_bytes()[85];
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let twin = ALPHABET[index ^ 1] as char;
    let mutated = format!("{input}.{}{twin}", &sig[..85]);
    assert!(matches!(check(&mutated), Err(TokenError::Malformed(_))));
}

#[test]
fn errors_quote_at_most_a_few_characters() {
    let long = "k".repeat(1000);
    let token = sign(&claims(), &long, &key(1));
    let Err(TokenError::UnknownKey(quoted)) = check(&token) else {
        panic!("expected UnknownKey");
    };
    assert_eq!(quoted.len(), QUOTE_CHARS_MAX);
}

#[test]
fn token_id_hash_is_sha256() {
    let hash = token_id_hash("abc");
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_ne!(token_id_hash("abd"), hash);
}

#[test]
fn jwks_lists_okp_keys() {
    let set = jwks(&[
        ("k1".into(), key(1).verifying_key()),
        ("k2".into(), key(2).verifying_key()),
    ]);
    let list = set["keys"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let k1 = &list[0];
    assert_eq!(k1["kty"], "OKP");
    assert_eq!(k1["crv"], "Ed25519");
    assert_eq!(k1["kid"], "k1");
    assert_eq!(k1["alg"], "EdDSA");
    assert_eq!(k1["use"], "sig");
    let x = URL_SAFE_NO_PAD.decode(k1["x"].as_str().unwrap()).unwrap();
    assert_eq!(x, key(1).verifying_key().to_bytes());
    assert_eq!(jwks(&[])["keys"].as_array().map(Vec::len), Some(0));
}

#[test]
fn rfc_public_key_as_jwk_matches_the_rfc() {
    let x: [u8; 32] = URL_SAFE_NO_PAD.decode(RFC_X).unwrap().try_into().unwrap();
    let set = jwks(&[("rfc".into(), VerifyingKey::from_bytes(&x).unwrap())]);
    assert_eq!(set["keys"][0]["x"], RFC_X);
}

mod fuzz {
    //! The parser against arbitrary input: it never panics and never accepts anything
    //! but an unmodified token made by `sign`.

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_are_never_accepted(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(check(&text).is_err());
        }

        #[test]
        fn arbitrary_three_segment_texts_are_never_accepted(
            header in "[A-Za-z0-9_-]{0,80}",
            claims in "[A-Za-z0-9_-]{0,200}",
            signature in "[A-Za-z0-9_-]{0,90}",
        ) {
            let token = format!("{header}.{claims}.{signature}");
            prop_assert!(check(&token).is_err());
        }

    }

    proptest! {
        // Each case signs and verifies, slow in debug builds: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_change_to_a_valid_token_is_refused(
            position in any::<prop::sample::Index>(),
            replacement in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let token = sign(&claims(), "k1", &key(1));
            prop_assert!(check(&token).is_ok());
            let mut bytes = token.clone().into_bytes();
            let at = position.index(bytes.len());
            if cut {
                bytes.remove(at);
            } else {
                bytes[at] = replacement;
            }
            let changed = String::from_utf8_lossy(&bytes).into_owned();
            prop_assume!(changed != token);
            prop_assert!(check(&changed).is_err(), "accepted {}", changed);
        }
    }
}
