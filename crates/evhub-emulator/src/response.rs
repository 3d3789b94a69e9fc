//! Replies of the request/response nodes (`$cbs`, `$management`).

use crate::message::OpaqueMessage;
use fe2o3_amqp_types::{
    messaging::{AmqpValue, ApplicationProperties, Body, Message, Properties},
    primitives::{OrderedMap, SimpleValue, Value},
};

/// A reply as sent: the body is built by the emulator, so it is a decoded value.
pub(crate) type ReplyMessage = Message<Body<Value>>;

/// A status reply of a node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeResponse {
    pub status: i32,
    pub description: String,
    pub body: Value,
}

impl NodeResponse {
    pub(crate) fn ok(status: i32, body: Value) -> Self {
        Self {
            status,
            description: "OK".into(),
            body,
        }
    }

    pub(crate) fn error(status: i32, description: impl Into<String>) -> Self {
        Self {
            status,
            description: description.into(),
            body: Value::Null,
        }
    }

    /// The reply message, correlated with `request`.
    pub(crate) fn into_message(self, request: &OpaqueMessage) -> ReplyMessage {
        let correlation_id = request
            .properties
            .as_ref()
            .and_then(|p| p.message_id.clone());
        let mut application = OrderedMap::new();
        application.insert("status-code".to_string(), SimpleValue::Int(self.status));
        application.insert(
            "status-description".to_string(),
            SimpleValue::String(self.description),
        );
        Message::builder()
            .properties(Properties {
                correlation_id,
                ..Default::default()
            })
            .application_properties(ApplicationProperties(application))
            .body(Body::Value(AmqpValue(self.body)))
            .build()
    }
}
