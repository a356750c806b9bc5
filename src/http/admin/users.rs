//! `/api/v1/users`: create, list, show, update (disable, password, admin). Admins only, except
//! that users may read themselves and change their own password. Changing one's own password
//! (admins too) needs the current one (`current_password`), checked and throttled like a login:
//! a stolen personal token alone cannot take over the account.

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{audit, json, page, parse, require, require_admin, ApiError, ApiResult, Caller, Paging, Path, Query};
use crate::auth::accounts::UserRecord;
use crate::auth::policy::Need;
use crate::auth::service::Authenticated;
use crate::http::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

/// Creates a user (admins).
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = NewUser,
    responses((status = 201, description = "ok", body = super::schema::User))
)]
pub async fn create(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    let new: NewUser = parse(&body)?;
    json(StatusCode::CREATED, create_user(&state, &who, &new.username, &new.password, new.admin).await?)
}

/// Creates a user (admins); audited. The one implementation behind the API and the console.
pub async fn create_user(
    state: &AppState,
    who: &Authenticated,
    username: &str,
    password: &str,
    admin: bool,
) -> Result<UserRecord, ApiError> {
    require_admin(who)?;
    let user = state.auth.create_user(username, password, admin).await?;
    audit(state, who, "user.create", username, None).await;
    Ok(user)
}

/// A page of users (admins).
pub async fn list_users(
    state: &AppState,
    who: &Authenticated,
    after: Option<&str>,
    limit: u32,
    search: Option<&str>,
) -> Result<Vec<UserRecord>, ApiError> {
    require_admin(who)?;
    Ok(state.auth.list_users(after, limit, super::search(search)?).await?)
}

/// Lists users by name (admins).
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(("limit" = Option<u32>, Query, description = "at most this many (1-1000, default 100)"), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("q" = Option<String>, Query, description = "only names that contain this, in any case (at most 128 characters)")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::User>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller, Query(paging): Query<Paging>) -> ApiResult {
    let items = list_users(&state, &who, paging.after.as_deref(), paging.limit(), paging.q.as_deref()).await?;
    page(items, paging.limit(), |u| u.username.clone())
}

/// A user (admins, or the user itself).
#[utoipa::path(
    get,
    path = "/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "the user")),
    responses((status = 200, description = "ok", body = super::schema::User))
)]
pub async fn show(State(state): State<AppState>, Caller(who): Caller, Path(username): Path<String>) -> ApiResult {
    require(&who, &Need::Account(&username))?;
    json(StatusCode::OK, state.auth.user(&username).await?)
}

/// Changes a user: password (one's own needs `current_password`), admin, disabled.
#[utoipa::path(
    patch,
    path = "/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "the user")),
    request_body = UserPatch,
    responses((status = 200, description = "ok", body = super::schema::User))
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(who): Caller,
    client: crate::http::credentials::Client,
    Path(username): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let patch: UserPatch = parse(&body)?;
    json(StatusCode::OK, update_user(&state, &who, client.0, &username, &patch).await?)
}

/// Changes a user (the API's PATCH and the console's forms): a password is the account's own
/// business (one's own change needs the current password, checked and throttled like a login),
/// the admin flag and disabling an administrator's; audited.
pub async fn update_user(
    state: &AppState,
    who: &Authenticated,
    client: std::net::IpAddr,
    username: &str,
    patch: &UserPatch,
) -> Result<UserRecord, ApiError> {
    if patch.password.is_none() && patch.admin.is_none() && patch.disabled.is_none() {
        // (A change of nothing would still end the account's sessions and tokens.)
        return Err(ApiError::invalid("nothing to change: give password, admin or disabled"));
    }
    let only_password = patch.admin.is_none() && patch.disabled.is_none();
    require(who, &if only_password { Need::Account(username) } else { Need::Admin })?;
    let own = who.principal.subject() == username;
    if own && patch.password.is_some() {
        let current = patch.current_password.as_deref().filter(|c| !c.starts_with(crate::auth::service::TOKEN_PREFIX));
        let Some(current) = current else {
            return Err(ApiError::invalid(
                "changing your own password needs current_password (the password, not a token)",
            ));
        };
        match state.auth.login(username, current, client).await {
            Ok(_) => {}
            Err(crate::auth::AuthError::Internal(e)) => return Err(e.into()),
            Err(crate::auth::AuthError::Throttled(_)) => {
                return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "too many failed logins"))
            }
            Err(_) => return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "current_password is not right")),
        }
    }
    if own && patch.disabled == Some(true) {
        return Err(ApiError::invalid("you cannot disable yourself"));
    }
    let user = state.auth.update_user(username, patch.password.as_deref(), patch.admin, patch.disabled).await?;
    audit(state, who, "user.update", username, None).await;
    Ok(user)
}

/// Deletes a user (admins).
#[utoipa::path(
    delete,
    path = "/users/{username}",
    tag = "users",
    params(("username" = String, Path, description = "the user")),
    responses((status = 204, description = "done"))
)]
pub async fn remove(State(state): State<AppState>, Caller(who): Caller, Path(username): Path<String>) -> ApiResult {
    require_admin(&who)?;
    state.auth.delete_user(&username).await?;
    audit(&state, &who, "user.delete", &username, None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
