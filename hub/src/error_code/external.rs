//! [`ErrorCode`] for the errors of the workspace's lower crates (protocol, plugins), which
//! know nothing of this hub's codes.

use aimarket_plugins::RouteError;
use aimarket_protocol::error::ProtocolError;

use super::{ApiError, Code, ErrorCode};

impl ErrorCode for ProtocolError {
    /// A protocol error is always about a document the client sent: 400 with its message
    /// and the protocol's own `reason`.
    fn wire_code(&self) -> Code {
        Code::InvalidDocument
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        api.with_field("reason", self.code())
    }
}

impl ErrorCode for RouteError {
    /// Plugin routes: no such plugin or path 404, wrong method 405, a panicking handler 500,
    /// one that did not answer in time 503 `plugin_unavailable` (the code's one status).
    fn wire_code(&self) -> Code {
        match self {
            Self::NotFound(_) => Code::NotFound,
            Self::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            Self::Panicked { .. } => Code::InternalError,
            Self::TimedOut { .. } => Code::PluginUnavailable,
        }
    }

    fn decorate(&self, api: ApiError) -> ApiError {
        match self {
            Self::MethodNotAllowed { allowed } => api.with_field("allowed", allowed.clone()),
            // Like every `plugin_unavailable`: which plugin, and a retry hint.
            Self::TimedOut { plugin, .. } => {
                api.with_field("plugin", plugin.clone()).with_retry_after(1)
            }
            _ => api,
        }
    }
}
