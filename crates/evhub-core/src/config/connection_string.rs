//! Azure Event Hubs connection strings, parsed once for both Event Hubs backends.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use sha2::Sha256;

use super::secret::Secret;
use crate::error::{Error, Result};

/// A parsed Event Hubs connection string.
///
/// `Endpoint=sb://<namespace>/;SharedAccessKeyName=<name>;SharedAccessKey=<key>;EntityPath=<hub>`,
/// or with `SharedAccessSignature=<token>` instead of the key pair, plus
/// `UseDevelopmentEmulator=true` for a local emulator. `Debug` and `Display` redact the key and
/// signature.
///
/// ```
/// use evhub_core::config::EventHubsConnectionString;
/// let cs: EventHubsConnectionString =
///     "Endpoint=sb://demo.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0;EntityPath=orders"
///         .parse()?;
/// assert_eq!(cs.host(), "demo.servicebus.windows.net");
/// assert_eq!(cs.entity_path(), Some("orders"));
/// assert!(!cs.to_string().contains("c2VjcmV0"));
/// # Ok::<(), evhub_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct EventHubsConnectionString {
    raw: Secret,
    endpoint: String,
    host: String,
    port: Option<u16>,
    key_name: Option<String>,
    key: Option<Secret>,
    signature: Option<Secret>,
    entity_path: Option<String>,
    emulator: bool,
}

impl EventHubsConnectionString {
    /// The `Endpoint` value, e.g. `sb://demo.servicebus.windows.net/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The namespace host (fully qualified namespace), e.g. `demo.servicebus.windows.net`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port given in `Endpoint`, if any (emulators).
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `SharedAccessKeyName`.
    pub fn key_name(&self) -> Option<&str> {
        self.key_name.as_deref()
    }

    /// `SharedAccessKey`.
    pub fn key(&self) -> Option<&Secret> {
        self.key.as_ref()
    }

    /// `SharedAccessSignature`.
    pub fn signature(&self) -> Option<&Secret> {
        self.signature.as_ref()
    }

    /// `EntityPath`: the hub this connection string is scoped to.
    pub fn entity_path(&self) -> Option<&str> {
        self.entity_path.as_deref()
    }

    /// `UseDevelopmentEmulator=true`.
    pub fn use_development_emulator(&self) -> bool {
        self.emulator
    }

    /// The connection string exactly as given, for handing to a client library.
    pub fn expose(&self) -> &str {
        self.raw.expose()
    }

    /// A SAS token for `resource` (e.g. `sb://host/hub`), valid for `ttl`, signed with the key;
    /// or the given `SharedAccessSignature`.
    pub fn sas_token(&self, resource: &str, ttl: Duration) -> Result<Secret> {
        if let Some(sig) = &self.signature {
            return Ok(sig.clone());
        }
        match (&self.key_name, &self.key) {
            (Some(name), Some(key)) => {
                let expiry = SystemTime::now()
                    .checked_add(ttl)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                Ok(Secret::new(generate_sas_token(
                    resource,
                    name,
                    key.expose(),
                    expiry,
                )))
            }
            _ => Err(Error::config(
                "connection string has neither SharedAccessKey nor SharedAccessSignature",
            )),
        }
    }
}

const SAS_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Builds a `SharedAccessSignature sr=..&sig=..&se=..&skn=..` token: HMAC-SHA256 over
/// `url-encoded-resource + "\n" + expiry` with the key's text as the HMAC key.
pub fn generate_sas_token(resource: &str, key_name: &str, key: &str, expiry_unix: u64) -> String {
    let encoded_resource =
        utf8_percent_encode(&resource.to_ascii_lowercase(), SAS_ENCODE).to_string();
    let to_sign = format!("{encoded_resource}\n{expiry_unix}");
    let signature = sas_signature(key, &to_sign);
    format!(
        "SharedAccessSignature sr={encoded_resource}&sig={}&se={expiry_unix}&skn={}",
        utf8_percent_encode(&signature, SAS_ENCODE),
        utf8_percent_encode(key_name, SAS_ENCODE),
    )
}

/// Base64 HMAC-SHA256 of `data` keyed with the text of `key`.
pub fn sas_signature(key: &str, data: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

impl FromStr for EventHubsConnectionString {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut endpoint = None;
        let mut key_name = None;
        let mut key = None;
        let mut signature = None;
        let mut entity_path = None;
        let mut emulator = false;
        for part in s.trim().split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(Error::config(format!(
                    "connection string part `{}` is not `Key=Value`",
                    redact_part(part)
                )));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.to_owned()),
                "sharedaccesskeyname" => key_name = Some(value.to_owned()),
                "sharedaccesskey" => key = Some(Secret::new(value)),
                "sharedaccesssignature" => signature = Some(Secret::new(value)),
                "entitypath" => entity_path = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "usedevelopmentemulator" => {
                    emulator = value.parse::<bool>().map_err(|_| {
                        Error::config(format!(
                            "connection string: UseDevelopmentEmulator must be true or false, got `{value}`"
                        ))
                    })?
                }
                other => {
                    return Err(Error::config(format!(
                        "connection string: unknown key `{other}`"
                    )))
                }
            }
        }
        let endpoint = endpoint
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::config("connection string: missing `Endpoint`"))?;
        let (host, port) = parse_endpoint(&endpoint)?;
        match (&key_name, &key, &signature) {
            (_, _, Some(sig)) if !sig.expose().starts_with("SharedAccessSignature ") => {
                return Err(Error::config(
                    "connection string: `SharedAccessSignature` must start with `SharedAccessSignature `",
                ))
            }
            (_, _, Some(_)) => {}
            (Some(_), Some(k), None) => {
                // Azure issues base64 keys; Microsoft's emulator uses the literal `SAS_KEY_VALUE`.
                if k.is_empty()
                    || (!emulator
                        && base64::engine::general_purpose::STANDARD
                            .decode(k.expose())
                            .is_err())
                {
                    return Err(Error::config(
                        "connection string: `SharedAccessKey` is not valid base64",
                    ));
                }
            }
            (None, Some(_), None) => {
                return Err(Error::config(
                    "connection string: `SharedAccessKey` needs `SharedAccessKeyName`",
                ))
            }
            (Some(_), None, None) => {
                return Err(Error::config(
                    "connection string: `SharedAccessKeyName` needs `SharedAccessKey`",
                ))
            }
            (None, None, None) => {
                return Err(Error::config(
                    "connection string: missing `SharedAccessKeyName`/`SharedAccessKey` or `SharedAccessSignature`",
                ))
            }
        }
        Ok(Self {
            raw: Secret::new(s.trim()),
            endpoint,
            host,
            port,
            key_name,
            key,
            signature,
            entity_path,
            emulator,
        })
    }
}

fn redact_part(part: &str) -> String {
    if part.len() > 24 {
        format!(
            "{}…",
            &part[..part.char_indices().nth(12).map_or(part.len(), |(i, _)| i)]
        )
    } else {
        part.to_owned()
    }
}

fn parse_endpoint(endpoint: &str) -> Result<(String, Option<u16>)> {
    let url = url::Url::parse(endpoint).map_err(|e| {
        Error::config(format!("connection string: `Endpoint` is not a URL: {e}")).with_source(e)
    })?;
    if !matches!(url.scheme(), "sb" | "amqps" | "amqp" | "https" | "http") {
        return Err(Error::config(format!(
            "connection string: `Endpoint` scheme must be sb://, got `{}://`",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::config("connection string: `Endpoint` has no host"))?;
    Ok((host.to_owned(), url.port()))
}

impl TryFrom<String> for EventHubsConnectionString {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl fmt::Display for EventHubsConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint={}", self.endpoint)?;
        if let Some(name) = &self.key_name {
            write!(f, ";SharedAccessKeyName={name}")?;
        }
        if self.key.is_some() {
            f.write_str(";SharedAccessKey=***")?;
        }
        if self.signature.is_some() {
            f.write_str(";SharedAccessSignature=***")?;
        }
        if let Some(path) = &self.entity_path {
            write!(f, ";EntityPath={path}")?;
        }
        if self.emulator {
            f.write_str(";UseDevelopmentEmulator=true")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventHubsConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHubsConnectionString(\"{self}\")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhpcy1pcy1hLXRlc3Qta2V5LXNlY3JldA==";

    fn cs(s: &str) -> Result<EventHubsConnectionString> {
        s.parse()
    }

    #[test]
    fn parses_a_full_connection_string() {
        let c = cs(&format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={KEY};EntityPath=orders"
        ))
        .unwrap();
        assert_eq!(c.host(), "ns.servicebus.windows.net");
        assert_eq!(c.port(), None);
        assert_eq!(c.key_name(), Some("RootManageSharedAccessKey"));
        assert_eq!(c.key().map(Secret::expose), Some(KEY));
        assert_eq!(c.entity_path(), Some("orders"));
        assert!(!c.use_development_emulator());
    }

    #[test]
    fn parses_emulator_flag_and_port() {
        let c = cs(&format!(
            "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=true;"
        ))
        .unwrap();
        assert!(c.use_development_emulator());
        assert_eq!(c.port(), Some(5672));
        assert_eq!(c.host(), "127.0.0.1");
        assert!(cs(&format!(
            "Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey={KEY};UseDevelopmentEmulator=maybe"
        ))
        .unwrap_err()
        .to_string()
        .contains("UseDevelopmentEmulator"));
    }

    #[test]
    fn accepts_microsofts_emulator_connection_string() {
        let c = cs("Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;").unwrap();
        assert!(c.use_development_emulator());
        assert_eq!(c.host(), "localhost");
        // Outside the emulator the same key is rejected as not base64.
        assert!(
            cs("Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=SAS_KEY_VALUE")
                .is_err()
        );
    }

    #[test]
    fn parses_a_sas_signature() {
        let c = cs("Endpoint=sb://h.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=abc&se=1&skn=k").unwrap();
        assert!(c.signature().is_some());
        assert!(!format!("{c:?}").contains("sig=abc"));
    }

    #[test]
    fn missing_parts_are_named() {
        let e = cs(&format!("SharedAccessKeyName=k;SharedAccessKey={KEY}")).unwrap_err();
        assert!(e.to_string().contains("missing `Endpoint`"), "{e}");
        let e = cs("Endpoint=sb://h/;SharedAccessKeyName=k").unwrap_err();
        assert!(e.to_string().contains("needs `SharedAccessKey`"), "{e}");
        let e = cs(&format!("Endpoint=sb://h/;SharedAccessKey={KEY}")).unwrap_err();
        assert!(e.to_string().contains("needs `SharedAccessKeyName`"), "{e}");
        let e = cs("Endpoint=sb://h/").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = cs("Endpoint=not a url;SharedAccessKeyName=k;SharedAccessKey=a2V5").unwrap_err();
        assert!(e.to_string().contains("Endpoint"), "{e}");
    }

    #[test]
    fn bad_base64_key_is_rejected_without_showing_it() {
        let e =
            cs("Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey=not*base64!").unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        assert!(!e.to_string().contains("not*base64!"));
        assert!(!format!("{e:?}").contains("not*base64!"));
    }

    #[test]
    fn key_never_appears_in_debug_display_or_errors() {
        let c = cs(&format!(
            "Endpoint=sb://h/;SharedAccessKeyName=k;SharedAccessKey={KEY};EntityPath=x"
        ))
        .unwrap();
        assert!(!format!("{c}").contains(KEY));
        assert!(!format!("{c:?}").contains(KEY));
        assert!(format!("{c}").contains("SharedAccessKey=***"));
        let e = cs(&format!("Endpoint=sb://h/;SharedAccessKey={KEY};Bogus")).unwrap_err();
        assert!(!e.to_string().contains(KEY), "{e}");
        assert!(!format!("{e:?}").contains(KEY));
    }

    #[test]
    fn sas_token_has_the_documented_shape() {
        let token = generate_sas_token(
            "sb://h.servicebus.windows.net/hub",
            "send",
            KEY,
            1_700_000_000,
        );
        assert!(token.starts_with(
            "SharedAccessSignature sr=sb%3A%2F%2Fh.servicebus.windows.net%2Fhub&sig="
        ));
        assert!(token.ends_with("&se=1700000000&skn=send"));
        // The signature is deterministic for the same input.
        assert_eq!(
            token,
            generate_sas_token(
                "sb://h.servicebus.windows.net/hub",
                "send",
                KEY,
                1_700_000_000
            )
        );
    }
}
