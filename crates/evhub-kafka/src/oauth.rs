//! Azure AD tokens for SASL OAUTHBEARER through `azure_identity`.
//!
//! librdkafka asks for a token from its own threads (the producer's polling thread, or the task
//! that polls a consumer) and waits for the answer. The credential is async, so the request runs
//! on a short-lived thread with its own runtime: that works from any caller, inside or outside
//! tokio, and happens only when a token nears expiry.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential};
use evhub_core::config::EventHubsKafkaConfig;
use evhub_core::Result;
use rdkafka::client::OAuthToken;

/// How long one token request may take before librdkafka is told it failed (it retries).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches OAUTHBEARER tokens for one scope from an Azure credential.
#[derive(Debug)]
pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    scope: String,
}

impl TokenSource {
    /// Tokens for `scope` (for Event Hubs `https://<namespace>/.default`).
    pub fn new(credential: Arc<dyn TokenCredential>, scope: String) -> Self {
        Self { credential, scope }
    }

    /// The scope tokens are requested for.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Blocks the calling thread until a token arrived (bounded by a timeout).
    pub fn fetch_blocking(&self) -> std::result::Result<OAuthToken, Box<dyn std::error::Error>> {
        let credential = self.credential.clone();
        let scope = self.scope.clone();
        let handle = std::thread::Builder::new()
            .name("evhub-oauth".into())
            .spawn(move || -> std::result::Result<AccessToken, String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("token runtime: {e}"))?;
                rt.block_on(async {
                    tokio::time::timeout(TOKEN_TIMEOUT, credential.get_token(&[&scope], None))
                        .await
                        .map_err(|_| format!("no token within {TOKEN_TIMEOUT:?}"))?
                        .map_err(|e| format!("token request failed: {e}"))
                })
            })?;
        let token = handle
            .join()
            .map_err(|_| "token thread panicked".to_string())??;
        let lifetime_ms = i64::try_from(token.expires_on.unix_timestamp_nanos() / 1_000_000)?;
        tracing::debug!(scope = %self.scope, "obtained OAUTHBEARER token");
        Ok(OAuthToken {
            token: token.token.secret().to_owned(),
            principal_name: "evhub".to_owned(),
            lifetime_ms,
        })
    }
}

/// The credential named by `credential` in an `eventhubs-kafka` config: the chain shared with
/// the `eventhubs` backend (`evhub_azure`), so every setting means the same on both.
pub fn credential_from_config(config: &EventHubsKafkaConfig) -> Result<Arc<dyn TokenCredential>> {
    evhub_azure::credential(&config.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use evhub_core::config::{AzureCredentialKind, EventHubsConfig, Secret};

    /// Both Event Hubs backends build credentials with `evhub_azure`: the same settings give
    /// the same answers, errors included.
    #[test]
    fn same_settings_same_answers_as_the_amqp_backend() {
        let cs =
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a2V5";
        let mut kafka = EventHubsKafkaConfig::from_connection_string(
            cs.parse().unwrap_or_else(|e| panic!("{e}")),
        );
        let mut amqp =
            EventHubsConfig::from_connection_string(cs.parse().unwrap_or_else(|e| panic!("{e}")));
        for kind in [
            None,
            Some(AzureCredentialKind::Default),
            Some(AzureCredentialKind::ManagedIdentity),
            Some(AzureCredentialKind::AzureCli),
        ] {
            kafka.credential = kind;
            amqp.credential = kind;
            assert!(credential_from_config(&kafka).is_ok(), "{kind:?}");
            assert!(evhub_azure::credential(&(&amqp).into()).is_ok(), "{kind:?}");
        }
        kafka.credential = Some(AzureCredentialKind::ClientSecret);
        amqp.credential = Some(AzureCredentialKind::ClientSecret);
        kafka.tenant_id = Some("00000000-0000-0000-0000-000000000000".into());
        amqp.tenant_id = kafka.tenant_id.clone();
        kafka.client_secret = Some(Secret::new("shh-secret"));
        amqp.client_secret = Some(Secret::new("shh-secret"));
        let a = credential_from_config(&kafka).err().map(|e| e.to_string());
        let b = evhub_azure::credential(&(&amqp).into())
            .err()
            .map(|e| e.to_string());
        assert_eq!(a, b);
        assert!(
            a.as_deref()
                .is_some_and(|t| t.contains("needs `client_id`")),
            "{a:?}"
        );
        assert!(!a.unwrap_or_default().contains("shh-secret"));
    }
}
