//! What a [`super::DataClient`] authenticates with: a principal's secret, from which it
//! obtains (and renews) a credential per table, or one credential given by the caller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::api_client::Authorization;

/// Share of a credential's lifetime after which the client asks for a new one.
const RENEW_AT_FRACTION: f64 = 0.8;

/// A credential in use for one table.
struct Held {
    header: String,
    renew_at: Instant,
}

/// The client's authentication and the credentials it obtained.
pub(super) struct Credentials {
    authorization: Authorization,
    /// Bearer header values by table (principal mode only).
    held: Mutex<HashMap<String, Held>>,
}

impl Credentials {
    pub(super) fn new(authorization: Authorization) -> Self {
        Credentials {
            authorization,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Header of the control-plane reads a refresh makes (a principal's secret, or the
    /// credential, which the routing reads of its table accept).
    pub(super) fn control_header(&self) -> String {
        self.authorization.header_value()
    }

    /// The principal credentials, when the client may obtain credentials itself.
    pub(super) fn principal(&self) -> Option<&crate::auth::admin::PrincipalCredentials> {
        match &self.authorization {
            Authorization::Principal(p) => Some(p),
            Authorization::Token(_) => None,
        }
    }

    /// The header of an item request on `table` if one is held and fresh.
    pub(super) fn item_header(&self, table: &str) -> Option<String> {
        if let Authorization::Token(token) = &self.authorization {
            return Some(format!("Bearer {token}"));
        }
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(table)
            .filter(|h| Instant::now() < h.renew_at)
            .map(|h| h.header.clone())
    }

    /// Keeps a credential for `table` expiring at `expires_at_unix`.
    pub(super) fn hold(&self, table: &str, token: &str, expires_at_unix: u64) {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let lifetime = expires_at_unix.saturating_sub(now_unix) as f64;
        let renew_at = Instant::now() + Duration::from_secs_f64(lifetime * RENEW_AT_FRACTION);
        let held = Held {
            header: format!("Bearer {token}"),
            renew_at,
        };
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_string(), held);
    }

    /// Drops the credential of `table` (refused: revoked, key rotated out...); whether
    /// a new one can be obtained.
    pub(super) fn forget(&self, table: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(table);
        self.principal().is_some()
    }
}
