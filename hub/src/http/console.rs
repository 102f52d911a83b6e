//! The operator console ("Factory Floor"): plain HTML, CSS and JS embedded in the binary and
//! served at `/` (`/console/console.js`, `/console/console.css`); everything under
//! `/ai-market/*` is untouched. The page only calls the public API, so it grants nothing the
//! API does not: without the admin token it is read-only, and admin actions are the API's
//! POST/DELETE endpoints with the token the operator typed, kept in `sessionStorage`.
//!
//! Every console answer carries [`CSP`]: scripts and styles from this origin only (no inline
//! script, no third-party origin), no framing; the script writes network text with
//! `textContent` only, so a hostile capability description renders as text.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// The console page.
pub const PATH: &str = "/";
/// The console script.
pub const SCRIPT_PATH: &str = "/console/console.js";
/// The console style sheet.
pub const STYLE_PATH: &str = "/console/console.css";

/// Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

const INDEX: &str = include_str!("../../assets/console/index.html");
const SCRIPT: &str = include_str!("../../assets/console/console.js");
const STYLE: &str = include_str!("../../assets/console/console.css");

/// Registers the console's three files (GET only: it has no state of its own).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(PATH).route(web::get().to(|| asset(INDEX, "text/html; charset=utf-8"))),
    )
    .service(
        web::resource(SCRIPT_PATH)
            .route(web::get().to(|| asset(SCRIPT, "text/javascript; charset=utf-8"))),
    )
    .service(
        web::resource(STYLE_PATH).route(web::get().to(|| asset(STYLE, "text/css; charset=utf-8"))),
    );
}

async fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Assets change with the binary; revalidating is cheap and avoids a stale console.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        assert!(CSP.starts_with("default-src 'self'"));
        assert!(!CSP.contains("unsafe-inline"));
        assert!(INDEX.contains(SCRIPT_PATH) && INDEX.contains(STYLE_PATH));
        // No inline script or handler attribute in the page; no innerHTML in the script.
        assert!(!INDEX.contains("<script>") && !INDEX.contains(" onclick="));
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML"));
        assert!(!INDEX.contains("http://") && !INDEX.contains("https://"));
    }
}
