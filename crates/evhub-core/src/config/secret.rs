//! A string that never shows itself.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Text shown as `***` in `Debug` and `Display`: passwords, keys, connection strings.
///
/// Read the value with [`Secret::expose`], only where it is handed to a client library.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Whether a pass-through option name (e.g. a librdkafka or object-store key) holds a secret.
pub fn is_secret_key(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "key",
        "token",
        "credential",
        "sas",
        "connection",
    ]
    .iter()
    .any(|needle| name.contains(needle))
        && !name.ends_with(".location")
        && !name.ends_with("key_name")
}

/// `Debug` helper for option maps: values of secret-looking keys are shown as `***`.
pub(crate) struct RedactedMap<'a>(pub &'a std::collections::BTreeMap<String, String>);

impl fmt::Debug for RedactedMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in self.0 {
            if is_secret_key(k) {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_never_formatted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(s.to_string(), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_keys_are_recognised() {
        assert!(is_secret_key("sasl.password"));
        assert!(is_secret_key("azure_storage_account_key"));
        assert!(is_secret_key("ssl.key.password"));
        assert!(!is_secret_key("ssl.key.location"));
        assert!(!is_secret_key("linger.ms"));
    }
}
