//! `$management` READ of hub and partition properties, with the AMQP types the
//! SDKs expect (an array of strings for `partition_ids`, longs, timestamps).

use crate::{
    broker::{covers, Broker, ConnectionAuth},
    hub::Hub,
    message::{property, OpaqueMessage},
    response::NodeResponse,
};
use fe2o3_amqp_types::primitives::{Array, OrderedMap, Timestamp, Value};

pub(crate) const EVENTHUB_TYPE: &str = "com.microsoft:eventhub";
pub(crate) const PARTITION_TYPE: &str = "com.microsoft:partition";

fn authorized(request: &OpaqueMessage, broker: &Broker, auth: &ConnectionAuth, hub: &str) -> bool {
    if broker.no_auth {
        return true;
    }
    let hub_path = hub.to_ascii_lowercase();
    let by_token = property(request, "security_token")
        .and_then(|token| broker.verify_token(&token).ok())
        .is_some_and(|(scope, _)| covers(&scope, &hub_path));
    by_token || auth.allows(&hub_path)
}

/// Handles one `$management` request.
pub(crate) fn handle(
    request: &OpaqueMessage,
    broker: &Broker,
    auth: &ConnectionAuth,
) -> NodeResponse {
    let operation = property(request, "operation").unwrap_or_default();
    if operation != "READ" {
        return NodeResponse::error(400, format!("Operation {operation:?} is not supported."));
    }
    let Some(name) = property(request, "name") else {
        return NodeResponse::error(400, "READ needs a 'name' application property.");
    };
    if !authorized(request, broker, auth, &name) {
        return NodeResponse::error(
            401,
            "Unauthorized: missing, expired or invalid security token.",
        );
    }
    let not_found = || {
        NodeResponse::error(
            404,
            format!("The messaging entity '{name}' could not be found."),
        )
    };
    let Some(hub) = broker.hubs.resolve(&name) else {
        return not_found();
    };
    match property(request, "type").as_deref() {
        Some(EVENTHUB_TYPE) => NodeResponse::ok(200, hub_properties(&hub)),
        Some(PARTITION_TYPE) => {
            let Some(partition) = property(request, "partition") else {
                return NodeResponse::error(400, "Partition READ needs a 'partition' property.");
            };
            match partition_properties(&hub, &partition) {
                Some(body) => NodeResponse::ok(200, body),
                None => NodeResponse::error(
                    404,
                    format!("The partition '{partition}' of '{name}' could not be found."),
                ),
            }
        }
        other => NodeResponse::error(400, format!("Entity type {other:?} is not supported.")),
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut map = OrderedMap::new();
    for (key, value) in entries {
        map.insert(Value::String(key.to_string()), value);
    }
    Value::Map(map)
}

fn hub_properties(hub: &Hub) -> Value {
    let ids: Vec<Value> = hub.partition_ids().into_iter().map(Value::String).collect();
    map(vec![
        ("name", Value::String(hub.name.clone())),
        (
            "created_at",
            Value::Timestamp(Timestamp::from_milliseconds(hub.created_ms)),
        ),
        ("partition_count", Value::Int(hub.partitions.len() as i32)),
        ("partition_ids", Value::Array(Array::from(ids))),
    ])
}

fn partition_properties(hub: &Hub, partition: &str) -> Option<Value> {
    let snapshot = hub.partition(partition)?.snapshot();
    Some(map(vec![
        ("type", Value::String(PARTITION_TYPE.to_string())),
        ("name", Value::String(hub.name.clone())),
        ("partition", Value::String(partition.to_string())),
        (
            "begin_sequence_number",
            Value::Long(snapshot.begin_sequence),
        ),
        (
            "last_enqueued_sequence_number",
            Value::Long(snapshot.last_sequence),
        ),
        (
            "last_enqueued_offset",
            Value::String(snapshot.last_offset.to_string()),
        ),
        (
            "last_enqueued_time_utc",
            Value::Timestamp(Timestamp::from_milliseconds(snapshot.last_enqueued_ms)),
        ),
        ("is_partition_empty", Value::Bool(snapshot.is_empty)),
        ("last_enqueued_sequence_number_epoch", Value::Long(0)),
    ]))
}
