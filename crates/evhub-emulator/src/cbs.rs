//! `$cbs` put-token: checks SAS tokens and records what the connection may use.

use crate::{
    broker::{covers, Broker, ConnectionAuth},
    message::{body_text, property, OpaqueMessage},
    response::NodeResponse,
    sas,
};
use fe2o3_amqp_types::primitives::Value;

pub(crate) const SAS_TOKEN_TYPE: &str = "servicebus.windows.net:sastoken";

/// Handles one `$cbs` request; 202 on success, 401 for a refused token.
pub(crate) fn put_token(
    request: &OpaqueMessage,
    broker: &Broker,
    auth: &ConnectionAuth,
) -> NodeResponse {
    if property(request, "operation").as_deref() != Some("put-token") {
        return NodeResponse::error(400, "The $cbs node only supports the put-token operation.");
    }
    let Some(name) = property(request, "name") else {
        return NodeResponse::error(400, "put-token needs a 'name' application property.");
    };
    let Some(token) = body_text(request) else {
        return NodeResponse::error(400, "put-token needs the token as a string body.");
    };
    let name_path = sas::resource_path(&name);
    if broker.no_auth {
        auth.grant(name_path, i64::MAX);
        return NodeResponse::ok(202, Value::Null);
    }
    let token_type = property(request, "type").unwrap_or_default();
    if token_type != SAS_TOKEN_TYPE {
        return NodeResponse::error(
            401,
            format!(
                "Token type {token_type:?} is not accepted; the emulator checks SAS tokens only."
            ),
        );
    }
    match broker.verify_token(&token) {
        Ok((scope, expires_at)) if covers(&scope, &name_path) => {
            auth.grant(scope, expires_at);
            NodeResponse::ok(202, Value::Null)
        }
        Ok((scope, _)) => NodeResponse::error(
            401,
            format!("InvalidAudience: the token is for '{scope}', not for '{name_path}'."),
        ),
        Err(error) => {
            tracing::info!(%error, resource = %name_path, "put-token refused");
            NodeResponse::error(401, format!("Unauthorized: {error}."))
        }
    }
}
