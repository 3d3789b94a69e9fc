//! Every credential source of the shared chain, against a fake Entra ID / IMDS transport and a
//! fake `az` executable: which source answers, with which identity, and what fails how.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::Headers;
use azure_core::http::{
    AsyncRawResponse, ClientOptions, HttpClient, Request, StatusCode, Transport,
};
use azure_identity::Executor;
use evhub_azure::{credential_in, ChainedCredential, CredentialEnvironment, CredentialSettings};
use evhub_core::config::{AzureCredentialKind, Secret};
use evhub_core::ErrorKind;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const SCOPE: &str = "https://ns.servicebus.windows.net/.default";
const SECRET: &str = "very-secret-value-1234";

/// Answers Entra ID token requests (`/oauth2/v2.0/token`) and IMDS requests, recording each
/// request's URL and form body; `fail` makes every answer a 401.
#[derive(Debug, Default)]
struct FakeIdentity {
    requests: Mutex<Vec<(String, String)>>,
    fail: bool,
}

impl FakeIdentity {
    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl HttpClient for FakeIdentity {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url().to_string();
        let body = match request.body() {
            azure_core::http::Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            #[allow(unreachable_patterns)]
            _ => String::new(),
        };
        self.requests.lock().unwrap().push((url.clone(), body));
        if self.fail {
            return Ok(AsyncRawResponse::from_bytes(
                StatusCode::Unauthorized,
                Headers::new(),
                r#"{"error":"invalid_client","error_description":"denied"}"#,
            ));
        }
        let expires = time_now() + 3600;
        let json = if url.contains("/metadata/identity/") {
            format!(
                r#"{{"access_token":"mi-token","expires_on":"{expires}","token_type":"Bearer","resource":"https://ns.servicebus.windows.net"}}"#
            )
        } else {
            r#"{"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":"aad-token"}"#
                .to_owned()
        };
        Ok(AsyncRawResponse::from_bytes(
            StatusCode::Ok,
            Headers::new(),
            json,
        ))
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fake `az`: prints a token, or fails like a CLI that is not logged in.
#[derive(Debug)]
struct FakeAz {
    logged_in: bool,
    calls: Mutex<usize>,
}

#[async_trait::async_trait]
impl Executor for FakeAz {
    async fn run(
        &self,
        _program: &OsStr,
        _args: &[&OsStr],
    ) -> std::io::Result<std::process::Output> {
        use std::os::unix::process::ExitStatusExt;
        *self.calls.lock().unwrap() += 1;
        let (code, stdout, stderr) = if self.logged_in {
            let json = format!(
                r#"{{"accessToken":"cli-token","expires_on":{},"tokenType":"Bearer"}}"#,
                time_now() + 3600
            );
            (0, json, String::new())
        } else {
            (
                1,
                String::new(),
                "ERROR: Please run 'az login' to setup account.".to_owned(),
            )
        };
        Ok(std::process::Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        })
    }
}

struct Setup {
    http: Arc<FakeIdentity>,
    az: Arc<FakeAz>,
    env: CredentialEnvironment,
}

fn setup(vars: &[(&str, &str)], http_fails: bool, az_logged_in: bool) -> Setup {
    let http = Arc::new(FakeIdentity {
        fail: http_fails,
        ..Default::default()
    });
    let az = Arc::new(FakeAz {
        logged_in: az_logged_in,
        calls: Mutex::new(0),
    });
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let client_options = ClientOptions {
        transport: Some(Transport::new(http.clone())),
        retry: azure_core::http::RetryOptions::none(),
        ..Default::default()
    };
    let env = CredentialEnvironment {
        var: Arc::new(move |name| vars.get(name).cloned()),
        client_options,
        executor: Some(az.clone()),
    };
    Setup { http, az, env }
}

fn settings(kind: Option<AzureCredentialKind>) -> CredentialSettings {
    CredentialSettings {
        kind,
        ..Default::default()
    }
}

async fn token(credential: &Arc<dyn TokenCredential>) -> azure_core::Result<String> {
    credential
        .get_token(&[SCOPE], None)
        .await
        .map(|t| t.token.secret().to_owned())
}

#[tokio::test]
async fn client_secret_requests_a_token_for_the_configured_principal() {
    let s = setup(&[], false, false);
    let settings = CredentialSettings {
        kind: Some(AzureCredentialKind::ClientSecret),
        tenant_id: Some(TENANT.into()),
        client_id: Some("app-1".into()),
        client_secret: Some(Secret::new(SECRET)),
    };
    let credential = credential_in(&settings, &s.env).unwrap();
    assert_eq!(token(&credential).await.unwrap(), "aad-token");
    let requests = s.http.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0]
            .0
            .contains(&format!("/{TENANT}/oauth2/v2.0/token")),
        "{requests:?}"
    );
    assert!(requests[0].1.contains("client_id=app-1"), "{requests:?}");
    assert!(!format!("{settings:?}").contains(SECRET));
}

#[tokio::test]
async fn client_secret_names_each_missing_key() {
    let s = setup(&[], false, false);
    let full = CredentialSettings {
        kind: Some(AzureCredentialKind::ClientSecret),
        tenant_id: Some(TENANT.into()),
        client_id: Some("app-1".into()),
        client_secret: Some(Secret::new(SECRET)),
    };
    for (key, settings) in [
        (
            "tenant_id",
            CredentialSettings {
                tenant_id: None,
                ..full.clone()
            },
        ),
        (
            "client_id",
            CredentialSettings {
                client_id: None,
                ..full.clone()
            },
        ),
        (
            "client_secret",
            CredentialSettings {
                client_secret: None,
                ..full.clone()
            },
        ),
    ] {
        let e = credential_in(&settings, &s.env).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains(&format!("needs `{key}`")), "{e}");
    }
    let bad_tenant = CredentialSettings {
        tenant_id: Some("not a tenant/..".into()),
        ..full
    };
    let e = credential_in(&bad_tenant, &s.env).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(!e.to_string().contains(SECRET), "{e}");
}

#[tokio::test]
async fn client_secret_rejected_is_a_credential_error_without_the_secret() {
    let s = setup(&[], true, false);
    let settings = CredentialSettings {
        kind: Some(AzureCredentialKind::ClientSecret),
        tenant_id: Some(TENANT.into()),
        client_id: Some("app-1".into()),
        client_secret: Some(Secret::new(SECRET)),
    };
    let credential = credential_in(&settings, &s.env).unwrap();
    let e = token(&credential).await.unwrap_err();
    assert_eq!(*e.kind(), azure_core::error::ErrorKind::Credential, "{e}");
    assert!(!format!("{e} {e:?}").contains(SECRET));
}

#[tokio::test]
async fn managed_identity_asks_imds_for_the_user_assigned_client() {
    let s = setup(&[], false, false);
    let settings = CredentialSettings {
        kind: Some(AzureCredentialKind::ManagedIdentity),
        client_id: Some("mi-client".into()),
        ..Default::default()
    };
    let credential = credential_in(&settings, &s.env).unwrap();
    assert_eq!(token(&credential).await.unwrap(), "mi-token");
    let requests = s.http.requests();
    assert!(
        requests[0].0.contains("/metadata/identity/oauth2/token"),
        "{requests:?}"
    );
    assert!(
        requests[0].0.contains("client_id=mi-client"),
        "{requests:?}"
    );
}

#[tokio::test]
async fn azure_cli_means_the_azure_cli_only() {
    let s = setup(&[], false, true);
    let credential = credential_in(&settings(Some(AzureCredentialKind::AzureCli)), &s.env).unwrap();
    assert_eq!(token(&credential).await.unwrap(), "cli-token");
    assert_eq!(*s.az.calls.lock().unwrap(), 1);
    assert!(s.http.requests().is_empty());

    let s = setup(&[], false, false);
    let credential = credential_in(&settings(Some(AzureCredentialKind::AzureCli)), &s.env).unwrap();
    let e = token(&credential).await.unwrap_err();
    assert_eq!(*e.kind(), azure_core::error::ErrorKind::Credential, "{e}");
}

#[tokio::test]
async fn default_chain_prefers_the_environment_service_principal() {
    let s = setup(
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "env-app"),
            ("AZURE_CLIENT_SECRET", SECRET),
        ],
        false,
        true,
    );
    // Unset and `default` are the same setting.
    for kind in [None, Some(AzureCredentialKind::Default)] {
        let credential = credential_in(&settings(kind), &s.env).unwrap();
        assert_eq!(token(&credential).await.unwrap(), "aad-token");
    }
    let requests = s.http.requests();
    assert!(
        requests
            .iter()
            .all(|(url, body)| url.contains("/oauth2/v2.0/token")
                && body.contains("client_id=env-app")
                && body.contains("client_secret=")),
        "{requests:?}"
    );
    assert_eq!(*s.az.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn default_chain_uses_workload_identity_with_a_federated_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "federated-assertion").unwrap();
    let file = file.to_string_lossy().into_owned();
    let s = setup(
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "wi-app"),
            ("AZURE_FEDERATED_TOKEN_FILE", &file),
        ],
        false,
        true,
    );
    let credential = credential_in(&settings(None), &s.env).unwrap();
    assert_eq!(token(&credential).await.unwrap(), "aad-token");
    let requests = s.http.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0]
            .1
            .contains("client_assertion=federated-assertion"),
        "{requests:?}"
    );
    assert!(requests[0].1.contains("client_id=wi-app"), "{requests:?}");
}

#[tokio::test]
async fn default_chain_falls_through_to_managed_identity_then_azure_cli() {
    // Nothing in the environment: managed identity answers.
    let s = setup(&[], false, true);
    let credential = credential_in(&settings(None), &s.env).unwrap();
    assert_eq!(token(&credential).await.unwrap(), "mi-token");
    assert_eq!(*s.az.calls.lock().unwrap(), 0);

    // IMDS refuses: the Azure CLI answers, and stays chosen.
    let s = setup(&[], true, true);
    let credential = credential_in(&settings(None), &s.env).unwrap();
    assert_eq!(token(&credential).await.unwrap(), "cli-token");
    let imds_calls = s.http.requests().len();
    assert_eq!(token(&credential).await.unwrap(), "cli-token");
    assert_eq!(s.http.requests().len(), imds_calls, "chosen source is kept");
}

#[tokio::test]
async fn default_chain_failure_names_every_source() {
    let s = setup(
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "env-app"),
            ("AZURE_CLIENT_SECRET", SECRET),
        ],
        true,
        false,
    );
    let credential = credential_in(&settings(None), &s.env).unwrap();
    let e = token(&credential).await.unwrap_err();
    let text = e.to_string();
    assert_eq!(*e.kind(), azure_core::error::ErrorKind::Credential, "{e}");
    for source in ["environment", "managed identity", "azure cli"] {
        assert!(text.contains(source), "{source} missing in {text}");
    }
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn a_missing_federated_token_file_is_a_config_error() {
    let s = setup(
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/evhub/token"),
        ],
        false,
        false,
    );
    let e = credential_in(&settings(None), &s.env).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("workload identity"), "{e}");
}

#[test]
fn an_empty_chain_is_a_config_error() {
    let e = ChainedCredential::new(Vec::new()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn the_chain_lists_its_sources_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "assertion").unwrap();
    let file = file.to_string_lossy().into_owned();
    let s = setup(
        &[
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", "app"),
            ("AZURE_CLIENT_SECRET", SECRET),
            ("AZURE_FEDERATED_TOKEN_FILE", &file),
        ],
        false,
        false,
    );
    let settings = settings(None);
    // Build through the public entry and look at the concrete chain.
    let credential = credential_in(&settings, &s.env).unwrap();
    let debug = format!("{credential:?}");
    let order: Vec<usize> = [
        "environment",
        "workload identity",
        "managed identity",
        "azure cli",
    ]
    .iter()
    .map(|name| {
        debug
            .find(name)
            .unwrap_or_else(|| panic!("{name} missing: {debug}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
}
