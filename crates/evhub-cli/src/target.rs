//! Which backend and hub a command works on: `--config`, `--url` or the `EVHUB_*` environment.

use std::sync::Arc;

use evhub::config::{is_secret_key, Config, EventHubsConnectionString};
use evhub::Backend;

use crate::cli::Cli;
use crate::error::{CliError, CliResult};

/// Secret values known before the config is parsed: the password of `--url`, and values of
/// secret-looking `EVHUB_*` variables. They are scrubbed from every error line.
pub fn early_secrets(url: Option<&str>) -> Vec<String> {
    let mut secrets = Vec::new();
    if let Some(url) = url {
        secrets.extend(url_password(url));
        // Query values of secret-looking keys (e.g. `password=`, `connection_string=`).
        if let Some((_, query)) = url.split_once('?') {
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    if is_secret_key(k) && !v.is_empty() {
                        secrets.push(v.to_owned());
                        secrets.push(decode(v));
                    }
                }
            }
        }
    }
    for (name, value) in std::env::vars() {
        if name.starts_with("EVHUB_") && is_secret_key(&name) && !value.is_empty() {
            secrets.push(value);
        } else if name == "EVHUB_URL" {
            secrets.extend(url_password(&value));
        }
    }
    secrets
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| decode(password))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Secret values held by a parsed config.
pub fn config_secrets(config: &Config) -> Vec<String> {
    fn cs(out: &mut Vec<String>, c: Option<&EventHubsConnectionString>) {
        if let Some(c) = c {
            out.push(c.expose().to_owned());
            if let Some(k) = c.key() {
                out.push(k.expose().to_owned());
            }
            if let Some(s) = c.signature() {
                out.push(s.expose().to_owned());
            }
        }
    }
    fn map(out: &mut Vec<String>, m: &std::collections::BTreeMap<String, String>) {
        out.extend(
            m.iter()
                .filter(|(k, _)| is_secret_key(k))
                .map(|(_, v)| v.clone()),
        );
    }
    let mut out = Vec::new();
    match config {
        Config::Memory(_) => {}
        Config::Kafka(k) => {
            out.extend(k.password.as_ref().map(|p| p.expose().to_owned()));
            map(&mut out, &k.librdkafka);
        }
        Config::EventHubsKafka(k) => {
            cs(&mut out, k.connection_string.as_ref());
            out.extend(k.client_secret.as_ref().map(|p| p.expose().to_owned()));
            map(&mut out, &k.librdkafka);
        }
        Config::EventHubs(e) => {
            cs(&mut out, e.connection_string.as_ref());
            out.extend(e.client_secret.as_ref().map(|p| p.expose().to_owned()));
            map(&mut out, &e.checkpoint_store_options);
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Loads the configuration the command line selects.
pub fn load_config(cli: &Cli) -> CliResult<Config> {
    let config = match (&cli.config, &cli.url) {
        (Some(path), _) => Config::from_file(path)?,
        (None, Some(url)) => Config::from_url(url)?,
        (None, None) => Config::from_env().map_err(|e| {
            if e.message().starts_with("no configuration") {
                CliError::usage(
                    "no backend configured: pass --config FILE or --url URL, or set EVHUB_CONFIG, EVHUB_URL or EVHUB_BACKEND",
                )
            } else {
                e.into()
            }
        })?,
    };
    Ok(config)
}

/// Connects to the configured backend.
pub async fn connect(config: &Config) -> evhub::Result<Arc<dyn Backend>> {
    evhub::connect(config).await
}

/// The hub to work on: `--hub`, else the hub named in the config.
pub fn hub_name(cli: &Cli, config: &Config) -> CliResult<String> {
    cli.hub
        .clone()
        .or_else(|| config.hub().map(str::to_owned))
        .ok_or_else(|| {
            CliError::usage("no hub given: pass --hub NAME or name one in the configuration")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn url_password_is_found_and_decoded() {
        assert_eq!(
            url_password("kafka://svc:s%40cret@h:9092/hub").as_deref(),
            Some("s@cret")
        );
        assert_eq!(url_password("kafka://h:9092/hub"), None);
        assert_eq!(url_password("kafka://user@h:9092"), None);
        let early = early_secrets(Some("kafka://h:1?password=p%21w&client_id=x"));
        assert!(early.contains(&"p!w".to_owned()), "{early:?}");
        assert!(!early.contains(&"x".to_owned()));
    }

    #[test]
    fn config_secrets_cover_password_and_passthrough() {
        let c = Config::from_toml_str(
            "backend = \"kafka\"\nbootstrap_servers = \"h:1\"\nusername = \"u\"\npassword = \"pw-123\"\n[librdkafka]\n\"sasl.password\" = \"other\"\n\"linger.ms\" = \"5\"",
        )
        .unwrap();
        let s = config_secrets(&c);
        assert!(s.contains(&"pw-123".to_owned()));
        assert!(s.contains(&"other".to_owned()));
        assert!(!s.contains(&"5".to_owned()));
    }
}
