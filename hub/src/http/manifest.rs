//! `GET /ai-market/v2/manifest` (and `GET /ai-market/manifest` for v1 clients): the signed
//! federated catalog (spec §3.1), served from memory as the sync task last built it (see
//! [`crate::catalog::manifest`]). `If-None-Match` answers 304; `Accept-Encoding: gzip`
//! gets the precompressed copy.

use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::consistency::CATALOG_VERSION_HEADER;
use crate::http::error::{ApiError, Code};
use crate::http::well_known::if_none_match_hits;
use crate::state::AppState;

/// Path of the v2 manifest.
pub const PATH: &str = "/ai-market/v2/manifest";
/// The v1 path, serving the same document.
pub const V1_PATH: &str = "/ai-market/manifest";
/// Crawlers may reuse the document for a minute; it changes at most once per crawl.
const CACHE_CONTROL: &str = "public, max-age=60";
/// How long a request waits for the very first build (at startup) before a 503.
const FIRST_BUILD_WAIT: Duration = Duration::from_secs(30);

/// Registers both manifest paths.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(PATH).route(web::get().to(get_manifest)))
        .service(web::resource(V1_PATH).route(web::get().to(get_manifest)));
}

/// Whether the client accepts gzip (`gzip`, `x-gzip` or `*` with a non-zero quality).
pub fn accepts_gzip(req: &HttpRequest) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(q > 0.0),
                "*" => any = Some(q > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

async fn get_manifest(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let manifest = match state.catalog.manifest().get() {
        Some(manifest) => manifest,
        None => state
            .catalog
            .manifest()
            .wait(FIRST_BUILD_WAIT)
            .await
            .ok_or_else(|| {
                ApiError::new(
                    Code::Unavailable,
                    "the manifest is being built; retry shortly",
                )
                .with_retry_after(5)
            })?,
    };
    let gzip = accepts_gzip(&req);
    let (etag, body) = if gzip {
        (&manifest.gzip_etag, &manifest.gzip)
    } else {
        (&manifest.etag, &manifest.body)
    };
    let etag_value = HeaderValue::from_str(etag).map_err(ApiError::internal)?;
    let vary = (header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let cache = (
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    let version = (CATALOG_VERSION_HEADER, manifest.version.to_string());
    // Either representation's tag means the client holds this version.
    if if_none_match_hits(&req, &manifest.etag) || if_none_match_hits(&req, &manifest.gzip_etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag_value))
            .insert_header(vary)
            .insert_header(cache)
            .insert_header(version)
            .finish());
    }
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/json")
        .insert_header((header::ETAG, etag_value))
        .insert_header(vary)
        .insert_header(cache)
        .insert_header(version);
    if gzip {
        response.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
    }
    // A large uncompressed body inflates the whole catalog while it streams: a few at once.
    let slot = if gzip {
        None
    } else {
        state
            .catalog
            .manifest()
            .identity_slot(&manifest)
            .ok_or_else(|| {
                ApiError::new(
                    Code::Unavailable,
                    "too many uncompressed manifest downloads at once; send \
                 `Accept-Encoding: gzip` or retry shortly",
                )
                .with_retry_after(5)
            })?
    };
    // The document's shared pieces, streamed with their total length (no copy per request;
    // the identity body's segments are inflated one at a time as the client reads). The
    // slot is released when the stream is dropped (sent or abandoned).
    let pieces = body.stream().map(move |piece| {
        let _held = &slot;
        piece.map_err(|e| {
            tracing::error!(error = %e, "a manifest piece cannot be streamed");
            std::io::Error::other(e.to_string())
        })
    });
    let stream = futures_util::stream::iter(pieces);
    Ok(response.body(SizedStream::new(body.len(), stream)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with(value: &str) -> bool {
        accepts_gzip(
            &TestRequest::default()
                .insert_header(("accept-encoding", value))
                .to_http_request(),
        )
    }

    #[test]
    fn accept_encoding_forms() {
        assert!(with("gzip"));
        assert!(with("br, gzip;q=0.5"));
        assert!(with("*"));
        assert!(with("X-GZIP"));
        assert!(!with("gzip;q=0"));
        assert!(!with("br, deflate"));
        assert!(!with("*, gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }
}
