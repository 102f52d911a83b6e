//! Framework-neutral HTTP routes a plugin can expose. The hub mounts them under
//! `/ai-market/v2/p/<plugin name>/` and dispatches with [`crate::Registry::dispatch`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

/// HTTP methods a plugin route can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Parses a method name (case-insensitive); `None` for methods routes cannot declare.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Get, Self::Post, Self::Put, Self::Patch, Self::Delete]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
    }
}

/// A request to a plugin route.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    /// Method.
    pub method: Method,
    /// Path below the plugin's mount point, starting with `/` (`/stats` for
    /// `/ai-market/v2/p/<name>/stats`).
    pub path: String,
    /// Raw query string without the `?` (may be empty).
    pub query: String,
    /// Request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Request body (the hub caps its size before dispatch).
    pub body: Bytes,
}

impl PluginRequest {
    /// The first header with that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A plugin route's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

impl PluginResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(value.to_string()),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::from(text.into()),
        }
    }
}

/// The boxed future a route handler returns.
pub type RouteFuture = Pin<Box<dyn Future<Output = PluginResponse> + Send + 'static>>;
/// A route handler.
pub type RouteHandler = Arc<dyn Fn(PluginRequest) -> RouteFuture + Send + Sync>;

/// One route: method, sub-path and handler.
///
/// `path` starts with `/` and uses only `A-Z a-z 0-9 - _ . ~ /`; it matches exactly, or, when
/// it ends in `/*`, matches that prefix and anything below it.
#[derive(Clone)]
pub struct PluginRoute {
    /// Method.
    pub method: Method,
    /// Sub-path below `/ai-market/v2/p/<name>`.
    pub path: String,
    /// Handler.
    pub handler: RouteHandler,
}

impl std::fmt::Debug for PluginRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRoute")
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PluginRoute {
    /// A route from an async closure.
    pub fn new<F, Fut>(method: Method, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(PluginRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PluginResponse> + Send + 'static,
    {
        Self {
            method,
            path: path.into(),
            handler: Arc::new(move |req| Box::pin(handler(req))),
        }
    }

    /// True when `path` is a well-formed route path (see the type docs).
    pub fn path_is_valid(path: &str) -> bool {
        let body = path.strip_suffix("/*").unwrap_or(path);
        path.starts_with('/')
            && !path.contains("//")
            && !body.split('/').any(|seg| seg == "." || seg == "..")
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~/".contains(&b))
    }

    /// True when this route's path matches `path` (method not considered).
    pub fn matches_path(&self, path: &str) -> bool {
        match self.path.strip_suffix("/*") {
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            None => self.path == path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_validation() {
        assert!(PluginRoute::path_is_valid("/stats"));
        assert!(PluginRoute::path_is_valid("/a/b-c_d.e~f"));
        assert!(PluginRoute::path_is_valid("/files/*"));
        assert!(PluginRoute::path_is_valid("/"));
        assert!(!PluginRoute::path_is_valid("stats"));
        assert!(!PluginRoute::path_is_valid("/a/../b"));
        assert!(!PluginRoute::path_is_valid("/a//b"));
        assert!(!PluginRoute::path_is_valid("/a?b"));
        assert!(!PluginRoute::path_is_valid("/a/*/b"));
    }

    #[test]
    fn exact_and_prefix_matching() {
        let exact = PluginRoute::new(Method::Get, "/stats", |_| async {
            PluginResponse::text(200, "ok")
        });
        assert!(exact.matches_path("/stats"));
        assert!(!exact.matches_path("/stats/x"));
        let prefix = PluginRoute::new(Method::Get, "/files/*", |_| async {
            PluginResponse::text(200, "ok")
        });
        assert!(prefix.matches_path("/files"));
        assert!(prefix.matches_path("/files/a/b"));
        assert!(!prefix.matches_path("/filesx"));
    }

    #[test]
    fn methods_and_headers() {
        assert_eq!(Method::parse("post"), Some(Method::Post));
        assert_eq!(Method::parse("HEAD"), None);
        let req = PluginRequest {
            method: Method::Get,
            path: "/".into(),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"{\"a\":1}"),
        };
        assert_eq!(req.header("Content-Type"), Some("application/json"));
        let v: serde_json::Value = req.json().unwrap_or_default();
        assert_eq!(v["a"], 1);
    }
}
