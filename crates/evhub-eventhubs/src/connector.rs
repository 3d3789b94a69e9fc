//! Opens SDK clients from an [`EventHubsConfig`]: namespace, auth and endpoint.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_messaging_eventhubs::{ConsumerClient, ProducerClient, RetryOptions};
use evhub_core::config::{EventHubsConfig, Secret};
use evhub_core::{Error, Result};

use crate::error::from_hubs;

/// How clients authenticate.
#[derive(Clone)]
enum Auth {
    /// A connection string without `EntityPath`, so one backend serves every hub the key may
    /// access; the SDK signs (and refreshes) SAS tokens itself.
    ConnectionString(Secret),
    /// An Azure AD token credential.
    Credential(Arc<dyn TokenCredential>),
}

/// Everything needed to open producer and consumer clients; cheap to clone.
#[derive(Clone)]
pub(crate) struct Connector {
    namespace: String,
    auth: Auth,
    custom_endpoint: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::ConnectionString(_) => "connection string (SAS)",
            Auth::Credential(_) => "azure ad credential",
        };
        f.debug_struct("Connector")
            .field("namespace", &self.namespace)
            .field("auth", &auth)
            .field("custom_endpoint", &self.custom_endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Connector {
    pub(crate) fn from_config(config: &EventHubsConfig) -> Result<Self> {
        let timeout = Duration::from_millis(config.operation_timeout_ms.max(1));
        let mut custom_endpoint = config.custom_endpoint.clone();
        if let Some(endpoint) = &custom_endpoint {
            let url = url::Url::parse(endpoint).map_err(|e| {
                Error::config(format!("custom_endpoint `{endpoint}` is not a URL: {e}"))
                    .with_source(e)
            })?;
            if !matches!(url.scheme(), "amqp" | "amqps" | "ws" | "wss") {
                return Err(Error::config(format!(
                    "custom_endpoint must use amqp://, amqps://, ws:// or wss://, got `{}://`",
                    url.scheme()
                )));
            }
        }
        let (namespace, auth) = match (&config.connection_string, &config.namespace) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "give either `connection_string` or `namespace` (+ `credential`), not both",
                ))
            }
            (Some(cs), None) => {
                if config.credential.is_some() {
                    return Err(Error::config(
                        "`credential` is used with `namespace`, not with `connection_string`",
                    ));
                }
                if cs.use_development_emulator() && custom_endpoint.is_none() {
                    // The Rust SDK ignores UseDevelopmentEmulator and the port; route plain
                    // AMQP to the given host:port like the other SDKs do.
                    custom_endpoint = Some(format!(
                        "amqp://{}:{}",
                        cs.host(),
                        cs.port().unwrap_or(5672)
                    ));
                }
                let mut text = format!("Endpoint=sb://{}/", cs.host());
                if let (Some(name), Some(key)) = (cs.key_name(), cs.key()) {
                    text.push_str(&format!(
                        ";SharedAccessKeyName={name};SharedAccessKey={}",
                        key.expose()
                    ));
                }
                if let Some(signature) = cs.signature() {
                    text.push_str(&format!(";SharedAccessSignature={}", signature.expose()));
                    // A pre-signed token is scoped to its entity; keep it so the SDK checks.
                    if let Some(path) = cs.entity_path() {
                        text.push_str(&format!(";EntityPath={path}"));
                    }
                }
                (
                    cs.host().to_owned(),
                    Auth::ConnectionString(Secret::new(text)),
                )
            }
            (None, Some(namespace)) => {
                let namespace = namespace
                    .trim()
                    .trim_start_matches("sb://")
                    .trim_end_matches('/')
                    .to_owned();
                if namespace.is_empty() {
                    return Err(Error::config("`namespace` is empty"));
                }
                let credential = evhub_azure::credential(&config.into())?;
                (namespace, Auth::Credential(credential))
            }
            (None, None) => {
                return Err(Error::config(
                    "eventhubs backend needs `connection_string` or `namespace` + `credential`",
                ))
            }
        };
        Ok(Self {
            namespace,
            auth,
            custom_endpoint,
            timeout,
        })
    }

    /// Fully qualified namespace (checkpoint store key).
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// SDK retries stay within the operation timeout so errors surface in time.
    fn retry_options(&self) -> RetryOptions {
        let total = self.timeout.min(Duration::from_secs(60));
        RetryOptions {
            initial_delay: azure_core::time::Duration::milliseconds(100),
            max_delay: azure_core::time::Duration::seconds(5),
            max_total_elapsed: azure_core::time::Duration::try_from(total)
                .unwrap_or(azure_core::time::Duration::seconds(60)),
            max_retries: 6,
        }
    }

    /// Runs `fut` within the operation timeout.
    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(format!("{what} after {:?}", self.timeout))),
        }
    }

    pub(crate) async fn producer(&self, hub: &str) -> Result<ProducerClient> {
        let mut builder = ProducerClient::builder()
            .with_application_id("evhub".to_owned())
            .with_retry_options(self.retry_options());
        if let Some(endpoint) = &self.custom_endpoint {
            builder = builder.with_custom_endpoint(endpoint.clone());
        }
        let open = async {
            match &self.auth {
                Auth::ConnectionString(cs) => {
                    builder
                        .open_with_connection_string(cs.expose(), Some(hub))
                        .await
                }
                Auth::Credential(credential) => {
                    builder.open(&self.namespace, hub, credential.clone()).await
                }
            }
            .map_err(|e| from_hubs(&format!("opening a producer for hub `{hub}`"), e))
        };
        self.timed(&format!("opening a producer for hub `{hub}`"), open)
            .await
    }

    pub(crate) async fn consumer(&self, hub: &str, group: &str) -> Result<ConsumerClient> {
        // The SDK names the connection after the application id and the processor uses that
        // name as its owner id, so every member needs its own.
        let mut builder = ConsumerClient::builder()
            .with_application_id(format!("evhub-{}", uuid::Uuid::new_v4()))
            .with_consumer_group(group.to_owned())
            .with_retry_options(self.retry_options());
        if let Some(endpoint) = &self.custom_endpoint {
            builder = builder.with_custom_endpoint(endpoint.clone());
        }
        let what = format!("opening a consumer for hub `{hub}`, group `{group}`");
        let open = async {
            match &self.auth {
                Auth::ConnectionString(cs) => {
                    builder
                        .open_with_connection_string(cs.expose(), Some(hub))
                        .await
                }
                Auth::Credential(credential) => {
                    builder
                        .open(&self.namespace, hub.to_owned(), credential.clone())
                        .await
                }
            }
            .map_err(|e| from_hubs(&what, e))
        };
        self.timed(&what, open).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evhub_core::config::AzureCredentialKind;
    use evhub_core::ErrorKind;

    const KEY: &str = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seQ==";

    fn from_cs(cs: &str) -> EventHubsConfig {
        EventHubsConfig::from_connection_string(cs.parse().unwrap())
    }

    #[test]
    fn emulator_connection_string_routes_plain_amqp_to_host_and_port() {
        let c = Connector::from_config(&from_cs(&format!(
            "Endpoint=sb://127.0.0.1:5673/;SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=true;EntityPath=orders"
        )))
        .unwrap();
        assert_eq!(c.custom_endpoint.as_deref(), Some("amqp://127.0.0.1:5673"));
        assert_eq!(c.namespace(), "127.0.0.1");
        let c = Connector::from_config(&from_cs(&format!(
            "Endpoint=sb://localhost/;SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=true"
        )))
        .unwrap();
        assert_eq!(c.custom_endpoint.as_deref(), Some("amqp://localhost:5672"));
    }

    #[test]
    fn namespace_connection_string_drops_entity_path_and_keeps_no_secret_in_debug() {
        let c = Connector::from_config(&from_cs(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY};EntityPath=orders"
        )))
        .unwrap();
        assert!(c.custom_endpoint.is_none());
        let Auth::ConnectionString(text) = &c.auth else {
            panic!("expected SAS auth");
        };
        assert!(!text.expose().contains("EntityPath"));
        assert!(!format!("{c:?}").contains(KEY));
    }

    #[test]
    fn invalid_combinations_are_config_errors() {
        let mut both = from_cs(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}"
        ));
        both.namespace = Some("ns.servicebus.windows.net".into());
        assert_eq!(
            Connector::from_config(&both).unwrap_err().kind(),
            ErrorKind::Config
        );

        let mut neither = both.clone();
        neither.connection_string = None;
        neither.namespace = None;
        assert_eq!(
            Connector::from_config(&neither).unwrap_err().kind(),
            ErrorKind::Config
        );

        let mut secret = neither.clone();
        secret.namespace = Some("ns.servicebus.windows.net".into());
        secret.credential = Some(AzureCredentialKind::ClientSecret);
        let e = Connector::from_config(&secret).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("tenant_id"), "{e}");

        let mut endpoint = both.clone();
        endpoint.namespace = None;
        endpoint.custom_endpoint = Some("http://127.0.0.1:5672".into());
        let e = Connector::from_config(&endpoint).unwrap_err();
        assert!(e.to_string().contains("custom_endpoint"), "{e}");
    }

    #[test]
    fn azure_ad_credentials_build_without_network() {
        let mut config = from_cs(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey={KEY}"
        ));
        config.connection_string = None;
        config.namespace = Some("sb://ns.servicebus.windows.net/".into());
        for kind in [
            AzureCredentialKind::Default,
            AzureCredentialKind::ManagedIdentity,
            AzureCredentialKind::AzureCli,
        ] {
            config.credential = Some(kind);
            let c = Connector::from_config(&config).unwrap();
            assert_eq!(c.namespace(), "ns.servicebus.windows.net");
        }
        config.credential = Some(AzureCredentialKind::ClientSecret);
        config.tenant_id = Some("00000000-0000-0000-0000-000000000000".into());
        config.client_id = Some("app".into());
        config.client_secret = Some(Secret::new("shh"));
        let c = Connector::from_config(&config).unwrap();
        assert!(!format!("{c:?}").contains("shh"));
    }
}
