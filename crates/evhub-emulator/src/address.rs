//! Link addresses: which hub, consumer group and partition a link names.
//!
//! Accepted forms: `amqps://<fqdn>/<hub>[/Partitions/<n>]`,
//! `amqps://<fqdn>/<hub>/ConsumerGroups/<group>/Partitions/<n>`, the same
//! with `amqp://` or `sb://`, and the bare path without scheme and host.

/// A parsed entity address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntityAddress {
    pub hub: String,
    pub consumer_group: Option<String>,
    pub partition: Option<String>,
}

/// Reasons an address does not name an Event Hubs entity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressError {
    #[error("link has no address")]
    Missing,
    #[error("address {0:?} does not name an event hub entity")]
    Unrecognised(String),
}

/// Strips scheme and host: `amqps://ns/hub/x` → `hub/x`.
pub(crate) fn entity_path(address: &str) -> &str {
    let path = match address.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => address,
    };
    path.trim_matches('/')
}

pub(crate) fn parse(address: Option<&str>) -> Result<EntityAddress, AddressError> {
    let address = address.ok_or(AddressError::Missing)?;
    let path = entity_path(address);
    let parts: Vec<&str> = path.split('/').collect();
    let bad = || AddressError::Unrecognised(address.to_string());
    let is = |s: &str, word: &str| s.eq_ignore_ascii_case(word);
    let non_empty = |s: &str| {
        if s.is_empty() {
            Err(bad())
        } else {
            Ok(s.to_string())
        }
    };
    match parts.as_slice() {
        [hub] => Ok(EntityAddress {
            hub: non_empty(hub)?,
            consumer_group: None,
            partition: None,
        }),
        [hub, p, id] if is(p, "partitions") => Ok(EntityAddress {
            hub: non_empty(hub)?,
            consumer_group: None,
            partition: Some(non_empty(id)?),
        }),
        [hub, c, group, p, id] if is(c, "consumergroups") && is(p, "partitions") => {
            Ok(EntityAddress {
                hub: non_empty(hub)?,
                consumer_group: Some(non_empty(group)?),
                partition: Some(non_empty(id)?),
            })
        }
        _ => Err(bad()),
    }
}

/// The request/response nodes the emulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Cbs,
    Management,
}

impl NodeKind {
    /// `$cbs` / `$management`, bare or as the last path segment of an address.
    pub(crate) fn from_address(address: &str) -> Option<Self> {
        let last = entity_path(address).rsplit('/').next().unwrap_or_default();
        if last.eq_ignore_ascii_case("$cbs") {
            Some(Self::Cbs)
        } else if last.eq_ignore_ascii_case("$management") {
            Some(Self::Management)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        let a = parse(Some("amqps://ns.servicebus.windows.net/hub")).unwrap();
        assert_eq!((a.hub.as_str(), a.partition), ("hub", None));
        let a = parse(Some("amqp://127.0.0.1:5672/hub/Partitions/3")).unwrap();
        assert_eq!(a.partition.as_deref(), Some("3"));
        let a = parse(Some("sb://h/hub/ConsumerGroups/$Default/Partitions/0")).unwrap();
        assert_eq!(a.consumer_group.as_deref(), Some("$Default"));
        assert_eq!(a.partition.as_deref(), Some("0"));
        let a = parse(Some("hub")).unwrap();
        assert_eq!(a.hub, "hub");
    }

    #[test]
    fn rejects_other_shapes() {
        assert_eq!(parse(None), Err(AddressError::Missing));
        assert!(parse(Some("amqp://h/")).is_err());
        assert!(parse(Some("amqp://h/hub/Other/1")).is_err());
        assert!(parse(Some("hub/ConsumerGroups/g")).is_err());
    }

    #[test]
    fn node_addresses() {
        assert_eq!(NodeKind::from_address("$cbs"), Some(NodeKind::Cbs));
        assert_eq!(
            NodeKind::from_address("$management"),
            Some(NodeKind::Management)
        );
        assert_eq!(
            NodeKind::from_address("amqps://ns/hub/$management"),
            Some(NodeKind::Management)
        );
        assert_eq!(NodeKind::from_address("hub"), None);
    }
}
