//! Azure AD tokens for SASL OAUTHBEARER through `azure_identity`.
//!
//! librdkafka asks for a token from its own threads (the producer's polling thread, or the task
//! that polls a consumer) and waits for the answer. The credential is async, so the request runs
//! on a short-lived thread with its own runtime: that works from any caller, inside or outside
//! tokio, and happens only when a token nears expiry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId,
};
use evhub_core::config::{AzureCredentialKind, EventHubsKafkaConfig};
use evhub_core::{Error, Result};
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

/// The credential named by `credential` in an `eventhubs-kafka` config.
pub fn credential_from_config(config: &EventHubsKafkaConfig) -> Result<Arc<dyn TokenCredential>> {
    let kind = config.credential.ok_or_else(|| {
        Error::config("eventhubs-kafka: `namespace` without `connection_string` needs `credential`")
    })?;
    let azure = |what: &str, e: azure_core::Error| {
        Error::config(format!(
            "eventhubs-kafka: cannot create {what} credential: {e}"
        ))
        .with_source(e)
    };
    Ok(match kind {
        AzureCredentialKind::ClientSecret => {
            let tenant = config.tenant_id.as_deref().ok_or_else(|| {
                Error::config("eventhubs-kafka: `credential = \"client-secret\"` needs `tenant_id`")
            })?;
            let client = config.client_id.clone().ok_or_else(|| {
                Error::config("eventhubs-kafka: `credential = \"client-secret\"` needs `client_id`")
            })?;
            let secret = config.client_secret.as_ref().ok_or_else(|| {
                Error::config(
                    "eventhubs-kafka: `credential = \"client-secret\"` needs `client_secret`",
                )
            })?;
            ClientSecretCredential::new(
                tenant,
                client,
                azure_core::credentials::Secret::new(secret.expose().to_owned()),
                None,
            )
            .map_err(|e| azure("client-secret", e))?
        }
        AzureCredentialKind::ManagedIdentity => {
            managed_identity(config.client_id.clone()).map_err(|e| azure("managed-identity", e))?
        }
        AzureCredentialKind::AzureCli => {
            AzureCliCredential::new(None).map_err(|e| azure("azure-cli", e))?
        }
        AzureCredentialKind::Default => {
            Arc::new(ChainCredential::from_environment(config.client_id.clone())?)
        }
    })
}

fn managed_identity(client_id: Option<String>) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        ..Default::default()
    };
    Ok(ManagedIdentityCredential::new(Some(options))?)
}

/// `default`: a service principal from `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`
/// when set, then managed identity, then the Azure CLI; the first that yields a token wins.
#[derive(Debug)]
struct ChainCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
}

impl ChainCredential {
    fn from_environment(client_id: Option<String>) -> Result<Self> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(tenant), Some(client), Some(secret)) = (
            env("AZURE_TENANT_ID"),
            env("AZURE_CLIENT_ID"),
            env("AZURE_CLIENT_SECRET"),
        ) {
            if let Ok(c) = ClientSecretCredential::new(
                &tenant,
                client,
                azure_core::credentials::Secret::new(secret),
                None,
            ) {
                sources.push(("environment", c));
            }
        }
        if let Ok(c) = managed_identity(client_id.or_else(|| env("AZURE_CLIENT_ID"))) {
            sources.push(("managed identity", c));
        }
        if let Ok(c) = AzureCliCredential::new(None) {
            sources.push(("azure cli", c));
        }
        if sources.is_empty() {
            return Err(Error::config(
                "eventhubs-kafka: no Azure credential could be created for `credential = \"default\"`",
            ));
        }
        Ok(Self { sources })
    }
}

#[async_trait]
impl TokenCredential for ChainCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut failures = Vec::new();
        for (name, source) in &self.sources {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => return Ok(token),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no credential in the chain produced a token ({})",
                failures.join("; ")
            ),
        ))
    }
}
