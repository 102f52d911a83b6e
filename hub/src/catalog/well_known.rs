//! The cache of the signed well-known document (`GET /.well-known/ai-market.json`): peers
//! fetch it on a timer, so it is rendered and signed once per catalog generation. It lives
//! with the catalog (not the HTTP layer that serves it) because the hub state owns it.

use std::sync::{Arc, RwLock};

use bytes::Bytes;

/// A signed document ready to serve.
#[derive(Debug)]
pub struct Rendered {
    /// Catalog generation it was rendered at.
    pub generation: u64,
    /// The exact response body.
    pub body: Bytes,
    /// Strong entity tag (quoted) derived from the body.
    pub etag: String,
}

/// The last rendered document, replaced when the catalog generation moves on.
#[derive(Debug, Default)]
pub struct WellKnownCache {
    current: RwLock<Option<Arc<Rendered>>>,
}

impl WellKnownCache {
    /// The cached document when it was rendered at `generation`.
    pub fn get(&self, generation: u64) -> Option<Arc<Rendered>> {
        // A poisoned lock only means a panic elsewhere while holding it; the value is an
        // immutable Arc, so it is still sound to read or replace.
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|r| r.generation == generation)
            .cloned()
    }

    /// Caches `rendered` unless a newer render is already cached.
    pub fn put(&self, rendered: Arc<Rendered>) {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        // Never replace a newer render with an older one (two renders can race).
        if guard
            .as_ref()
            .is_none_or(|r| r.generation <= rendered.generation)
        {
            *guard = Some(rendered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(generation: u64) -> Arc<Rendered> {
        Arc::new(Rendered {
            generation,
            body: Bytes::from(generation.to_string()),
            etag: format!("\"{generation}\""),
        })
    }

    #[test]
    fn only_the_current_generation_is_served_and_never_an_older_render() {
        let cache = WellKnownCache::default();
        assert!(cache.get(0).is_none());
        cache.put(rendered(2));
        assert_eq!(cache.get(2).expect("generation 2 is cached").etag, "\"2\"");
        assert!(cache.get(3).is_none(), "a newer generation is re-rendered");
        // A render that raced and finished late does not replace the newer one.
        cache.put(rendered(1));
        assert_eq!(
            cache.get(2).expect("generation 2 is cached").body,
            Bytes::from("2")
        );
        cache.put(rendered(3));
        assert!(cache.get(2).is_none());
        assert!(cache.get(3).is_some());
    }
}
