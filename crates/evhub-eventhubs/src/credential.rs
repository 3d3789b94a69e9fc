//! Azure AD (Entra ID) credentials from configuration, through `azure_identity`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use azure_core::credentials::{
    AccessToken, Secret as AzureSecret, TokenCredential, TokenRequestOptions,
};
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
};
use evhub_core::config::{AzureCredentialKind, EventHubsConfig};
use evhub_core::{Error, Result};

use crate::error::from_core;

/// Builds the credential `config.credential` names.
pub(crate) fn from_config(config: &EventHubsConfig) -> Result<Arc<dyn TokenCredential>> {
    let kind = config.credential.unwrap_or(AzureCredentialKind::Default);
    let credential: Arc<dyn TokenCredential> = match kind {
        AzureCredentialKind::ClientSecret => {
            let tenant = config
                .tenant_id
                .as_deref()
                .ok_or_else(|| Error::config("credential `client-secret` needs `tenant_id`"))?;
            let client = config
                .client_id
                .clone()
                .ok_or_else(|| Error::config("credential `client-secret` needs `client_id`"))?;
            let secret = config
                .client_secret
                .as_ref()
                .ok_or_else(|| Error::config("credential `client-secret` needs `client_secret`"))?;
            ClientSecretCredential::new(
                tenant,
                client,
                AzureSecret::new(secret.expose().to_owned()),
                None,
            )
            .map_err(|e| config_error("client-secret", e))?
        }
        AzureCredentialKind::ManagedIdentity => managed_identity(config.client_id.clone())?,
        AzureCredentialKind::AzureCli => {
            DeveloperToolsCredential::new(None).map_err(|e| config_error("azure-cli", e))?
        }
        AzureCredentialKind::Default => Arc::new(ChainedCredential::default_chain(config)?),
    };
    Ok(credential)
}

fn managed_identity(client_id: Option<String>) -> Result<Arc<dyn TokenCredential>> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        ..Default::default()
    };
    Ok(ManagedIdentityCredential::new(Some(options))
        .map_err(|e| config_error("managed-identity", e))?)
}

fn config_error(kind: &str, e: azure_core::Error) -> Error {
    let mapped = from_core(&format!("credential `{kind}`"), e);
    Error::config(mapped.message().to_owned()).with_source(mapped)
}

/// `DefaultAzureCredential`-style chain: environment service principal, workload identity,
/// managed identity, then developer tools (Azure CLI, azd). The first source that returns a
/// token is used from then on.
#[derive(Debug)]
pub(crate) struct ChainedCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: AtomicUsize,
}

impl ChainedCredential {
    fn default_chain(config: &EventHubsConfig) -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        if let (Some(tenant), Some(client), Some(secret)) = (
            env("AZURE_TENANT_ID"),
            env("AZURE_CLIENT_ID"),
            env("AZURE_CLIENT_SECRET"),
        ) {
            let credential =
                ClientSecretCredential::new(&tenant, client, AzureSecret::new(secret), None)
                    .map_err(|e| config_error("default (environment)", e))?;
            sources.push(("environment", credential));
        }
        if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            if let Ok(credential) = WorkloadIdentityCredential::new(None) {
                sources.push(("workload identity", credential));
            }
        }
        if let Ok(credential) = managed_identity(config.client_id.clone()) {
            sources.push(("managed identity", credential));
        }
        if let Ok(credential) = DeveloperToolsCredential::new(None) {
            sources.push(("developer tools", credential));
        }
        Ok(Self {
            sources,
            chosen: AtomicUsize::new(usize::MAX),
        })
    }
}

#[async_trait::async_trait]
impl TokenCredential for ChainedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.load(Ordering::Acquire);
        if let Some((_, source)) = self.sources.get(chosen) {
            return source.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    self.chosen.store(index, Ordering::Release);
                    return Ok(token);
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no credential in the default chain returned a token ({})",
                failures.join("; ")
            ),
        ))
    }
}
