//! Secret generation and hashing round trips; principal names and ARNs.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

#[test]
fn secrets_are_43_base64url_chars_of_32_bytes_and_differ() {
    let mut rng = StdRng::seed_from_u64(7);
    let a = new_secret(&mut rng);
    let b = new_secret(&mut rng);
    assert_eq!(a.len(), 43);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), SECRET_BYTES);
    assert_ne!(a, b);
    // Same seed, same secret: the RNG is the only source of entropy.
    assert_eq!(new_secret(&mut StdRng::seed_from_u64(7)), a);
}

#[test]
fn secret_round_trip() {
    let mut rng = StdRng::seed_from_u64(1);
    let secret = new_secret(&mut rng);
    let stored = hash_secret(&secret, new_salt(&mut rng));
    assert!(verify_secret(&secret, &stored));
    assert!(!verify_secret(&new_secret(&mut rng), &stored));
    assert!(!verify_secret("", &stored));
    let mut near = secret.clone().into_bytes();
    near[0] ^= 1;
    assert!(!verify_secret(&String::from_utf8(near).unwrap(), &stored));
    assert!(!verify_secret(&"a".repeat(MAX_SECRET_BYTES + 1), &stored));
}

#[test]
fn salt_changes_the_hash() {
    let a = hash_secret("s", [1; SALT_BYTES]);
    let b = hash_secret("s", [2; SALT_BYTES]);
    assert_ne!(a.hash, b.hash);
    assert_ne!(a, b);
    assert_eq!(a, hash_secret("s", [1; SALT_BYTES]));
}

#[test]
fn hash_is_sha256_of_salt_then_secret() {
    let salt = [9u8; SALT_BYTES];
    let mut input = salt.to_vec();
    input.extend_from_slice(b"secret");
    let expected: [u8; 32] = Sha256::digest(&input).into();
    assert_eq!(hash_secret("secret", salt).hash, expected);
}

#[test]
fn secret_hash_serde_round_trip() {
    let stored = hash_secret("s", [3; SALT_BYTES]);
    let bytes = postcard::to_allocvec(&stored).unwrap();
    assert_eq!(postcard::from_bytes::<SecretHash>(&bytes).unwrap(), stored);
    let json = serde_json::to_string(&stored).unwrap();
    assert_eq!(serde_json::from_str::<SecretHash>(&json).unwrap(), stored);
}

#[test]
fn principal_names() {
    for ok in [
        "a",
        "alice",
        "svc.orders-1_x",
        &"z".repeat(MAX_PRINCIPAL_NAME_CHARS),
    ] {
        assert_eq!(validate_principal_name(ok), Ok(()), "{ok}");
    }
    assert_eq!(validate_principal_name(""), Err(PrincipalNameError::Empty));
    assert_eq!(
        validate_principal_name(&"z".repeat(MAX_PRINCIPAL_NAME_CHARS + 1)),
        Err(PrincipalNameError::TooLong {
            len: MAX_PRINCIPAL_NAME_CHARS + 1,
            max: MAX_PRINCIPAL_NAME_CHARS
        })
    );
    for (bad, c) in [
        ("a/b", '/'),
        ("a b", ' '),
        ("a:b", ':'),
        ("é", 'é'),
        ("a*", '*'),
    ] {
        assert_eq!(
            validate_principal_name(bad),
            Err(PrincipalNameError::BadChar(c))
        );
    }
}

#[test]
fn principal_arns_round_trip() {
    let arn = principal_arn("c1", "alice");
    assert_eq!(arn, "arn:c1:principal/alice");
    assert_eq!(parse_principal_arn(&arn), Some(("c1", "alice")));
    assert_eq!(
        parse_principal_arn("arn:a:b:principal/x"),
        Some(("a:b", "x"))
    );
    for bad in [
        "",
        "alice",
        "arn::principal/alice",
        "arn:c1:principal/",
        "arn:c1:principal/a/b",
        "arn:c1:table/alice",
        "xarn:c1:principal/alice",
    ] {
        assert_eq!(parse_principal_arn(bad), None, "{bad}");
    }
}
