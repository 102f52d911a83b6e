//! The admin bearer token (`AIMARKET_ADMIN_TOKEN`) as an extractor: add an [`Admin`]
//! argument to a handler and it only runs for the operator.
//!
//! - no token configured: 401 (admin endpoints are off);
//! - no `Authorization: Bearer …` header: 401;
//! - a different token: 403.
//!
//! The comparison is constant-time over SHA-256 digests of both tokens, so neither the
//! content nor the length of the configured token leaks through response timing.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Proof that the request carried the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// Checks `presented` against `configured`; see the module docs for the answers.
pub fn check_admin(configured: Option<&str>, presented: Option<&str>) -> Result<Admin, ApiError> {
    let Some(configured) = configured else {
        return Err(ApiError::unauthorized(
            "admin endpoints are disabled: AIMARKET_ADMIN_TOKEN is not set",
        ));
    };
    let Some(presented) = presented else {
        return Err(ApiError::unauthorized(
            "missing admin credentials: send Authorization: Bearer <token>",
        ));
    };
    let equal = Sha256::digest(configured.as_bytes()).ct_eq(&Sha256::digest(presented.as_bytes()));
    if bool::from(equal) {
        Ok(Admin)
    } else {
        Err(ApiError::forbidden("invalid admin token"))
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// For endpoints open to everyone that do more for the operator (announce): `None` when the
/// request carries no `Authorization` header, else the admin check (401/403 as above), so a
/// wrong token is never silently treated as anonymous.
pub fn admin_if_presented(req: &HttpRequest) -> Result<Option<Admin>, ApiError> {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::internal(std::io::Error::other(
            "AppState is not registered as app data",
        )));
    };
    let configured = state.settings.admin_token.as_ref().map(|t| t.expose());
    check_admin(configured, bearer(req)).map(Some)
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(ApiError::internal(std::io::Error::other(
                "AppState is not registered as app data",
            ))));
        };
        let configured = state.settings.admin_token.as_ref().map(|t| t.expose());
        ready(check_admin(configured, bearer(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError;
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;

    #[test]
    fn answers() {
        let status = |r: Result<Admin, ApiError>| r.err().map(|e| e.status_code());
        assert_eq!(
            status(check_admin(None, Some("t"))),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(check_admin(Some("t"), None)),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(check_admin(Some("t"), Some("u"))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(check_admin(Some("t"), Some("t "))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(status(check_admin(Some("tok"), Some("tok"))), None);
    }

    #[test]
    fn bearer_header_forms() {
        let token = |value: &str| {
            let req = TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request();
            bearer(&req).map(str::to_owned)
        };
        assert_eq!(token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token("bearer  abc ").as_deref(), Some("abc"));
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("Bearer "), None);
        assert_eq!(bearer(&TestRequest::default().to_http_request()), None);
    }
}
