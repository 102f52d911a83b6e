//! Read-your-writes on the wire.
//!
//! Write answers (crawl, announce by the operator, approve, remove, repin, seeds) wait by
//! default until search and the manifest show the write (`crate::catalog::Catalog::settle`)
//! and carry `catalog_version` (the version both show) and `catalog_caught_up` (false when
//! the bounded wait ran out); `?wait=false` answers at once without them. Search and the
//! manifest carry the version they answer from in [`CATALOG_VERSION_HEADER`], so a client can
//! tell that an answer already includes its write (`header >= catalog_version`).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog::Settled;

/// The catalog version an answer reflects.
pub const CATALOG_VERSION_HEADER: &str = "x-aimarket-catalog-version";

/// `?wait=true|false` of write endpoints (default true).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// Wait until search and the manifest show the write.
    #[serde(default = "waits_by_default")]
    pub wait: bool,
}

fn waits_by_default() -> bool {
    true
}

/// A JSON answer with `status`, plus the settled catalog version when there is one (fields
/// and header, see the module docs).
pub fn answer(status: StatusCode, mut body: Value, settled: Option<Settled>) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    if let Some(settled) = settled {
        body["catalog_version"] = json!(settled.catalog_version);
        body["catalog_caught_up"] = json!(settled.caught_up);
        if let Some(version) = settled.catalog_version {
            response.insert_header((CATALOG_VERSION_HEADER, version.to_string()));
        }
    }
    response.json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_answers_carry_the_version() {
        let settled = Settled {
            catalog_version: Some(12),
            caught_up: true,
        };
        let response = answer(StatusCode::OK, json!({"a": 1}), Some(settled));
        let header = response.headers().get(CATALOG_VERSION_HEADER);
        assert_eq!(header.and_then(|v| v.to_str().ok()), Some("12"));
        let response = answer(StatusCode::OK, json!({"a": 1}), None);
        assert!(response.headers().get(CATALOG_VERSION_HEADER).is_none());
    }
}
