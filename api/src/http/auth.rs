//! Who is calling: the bearer token, and whether its scope allows the
//! call. Handlers take [`Reader`], [`Writer`] or [`Admin`] as an argument,
//! so the scope a route needs is in its signature.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};

use crate::config::{ApiToken, Scope};
use crate::http::{ApiError, AppState};

/// The token of `Authorization: Bearer <token>`, trimmed; `what` names
/// the kind of token in the error.
pub fn bearer<'a>(headers: &'a HeaderMap, what: &str) -> Result<&'a str, ApiError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                format!("send `Authorization: Bearer <{what}>`"),
            )
        })
}

/// Checks the bearer token and its scope.
fn authorize(state: &AppState, headers: &HeaderMap, needed: Scope) -> Result<ApiToken, ApiError> {
    let presented = bearer(headers, "token")?;
    let token = state
        .config
        .token(presented)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
    if token.scope < needed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this needs a {needed:?} token; {}'s is {:?}",
                token.user, token.scope
            )
            .to_lowercase(),
        ));
    }
    Ok(token.clone())
}

macro_rules! scoped {
    ($(#[$doc:meta] $name:ident => $scope:expr;)*) => {$(
        #[$doc]
        pub struct $name(pub ApiToken);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                authorize(state, &parts.headers, $scope).map($name)
            }
        }
    )*};
}

scoped! {
    /// A token that may read.
    Reader => Scope::Read;
    /// A token that may change things (start, cancel, request, decide).
    Writer => Scope::Write;
    /// An administrator's token.
    Admin => Scope::Admin;
}
