//! The typed per-request context threaded through every hook of one request.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Per-request state shared by all hooks of one search or one invoke, in the spirit of
/// pingora's `ProxyHttp::CTX`: no globals, no thread-locals.
///
/// The hub creates one context per request and passes the same value to every hook of that
/// request (for an invoke: `route`, then `before_invoke`, `after_invoke`,
/// `receipt_extension`), so a plugin can leave typed state in [`PluginContext::extensions_mut`]
/// during `before_invoke` and read it back in `after_invoke`.
#[derive(Debug)]
pub struct PluginContext {
    /// The request id (the hub's `X-Request-Id`, echoed in logs and webhook calls).
    pub request_id: String,
    /// The authenticated client (API key id or channel id), when the hub knows one.
    pub client_id: Option<String>,
    /// This hub's public URL (no trailing slash).
    pub hub_url: Arc<str>,
    deadline: Option<Instant>,
    extensions: Extensions,
}

impl PluginContext {
    /// A context for one request.
    pub fn new(request_id: impl Into<String>, hub_url: impl Into<Arc<str>>) -> Self {
        Self {
            request_id: request_id.into(),
            client_id: None,
            hub_url: hub_url.into(),
            deadline: None,
            extensions: Extensions::default(),
        }
    }

    /// Sets the client id.
    #[must_use]
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// When the running hook's budget runs out. Set by the registry before each budgeted hook
    /// call and cleared after it; `None` outside a budgeted hook. A plugin that does I/O
    /// should bound it by [`PluginContext::remaining`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left in the running hook's budget (`Duration::MAX` outside a budgeted hook).
    pub fn remaining(&self) -> Duration {
        self.deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        })
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Typed state attached to this request.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Typed state attached to this request, mutable.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

/// A small map from type to value. Each plugin keys its state by a private type of its own,
/// so plugins cannot collide or read each other's state by accident.
///
/// Empty maps allocate nothing: most requests carry no plugin state.
#[derive(Default)]
pub struct Extensions {
    map: Option<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.len())
            .finish()
    }
}

impl Extensions {
    /// Stores `value`, returning the previous value of that type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        self.map
            .get_or_insert_with(HashMap::new)
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast::<T>().ok().map(|b| *b))
    }

    /// The value of type `T`, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.map
            .as_ref()?
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
    }

    /// The value of type `T`, mutable.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.map
            .as_mut()?
            .get_mut(&TypeId::of::<T>())
            .and_then(|b| b.downcast_mut::<T>())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        self.map
            .as_mut()?
            .remove(&TypeId::of::<T>())
            .and_then(|b| b.downcast::<T>().ok().map(|b| *b))
    }

    /// Number of stored values.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, HashMap::len)
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Started(u32);
    #[derive(Debug, PartialEq)]
    struct Other(&'static str);

    #[test]
    fn extensions_are_keyed_by_type() {
        let mut ctx = PluginContext::new("req-1", "https://hub.example");
        assert!(ctx.extensions().is_empty());
        assert_eq!(ctx.extensions_mut().insert(Started(1)), None);
        assert_eq!(ctx.extensions_mut().insert(Other("x")), None);
        assert_eq!(ctx.extensions_mut().insert(Started(2)), Some(Started(1)));
        assert_eq!(ctx.extensions().get::<Started>(), Some(&Started(2)));
        if let Some(s) = ctx.extensions_mut().get_mut::<Started>() {
            s.0 += 1;
        }
        assert_eq!(ctx.extensions_mut().remove::<Started>(), Some(Started(3)));
        assert_eq!(ctx.extensions().get::<Started>(), None);
        assert_eq!(ctx.extensions().get::<Other>(), Some(&Other("x")));
        assert_eq!(ctx.extensions().len(), 1);
    }

    #[test]
    fn remaining_is_unbounded_outside_a_hook() {
        let ctx = PluginContext::new("r", "h").with_client_id("c");
        assert_eq!(ctx.remaining(), Duration::MAX);
        assert_eq!(ctx.deadline(), None);
        assert_eq!(ctx.client_id.as_deref(), Some("c"));
    }
}
