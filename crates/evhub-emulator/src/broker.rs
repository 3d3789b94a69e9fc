//! State shared by all connections, and the per-connection authorization
//! record filled by `$cbs` put-token.

use crate::{
    clock::now_seconds,
    config::{Limits, SasKey},
    hub::HubRegistry,
    readers::ReaderRegistry,
    sas::{self, TokenError},
};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Everything a connection needs to serve requests.
#[derive(Debug)]
pub(crate) struct Broker {
    pub hubs: HubRegistry,
    pub readers: Arc<ReaderRegistry>,
    pub keys: Vec<SasKey>,
    pub no_auth: bool,
    pub max_message_size: u64,
    pub limits: Limits,
    /// One permit per open connection (`limits.max_connections`).
    pub connections: Arc<Semaphore>,
    pub shutdown: CancellationToken,
}

impl Broker {
    /// Verifies a SAS token and returns the resource path it grants.
    pub(crate) fn verify_token(&self, token: &str) -> Result<(String, i64), TokenError> {
        let verified = sas::verify(token, &self.keys, now_seconds())?;
        Ok((sas::resource_path(&verified.resource), verified.expires_at))
    }
}

/// One granted scope: a resource path prefix and its expiry (Unix seconds).
#[derive(Debug, Clone)]
struct Scope {
    path: String,
    expires_at: i64,
}

/// Scopes a connection has been granted through `$cbs`.
#[derive(Debug, Default)]
pub(crate) struct ConnectionAuth {
    scopes: Mutex<Vec<Scope>>,
}

/// Whether `scope` (a lower-case path) covers `entity` (a lower-case path).
pub(crate) fn covers(scope: &str, entity: &str) -> bool {
    scope.is_empty()
        || entity == scope
        || (entity.starts_with(scope) && entity.as_bytes().get(scope.len()) == Some(&b'/'))
}

impl ConnectionAuth {
    pub(crate) fn grant(&self, path: String, expires_at: i64) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        scopes.retain(|s| s.path != path);
        scopes.push(Scope { path, expires_at });
    }

    /// Whether any granted scope is still valid.
    pub(crate) fn any_valid(&self) -> bool {
        let now = now_seconds();
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| s.expires_at > now)
    }

    /// Whether a valid, unexpired scope covers `entity_path` (any case).
    pub(crate) fn allows(&self, entity_path: &str) -> bool {
        let entity = entity_path.trim_matches('/').to_ascii_lowercase();
        let now = now_seconds();
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| s.expires_at > now && covers(&s.path, &entity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_children_only() {
        assert!(covers("hub", "hub"));
        assert!(covers("hub", "hub/partitions/0"));
        assert!(!covers("hub", "hub2"));
        assert!(covers("", "anything"));
        let auth = ConnectionAuth::default();
        assert!(!auth.allows("hub"));
        auth.grant("hub".into(), now_seconds() + 60);
        assert!(auth.allows("Hub/ConsumerGroups/$Default/Partitions/0"));
        assert!(!auth.allows("other"));
        auth.grant("other".into(), now_seconds() - 1);
        assert!(!auth.allows("other"));
    }
}
