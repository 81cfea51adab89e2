//! Who is calling: principals authenticate to the control plane with their secret in
//! an HTTP Basic `Authorization` header (user = the principal's ARN or bare name,
//! password = its secret); data requests carry a credential as a `Bearer` token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use shared::auth::{principal_arn, verify_secret};
use shared::state::MetaState;

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Principal ARN.
    pub arn: String,
    /// Whether it is a cluster admin.
    pub admin: bool,
    /// Whether it presented a credential (a client's routing read), not its secret.
    pub via_credential: bool,
}

/// What an `Authorization` header carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// `Basic`: a principal and its secret.
    Secret {
        /// ARN or bare name.
        principal: String,
        /// The secret.
        secret: String,
    },
    /// `Bearer`: a credential (token).
    Bearer(&'a str),
}

/// Why the caller is not authenticated (401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No `Authorization` header.
    #[error(
        "authentication required: send the principal's secret as HTTP Basic \
         (user = principal ARN or name, password = secret)"
    )]
    Missing,
    /// The header is not `Basic <base64 user:secret>` or `Bearer <token>`.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// The principal is unknown or the secret is wrong (not told apart on purpose).
    #[error("unknown principal or wrong secret")]
    BadSecret,
    /// A credential where a principal's secret is needed.
    #[error(
        "this endpoint needs a principal's secret (HTTP Basic); credentials (Bearer) \
         are for item requests"
    )]
    TokenNotAccepted,
    /// A principal's secret where a credential is needed.
    #[error(
        "item requests need a credential: Authorization: Bearer <token> from \
         POST /tables/{{name}}/credentials"
    )]
    SecretNotAccepted,
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Presented<'_>, AuthnError> {
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthnError::Malformed("expected `<scheme> <value>`"))?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(AuthnError::Malformed("empty bearer token"));
        }
        return Ok(Presented::Bearer(rest));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthnError::Malformed("the scheme must be Basic or Bearer"));
    }
    let decoded = STANDARD
        .decode(rest)
        .map_err(|_| AuthnError::Malformed("Basic credentials are not base64"))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| AuthnError::Malformed("Basic credentials are not UTF-8"))?;
    // ARNs contain colons, secrets never do: split at the last one.
    let (principal, secret) = text.rsplit_once(':').ok_or(AuthnError::Malformed(
        "Basic credentials are not `user:secret`",
    ))?;
    Ok(Presented::Secret {
        principal: principal.to_string(),
        secret: secret.to_string(),
    })
}

/// The ARN a Basic user name stands for: itself if it is an ARN, else the principal of
/// that name in this cluster.
pub fn principal_of(user: &str, state: &MetaState) -> String {
    if user.starts_with("arn:") {
        user.to_string()
    } else {
        principal_arn(state.cluster_id().unwrap_or_default(), user)
    }
}

/// Authenticates `user` with `secret` against the principals of `state`; `None` when
/// the principal is not (yet) known here, so the caller may catch up and try again.
pub fn authenticate(
    user: &str,
    secret: &str,
    state: &MetaState,
) -> Option<Result<Caller, AuthnError>> {
    let arn = principal_of(user, state);
    let principal = state.principal(&arn)?;
    Some(if verify_secret(secret, &principal.secret) {
        Ok(Caller {
            arn,
            admin: principal.admin,
            via_credential: false,
        })
    } else {
        Err(AuthnError::BadSecret)
    })
}

/// `Basic` header value for `user` and `secret` (what clients send).
pub fn basic_header(user: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_with_an_arn_and_bearer() {
        let header = basic_header("arn:c:principal/alice", "s3cret");
        assert_eq!(
            parse_authorization(&header),
            Ok(Presented::Secret {
                principal: "arn:c:principal/alice".into(),
                secret: "s3cret".into()
            })
        );
        assert_eq!(
            parse_authorization("bearer a.b.c"),
            Ok(Presented::Bearer("a.b.c"))
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            "Digest abc",
            "Bearer  ",
            &format!("Basic {}", STANDARD.encode("no-colon")),
        ] {
            assert!(
                matches!(parse_authorization(bad), Err(AuthnError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
