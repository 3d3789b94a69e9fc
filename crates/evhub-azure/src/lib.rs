//! The Azure AD (Entra ID) credential of evhub's two Event Hubs backends, built once from the
//! same configuration keys so that `eventhubs` (AMQP) and `eventhubs-kafka` (OAUTHBEARER) mean
//! the same thing by every setting:
//!
//! | `credential`       | source                                                            |
//! |--------------------|-------------------------------------------------------------------|
//! | `default` (or unset) | the chain below; the first source that returns a token is kept |
//! | `client-secret`    | service principal: `tenant_id`, `client_id`, `client_secret`      |
//! | `managed-identity` | managed identity; user-assigned when `client_id` is set           |
//! | `azure-cli`        | the account signed in to the Azure CLI (`az login`)               |
//!
//! The `default` chain, in order (like Microsoft's `DefaultAzureCredential`):
//! 1. **environment**: a service principal from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//!    `AZURE_CLIENT_SECRET` (all three set);
//! 2. **workload identity**: `AZURE_FEDERATED_TOKEN_FILE` with `AZURE_TENANT_ID` and
//!    `AZURE_CLIENT_ID` (Kubernetes workload identity);
//! 3. **managed identity**: user-assigned with `client_id` (or `AZURE_CLIENT_ID`), else
//!    system-assigned;
//! 4. **azure cli**.
//!
//! Errors: a missing or invalid setting is [`ErrorKind::Config`](evhub_core::ErrorKind::Config)
//! when the backend is built (a chain without any source too); a source that cannot produce a
//! token fails the token request with an `azure_core` credential error that each backend maps
//! to [`ErrorKind::Auth`](evhub_core::ErrorKind::Auth). Secrets never appear in `Debug` or in
//! error text.
//!
//! ```
//! use evhub_azure::{credential, CredentialSettings};
//! use evhub_core::config::AzureCredentialKind;
//!
//! let settings = CredentialSettings {
//!     kind: Some(AzureCredentialKind::ClientSecret),
//!     tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
//!     client_id: None,
//!     client_secret: None,
//! };
//! let e = credential(&settings).unwrap_err();
//! assert_eq!(e.kind(), evhub_core::ErrorKind::Config);
//! assert_eq!(e.to_string(), "config: Azure credential `client-secret` needs `client_id`");
//! ```

mod chain;

use std::fmt;
use std::sync::Arc;

use azure_core::credentials::{Secret as AzureSecret, TokenCredential};
use azure_core::http::ClientOptions;
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, Executor, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use evhub_core::config::{AzureCredentialKind, EventHubsConfig, EventHubsKafkaConfig, Secret};
use evhub_core::{Error, Result};

pub use chain::ChainedCredential;

/// The credential keys both Event Hubs backends share.
#[derive(Clone, Default)]
pub struct CredentialSettings {
    /// Which source; `None` means [`AzureCredentialKind::Default`].
    pub kind: Option<AzureCredentialKind>,
    /// Tenant for `client-secret`.
    pub tenant_id: Option<String>,
    /// Client id for `client-secret`, or a user-assigned managed identity.
    pub client_id: Option<String>,
    /// Client secret for `client-secret` (redacted).
    pub client_secret: Option<Secret>,
}

impl fmt::Debug for CredentialSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSettings")
            .field("kind", &self.kind)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

impl From<&EventHubsConfig> for CredentialSettings {
    fn from(c: &EventHubsConfig) -> Self {
        Self {
            kind: c.credential,
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
        }
    }
}

impl From<&EventHubsKafkaConfig> for CredentialSettings {
    fn from(c: &EventHubsKafkaConfig) -> Self {
        Self {
            kind: c.credential,
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
        }
    }
}

/// Reads an environment variable by name.
pub type VarLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the credentials look things up; [`Default`] is the real process environment, the
/// default HTTP pipeline and the real `az` executable. Tests substitute each.
#[derive(Clone)]
pub struct CredentialEnvironment {
    /// Reads an environment variable (empty values count as unset).
    pub var: VarLookup,
    /// HTTP pipeline options of the token requests (transport, retries).
    pub client_options: ClientOptions,
    /// Runs the Azure CLI; `None` is the real process executor.
    pub executor: Option<Arc<dyn Executor>>,
}

impl Default for CredentialEnvironment {
    fn default() -> Self {
        Self {
            var: Arc::new(|name| std::env::var(name).ok()),
            client_options: ClientOptions::default(),
            executor: None,
        }
    }
}

impl fmt::Debug for CredentialEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialEnvironment")
            .finish_non_exhaustive()
    }
}

impl CredentialEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        (self.var)(name).filter(|v| !v.trim().is_empty())
    }
}

/// Builds the credential `settings` name, from the process environment.
pub fn credential(settings: &CredentialSettings) -> Result<Arc<dyn TokenCredential>> {
    credential_in(settings, &CredentialEnvironment::default())
}

/// Like [`credential`], looking things up in `env`.
pub fn credential_in(
    settings: &CredentialSettings,
    env: &CredentialEnvironment,
) -> Result<Arc<dyn TokenCredential>> {
    match settings.kind.unwrap_or(AzureCredentialKind::Default) {
        AzureCredentialKind::ClientSecret => {
            let need = |key: &str| {
                Error::config(format!("Azure credential `client-secret` needs `{key}`"))
            };
            let tenant = settings
                .tenant_id
                .as_deref()
                .ok_or_else(|| need("tenant_id"))?;
            let client = settings
                .client_id
                .clone()
                .ok_or_else(|| need("client_id"))?;
            let secret = settings
                .client_secret
                .as_ref()
                .ok_or_else(|| need("client_secret"))?;
            client_secret(tenant, client, secret.expose(), env)
                .map_err(|e| build_error("client-secret", e))
        }
        AzureCredentialKind::ManagedIdentity => managed_identity(settings.client_id.clone(), env)
            .map_err(|e| build_error("managed-identity", e)),
        AzureCredentialKind::AzureCli => azure_cli(env).map_err(|e| build_error("azure-cli", e)),
        AzureCredentialKind::Default => Ok(Arc::new(ChainedCredential::default_chain(
            settings.client_id.clone(),
            env,
        )?)),
    }
}

fn client_secret(
    tenant: &str,
    client: String,
    secret: &str,
    env: &CredentialEnvironment,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ClientSecretCredentialOptions {
        client_options: env.client_options.clone(),
    };
    Ok(ClientSecretCredential::new(
        tenant,
        client,
        AzureSecret::new(secret.to_owned()),
        Some(options),
    )?)
}

fn managed_identity(
    client_id: Option<String>,
    env: &CredentialEnvironment,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        client_options: env.client_options.clone(),
    };
    Ok(ManagedIdentityCredential::new(Some(options))?)
}

fn azure_cli(env: &CredentialEnvironment) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = AzureCliCredentialOptions {
        executor: env.executor.clone(),
        ..Default::default()
    };
    Ok(AzureCliCredential::new(Some(options))?)
}

fn workload_identity(
    tenant: String,
    client: String,
    token_file: String,
    env: &CredentialEnvironment,
) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let mut options = WorkloadIdentityCredentialOptions {
        client_id: Some(client),
        tenant_id: Some(tenant),
        token_file_path: Some(token_file.into()),
        ..Default::default()
    };
    options.credential_options.client_options = env.client_options.clone();
    Ok(WorkloadIdentityCredential::new(Some(options))?)
}

/// A credential that could not be built: a configuration error naming the setting. The
/// `azure_identity` message names fields, never secret values.
fn build_error(kind: &str, e: azure_core::Error) -> Error {
    Error::config(format!("Azure credential `{kind}`: {e}")).with_source(e)
}
