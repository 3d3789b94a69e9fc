//! Wall-clock time as the protocol uses it (Unix milliseconds and seconds).

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub(crate) fn now_seconds() -> i64 {
    now_millis() / 1000
}
