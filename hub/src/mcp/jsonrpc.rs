//! JSON-RPC 2.0 framing: what a POSTed body contains and how answers are written.

use serde_json::{Map, Value, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub const INTERNAL_ERROR: i64 = -32603;

/// Largest batch accepted.
pub const MAX_BATCH: usize = 32;

/// One incoming message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that wants an answer.
    Request {
        /// The id, echoed in the answer (a string or a number).
        id: Value,
        /// The method.
        method: String,
        /// `params`, if any.
        params: Option<Value>,
    },
    /// A call without an id: never answered.
    Notification {
        /// The method.
        method: String,
    },
    /// A client's answer to a server request (this server sends none; ignored).
    Response,
    /// Not a valid message: answered with this error (`id` when one could be read).
    Invalid {
        /// The id, or `null`.
        id: Value,
        /// What is wrong.
        message: String,
    },
}

/// The body as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One message.
    Single(Message),
    /// A batch of 1 to [`MAX_BATCH`] messages.
    Batch(Vec<Message>),
}

/// Why a body is refused as a whole (answered with one error with `id: null`).
#[derive(Debug, Clone, PartialEq)]
pub struct BodyError {
    /// [`PARSE_ERROR`] or [`INVALID_REQUEST`].
    pub code: i64,
    /// What is wrong.
    pub message: String,
}

/// Parses a POSTed body.
pub fn parse(body: &[u8]) -> Result<Body, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyError {
        code: PARSE_ERROR,
        message: format!("Parse error: {e}"),
    })?;
    match value {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(BodyError {
                    code: INVALID_REQUEST,
                    message: format!("Invalid Request: a batch holds 1 to {MAX_BATCH} messages"),
                });
            }
            Ok(Body::Batch(items.into_iter().map(classify).collect()))
        }
        other => Ok(Body::Single(classify(other))),
    }
}

/// A usable id: a string, an integer or a finite number (`null` is allowed by JSON-RPC but
/// not by MCP, which never sends it).
fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_)) || id.as_f64().is_some_and(f64::is_finite)
}

fn classify(value: Value) -> Message {
    let Value::Object(mut object) = value else {
        return Message::Invalid {
            id: Value::Null,
            message: "Invalid Request: a message must be a JSON object".into(),
        };
    };
    let id = object.remove("id");
    let readable_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Message::Invalid {
            id: readable_id,
            message: "Invalid Request: `jsonrpc` must be \"2.0\"".into(),
        };
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => {
            return Message::Invalid {
                id: readable_id,
                message: "Invalid Request: `method` must be a string".into(),
            };
        }
        None if id.is_some() && (object.contains_key("result") || object.contains_key("error")) => {
            return Message::Response;
        }
        None => {
            return Message::Invalid {
                id: readable_id,
                message: "Invalid Request: `method` is missing".into(),
            };
        }
    };
    let params = object.remove("params");
    if params
        .as_ref()
        .is_some_and(|p| !p.is_object() && !p.is_array())
    {
        return Message::Invalid {
            id: readable_id,
            message: "Invalid Request: `params` must be an object or an array".into(),
        };
    }
    match id {
        None => Message::Notification { method },
        Some(id) if valid_id(&id) => Message::Request { id, method, params },
        Some(_) => Message::Invalid {
            id: Value::Null,
            message: "Invalid Request: `id` must be a string or a number".into(),
        },
    }
}

/// A success answer.
pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error answer.
pub fn error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

/// An error answer with `data`.
pub fn error_with_data(id: Value, code: i64, message: impl Into<String>, data: Value) -> Value {
    let mut answer = error(id, code, message);
    answer["error"]["data"] = data;
    answer
}

/// `params` as an object (`{}` when absent); an array is refused.
pub fn params_object(params: Option<Value>) -> Result<Map<String, Value>, String> {
    match params {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err("`params` must be an object".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn classifies_messages() {
        let one = |v: Value| match parse(v.to_string().as_bytes()).unwrap() {
            Body::Single(m) => m,
            Body::Batch(_) => panic!("not a batch"),
        };
        assert_eq!(
            one(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
            Message::Request {
                id: json!(1),
                method: "ping".into(),
                params: None
            }
        );
        assert_eq!(
            one(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Message::Notification {
                method: "notifications/initialized".into()
            }
        );
        assert_eq!(
            one(json!({"jsonrpc": "2.0", "id": "a", "result": {}})),
            Message::Response
        );
        assert!(
            matches!(one(json!({"jsonrpc": "1.0", "id": 1, "method": "x"})), Message::Invalid { id, .. } if id == json!(1))
        );
        assert!(matches!(
            one(json!({"jsonrpc": "2.0", "id": {}, "method": "x"})),
            Message::Invalid { .. }
        ));
        assert!(matches!(
            one(json!({"jsonrpc": "2.0", "id": 2, "method": "x", "params": 3})),
            Message::Invalid { .. }
        ));
    }

    #[test]
    fn refuses_bad_bodies() {
        assert_eq!(parse(b"{oops").unwrap_err().code, PARSE_ERROR);
        assert_eq!(parse(b"[]").unwrap_err().code, INVALID_REQUEST);
        let big = Value::Array(vec![
            json!({"jsonrpc": "2.0", "method": "n"});
            MAX_BATCH + 1
        ]);
        assert_eq!(
            parse(big.to_string().as_bytes()).unwrap_err().code,
            INVALID_REQUEST
        );
        match parse(b"[1, {\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}]").unwrap() {
            Body::Batch(items) => {
                assert!(matches!(items[0], Message::Invalid { .. }));
                assert!(matches!(items[1], Message::Request { .. }));
            }
            Body::Single(_) => panic!("a batch"),
        }
    }
}
