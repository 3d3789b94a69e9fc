//! Azurite (local Azure Blob storage) for drills: containers must exist before an `az://`
//! checkpoint store uses them, and object_store does not create them.

use base64::Engine;
use hmac::Mac;
use std::io::{Read, Write};

/// Azurite settings from `scripts/azurite.sh env`, if it runs.
#[derive(Debug, Clone)]
pub struct Azurite {
    /// `http://127.0.0.1:<port>/<account>`.
    pub endpoint: String,
    /// Storage account name.
    pub account: String,
    /// Account key (base64).
    pub key: String,
}

impl Azurite {
    /// Reads `EVHUB_TEST_AZURITE_BLOB_ENDPOINT`, `_ACCOUNT`, `_KEY`.
    pub fn from_env() -> Option<Self> {
        Some(Self {
            endpoint: std::env::var("EVHUB_TEST_AZURITE_BLOB_ENDPOINT").ok()?,
            account: std::env::var("EVHUB_TEST_AZURITE_ACCOUNT").ok()?,
            key: std::env::var("EVHUB_TEST_AZURITE_KEY").ok()?,
        })
    }

    /// `checkpoint_store_options` for an `az://` store on this Azurite.
    pub fn store_options(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("azure_storage_account_name", self.account.as_str()),
            ("azure_storage_account_key", self.key.as_str()),
            ("azure_storage_endpoint", self.endpoint.as_str()),
            ("azure_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Creates `container` (a shared-key signed `PUT ?restype=container`); an existing one is
    /// fine.
    pub fn create_container(&self, container: &str) -> Result<(), String> {
        let rest = self
            .endpoint
            .strip_prefix("http://")
            .ok_or("Azurite endpoint must be http://")?;
        let (authority, account_path) = rest.split_once('/').unwrap_or((rest, ""));
        let path = format!("/{account_path}/{container}").replace("//", "/");
        let date = http_date(std::time::SystemTime::now());
        let version = "2021-08-06";
        // VERB, 11 empty standard headers, canonical x-ms- headers, canonical resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{}{path}\nrestype:container",
            self.account
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(&self.key)
            .map_err(|e| format!("Azurite key is not base64: {e}"))?;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(to_sign.as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let request = format!(
            "PUT {path}?restype=container HTTP/1.1\r\nHost: {authority}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {version}\r\nAuthorization: SharedKey {}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.account
        );
        let mut stream = std::net::TcpStream::connect(authority).map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| e.to_string())?;
        let status = response.lines().next().unwrap_or_default();
        if status.starts_with("HTTP/1.1 201") || status.starts_with("HTTP/1.1 409") {
            Ok(())
        } else {
            Err(format!("creating container {container}: {status}"))
        }
    }
}

/// RFC 1123 date (`Sat, 28 Nov 2026 09:00:00 GMT`) without a date crate.
pub fn http_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        MONTHS[(month - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_856_400);
        assert_eq!(http_date(t), "Sat, 28 Nov 2026 09:00:00 GMT");
        assert_eq!(
            http_date(std::time::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
