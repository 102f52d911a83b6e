//! The search query string (`GET /ai-market/v2/search?…`), parsed exactly as the handler does.
//! Whatever it accepts must be within the documented bounds.
#![no_main]

use aimarket_hub::catalog::params::{MAX_LIMIT, MAX_OFFSET, SearchParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|query: &str| {
    if let Ok(p) = SearchParams::parse(query, "https://hub.example.com") {
        assert!(p.limit <= MAX_LIMIT && p.offset <= MAX_OFFSET, "{query:?}");
        assert!(p.budget.is_none_or(f64::is_finite), "{query:?}");
        assert!(p.min_trust.is_none_or(f64::is_finite), "{query:?}");
    }
});
