//! Event position selector filters (`apache.org:selector-filter:string`).
//!
//! Expressions look like `amqp.annotation.x-opt-offset > '-1'`; SDKs differ in
//! whitespace and quoting (`>'12'`, `> 12`), so parsing is loose about both.

use fe2o3_amqp_types::{messaging::FilterSet, primitives::Value};
use serde_amqp::descriptor::Descriptor;

/// Filter-set key and descriptor name of the selector filter.
pub(crate) const SELECTOR_FILTER_NAME: &str = "apache.org:selector-filter:string";
/// Numeric descriptor of the selector filter.
pub(crate) const SELECTOR_FILTER_CODE: u64 = 0x0000_468C_0000_0004;

/// Where a receiver starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartPosition {
    /// From the oldest retained event (`offset > '-1'` or no filter).
    Earliest,
    /// Only events enqueued after the link attached (`@latest`).
    Latest,
    /// Relative to a byte offset.
    Offset { offset: i64, inclusive: bool },
    /// Relative to a sequence number.
    Sequence { sequence: i64, inclusive: bool },
    /// Events enqueued after (or at) this Unix time in milliseconds.
    EnqueuedTime { millis: i64, inclusive: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FilterError {
    #[error("selector filter value is not a string")]
    NotAString,
    #[error("unsupported selector filter expression {0:?}")]
    BadExpression(String),
}

/// Finds the selector filter in a source filter set; no filter → `Earliest`.
pub(crate) fn start_position(filter: Option<&FilterSet>) -> Result<StartPosition, FilterError> {
    let Some(filter) = filter else {
        return Ok(StartPosition::Earliest);
    };
    for (key, value) in filter.iter() {
        let described_selector = match value {
            Value::Described(described) => {
                let by_descriptor = match &described.descriptor {
                    Descriptor::Name(name) => name.as_str() == SELECTOR_FILTER_NAME,
                    Descriptor::Code(code) => *code == SELECTOR_FILTER_CODE,
                };
                (by_descriptor || key.as_str() == SELECTOR_FILTER_NAME).then_some(&described.value)
            }
            other if key.as_str() == SELECTOR_FILTER_NAME => Some(other),
            _ => None,
        };
        if let Some(expression) = described_selector {
            let text = match expression {
                Value::String(s) => s.clone(),
                Value::Symbol(s) => s.as_str().to_string(),
                Value::Binary(b) => {
                    String::from_utf8(b.to_vec()).map_err(|_| FilterError::NotAString)?
                }
                _ => return Err(FilterError::NotAString),
            };
            return parse_expression(&text);
        }
    }
    Ok(StartPosition::Earliest)
}

pub(crate) fn parse_expression(text: &str) -> Result<StartPosition, FilterError> {
    let bad = || FilterError::BadExpression(text.chars().take(200).collect());
    let trimmed = text.trim();
    let rest = trimmed.strip_prefix("amqp.annotation.").ok_or_else(bad)?;
    let field_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .ok_or_else(bad)?;
    let (field, rest) = rest.split_at(field_len);
    let rest = rest.trim_start();
    let (inclusive, value) = if let Some(v) = rest.strip_prefix(">=") {
        (true, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (false, v)
    } else {
        return Err(bad());
    };
    let value = value.trim();
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(bad());
    }
    let number = || value.parse::<i64>().map_err(|_| bad());
    match field.to_ascii_lowercase().as_str() {
        "x-opt-offset" => match value {
            "-1" => Ok(StartPosition::Earliest),
            "@latest" => Ok(StartPosition::Latest),
            _ => Ok(StartPosition::Offset {
                offset: number()?,
                inclusive,
            }),
        },
        "x-opt-sequence-number" => Ok(StartPosition::Sequence {
            sequence: number()?,
            inclusive,
        }),
        "x-opt-enqueued-time" => Ok(StartPosition::EnqueuedTime {
            millis: number()?,
            inclusive,
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::primitives::Symbol;
    use serde_amqp::described::Described;

    #[test]
    fn parses_sdk_expressions() {
        use StartPosition::*;
        let cases = [
            ("amqp.annotation.x-opt-offset > '-1'", Earliest),
            ("amqp.annotation.x-opt-offset > '@latest'", Latest),
            (
                "amqp.annotation.x-opt-offset >'120'",
                Offset {
                    offset: 120,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-offset >= '120'",
                Offset {
                    offset: 120,
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number >'5'",
                Sequence {
                    sequence: 5,
                    inclusive: false,
                },
            ),
            (
                "amqp.annotation.x-opt-sequence-number>=5",
                Sequence {
                    sequence: 5,
                    inclusive: true,
                },
            ),
            (
                "amqp.annotation.x-opt-enqueued-time > '1700000000000'",
                EnqueuedTime {
                    millis: 1_700_000_000_000,
                    inclusive: false,
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_expression(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "garbage",
            "amqp.annotation.x-opt-offset",
            "amqp.annotation.x-opt-offset < '5'",
            "amqp.annotation.x-opt-sequence-number > 'abc'",
            "amqp.annotation.x-opt-unknown > '1'",
            "amqp.annotation.x-opt-offset > '1' OR 1=1",
        ] {
            assert!(parse_expression(text).is_err(), "{text}");
        }
    }

    #[test]
    fn finds_filter_by_code_or_name() {
        let mut set = FilterSet::new();
        set.insert(
            Symbol::from(SELECTOR_FILTER_NAME),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Code(SELECTOR_FILTER_CODE),
                value: Value::String("amqp.annotation.x-opt-sequence-number > '7'".into()),
            })),
        );
        assert_eq!(
            start_position(Some(&set)),
            Ok(StartPosition::Sequence {
                sequence: 7,
                inclusive: false
            })
        );
        let mut set = FilterSet::new();
        set.insert(
            Symbol::from("my-filter"),
            Value::Described(Box::new(Described {
                descriptor: Descriptor::Name(Symbol::from(SELECTOR_FILTER_NAME)),
                value: Value::String("amqp.annotation.x-opt-offset > '@latest'".into()),
            })),
        );
        assert_eq!(start_position(Some(&set)), Ok(StartPosition::Latest));
        assert_eq!(start_position(None), Ok(StartPosition::Earliest));
    }
}
