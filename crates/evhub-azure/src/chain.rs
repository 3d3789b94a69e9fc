//! The `default` credential chain.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use evhub_core::{Error, Result};

use crate::CredentialEnvironment;
use crate::{azure_cli, build_error, client_secret, managed_identity, workload_identity};

/// Tries its sources in order; the first that returns a token is used from then on (a later
/// failure of that source is reported as it is, without falling back, so a token never silently
/// switches identity).
#[derive(Debug)]
pub struct ChainedCredential {
    sources: Vec<(&'static str, Arc<dyn TokenCredential>)>,
    chosen: AtomicUsize,
}

impl ChainedCredential {
    /// The sources available in `env`, in chain order; fails with a configuration error when
    /// none can be built.
    pub(crate) fn default_chain(
        client_id: Option<String>,
        env: &CredentialEnvironment,
    ) -> Result<Self> {
        let mut sources: Vec<(&'static str, Arc<dyn TokenCredential>)> = Vec::new();
        let mut skipped = Vec::new();
        let tenant = env.get("AZURE_TENANT_ID");
        let env_client = env.get("AZURE_CLIENT_ID");
        if let (Some(tenant), Some(client), Some(secret)) =
            (&tenant, &env_client, env.get("AZURE_CLIENT_SECRET"))
        {
            // Set but unusable (e.g. a malformed tenant) is a configuration error, not a source
            // to skip: the operator clearly meant it.
            let credential = client_secret(tenant, client.clone(), &secret, env)
                .map_err(|e| build_error("default (environment)", e))?;
            sources.push(("environment", credential));
        }
        if let Some(token_file) = env.get("AZURE_FEDERATED_TOKEN_FILE") {
            match (&tenant, &env_client) {
                (Some(tenant), Some(client)) => {
                    let credential =
                        workload_identity(tenant.clone(), client.clone(), token_file, env)
                            .map_err(|e| build_error("default (workload identity)", e))?;
                    sources.push(("workload identity", credential));
                }
                _ => skipped.push(
                    "workload identity: AZURE_FEDERATED_TOKEN_FILE without AZURE_TENANT_ID and \
                     AZURE_CLIENT_ID"
                        .to_owned(),
                ),
            }
        }
        match managed_identity(client_id.or(env_client), env) {
            Ok(credential) => sources.push(("managed identity", credential)),
            Err(e) => skipped.push(format!("managed identity: {e}")),
        }
        match azure_cli(env) {
            Ok(credential) => sources.push(("azure cli", credential)),
            Err(e) => skipped.push(format!("azure cli: {e}")),
        }
        Self::new(sources)
            .map_err(|e| Error::config(format!("{} ({})", e.message(), skipped.join("; "))))
    }

    /// A chain of `sources` (name, credential), tried in order. Fails with a configuration
    /// error when `sources` is empty.
    pub fn new(sources: Vec<(&'static str, Arc<dyn TokenCredential>)>) -> Result<Self> {
        if sources.is_empty() {
            return Err(Error::config(
                "Azure credential `default`: no credential source is available",
            ));
        }
        Ok(Self {
            sources,
            chosen: AtomicUsize::new(usize::MAX),
        })
    }

    /// Names of the sources, in the order they are tried.
    pub fn source_names(&self) -> Vec<&'static str> {
        self.sources.iter().map(|(name, _)| *name).collect()
    }

    /// The source that returned the first token, once one did.
    pub fn chosen(&self) -> Option<&'static str> {
        self.sources
            .get(self.chosen.load(Ordering::Acquire))
            .map(|(name, _)| *name)
    }
}

#[async_trait::async_trait]
impl TokenCredential for ChainedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some((_, source)) = self.sources.get(self.chosen.load(Ordering::Acquire)) {
            return source.get_token(scopes, options).await;
        }
        let mut failures = Vec::new();
        for (index, (name, source)) in self.sources.iter().enumerate() {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => {
                    tracing::debug!(source = name, "Azure credential chain chose a source");
                    self.chosen.store(index, Ordering::Release);
                    return Ok(token);
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!(
                "no source of the `default` Azure credential chain returned a token ({})",
                failures.join("; ")
            ),
        ))
    }
}
