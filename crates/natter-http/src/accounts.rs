//! Handlers for accounts, sessions, the profile, the directory and
//! contacts.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use natter_core::LoginContext;
use natter_proto as p;
use natter_types::{ContactGroups, ContactName, DisplayName, Password, SessionId, Username};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{
    ApiJson, ApiPath, ApiQuery, Auth, ClientIp, OptionalJson, UserAgent, username,
};

/// `POST /api/v1/accounts`: sign up.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = p::SignUpRequest,
    responses(
        (status = 201, description = "Account created", body = p::User),
        (status = 400, description = "Invalid field", body = p::ErrorResponse),
        (status = 403, description = "Registration is closed (`registration_closed`)", body = p::ErrorResponse),
        (status = 409, description = "Username taken (`username_taken`)", body = p::ErrorResponse),
    ))]
pub async fn sign_up(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<p::SignUpRequest>,
) -> ApiResult<(StatusCode, Json<p::User>)> {
    let name = username("username", &req.username)?;
    let password = Password::parse_new("password", &req.password)?;
    let display = req
        .display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()?;
    let user = s.hub.sign_up(name, password, display).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// `POST /api/v1/sessions`: log in.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "accounts",
    request_body = p::LogInRequest,
    responses(
        (status = 201, description = "Logged in", body = p::LogInResponse),
        (status = 401, description = "Wrong username or password (`invalid_credentials`)", body = p::ErrorResponse),
        (status = 429, description = "Too many failed log-ins from this IP; see `Retry-After`", body = p::ErrorResponse),
    ))]
pub async fn log_in(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(user_agent): UserAgent,
    ApiJson(req): ApiJson<p::LogInRequest>,
) -> ApiResult<(StatusCode, Json<p::LogInResponse>)> {
    let password = Password::parse_any("password", &req.password)?;
    // A name that cannot exist fails like a wrong password, so that the
    // answer does not reveal which of the two was wrong.
    let name = Username::parse(&req.username)
        .map_err(|_| ApiError::from(natter_core::CoreError::BadCredentials))?;
    let out = s
        .hub
        .log_in(&name, password, LoginContext { ip, user_agent })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(p::LogInResponse {
            token: out.token,
            expires_at: out.session.expires_at,
            session_id: out.session.id.0,
            user: out.user.into(),
        }),
    ))
}

/// `GET /api/v1/sessions`: the caller's active sessions.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = p::SessionList), (status = 401, body = p::ErrorResponse)))]
pub async fn list_sessions(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<p::SessionList>> {
    let sessions = s.hub.sessions(&caller).await?;
    Ok(Json(p::SessionList {
        sessions: sessions
            .into_iter()
            .map(|x| p::Session::new(x, caller.session))
            .collect(),
    }))
}

/// `DELETE /api/v1/sessions/current`: log out.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, body = p::ErrorResponse)))]
pub async fn log_out(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<StatusCode> {
    s.hub.log_out(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/sessions/{id}`: revoke one of the caller's sessions.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = p::ErrorResponse)))]
pub async fn revoke_session(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    s.hub.revoke_session(&caller, SessionId(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/me`: the caller's profile.
#[utoipa::path(get, path = "/api/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = p::User), (status = 401, body = p::ErrorResponse)))]
pub async fn me(Auth(caller): Auth) -> Json<p::User> {
    Json(caller.user.into())
}

/// `PATCH /api/v1/me`: update the caller's profile.
#[utoipa::path(patch, path = "/api/v1/me", tag = "accounts", security(("bearer" = [])),
    request_body = p::UpdateProfileRequest,
    responses((status = 200, body = p::User), (status = 400, body = p::ErrorResponse)))]
pub async fn update_me(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<p::UpdateProfileRequest>,
) -> ApiResult<Json<p::User>> {
    let user = match req.display_name {
        None => caller.user.clone(),
        Some(name) => {
            let name = name.as_deref().map(DisplayName::parse).transpose()?;
            s.hub.set_display_name(&caller, name).await?
        }
    };
    Ok(Json(user.into()))
}

/// `PUT /api/v1/me/password`: change the password; other sessions are
/// revoked.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "accounts", security(("bearer" = [])),
    request_body = p::ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; every other session is revoked"),
        (status = 403, description = "Wrong current password (`wrong_password`)", body = p::ErrorResponse),
    ))]
pub async fn change_password(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<p::ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    let current = Password::parse_any("current_password", &req.current_password)?;
    let new = Password::parse_new("new_password", &req.new_password)?;
    s.hub.change_password(&caller, current, new, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SearchParams {
    /// Username prefix or part of a display name.
    q: String,
    /// At most 50; 20 by default.
    limit: Option<u32>,
}

/// `GET /api/v1/users?q=`: search the user directory.
#[utoipa::path(get, path = "/api/v1/users", tag = "accounts", security(("bearer" = [])),
    params(SearchParams),
    responses((status = 200, body = p::UserList), (status = 400, body = p::ErrorResponse)))]
pub async fn search_users(
    State(s): State<AppState>,
    Auth(_caller): Auth,
    ApiQuery(q): ApiQuery<SearchParams>,
) -> ApiResult<Json<p::UserList>> {
    let users = s.hub.search_users(&q.q, q.limit.unwrap_or(20)).await?;
    Ok(Json(p::UserList {
        users: users.into_iter().map(Into::into).collect(),
    }))
}

/// `GET /api/v1/users/{username}`: one user's public profile.
#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "accounts", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = p::User), (status = 404, body = p::ErrorResponse)))]
pub async fn get_user(
    State(s): State<AppState>,
    Auth(_caller): Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<p::User>> {
    let name = Username::parse(&name)
        .map_err(|_| ApiError::from(natter_core::CoreError::NotFound { what: "user" }))?;
    Ok(Json(s.hub.user(&name).await?.into()))
}

/// `GET /api/v1/contacts`: the caller's contact list.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", security(("bearer" = [])),
    responses((status = 200, body = p::ContactList)))]
pub async fn list_contacts(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<p::ContactList>> {
    let contacts = s.hub.contacts(&caller).await?;
    Ok(Json(p::ContactList {
        contacts: contacts.into_iter().map(Into::into).collect(),
    }))
}

/// `PUT /api/v1/contacts/{username}`: add a contact or update its name and
/// groups.
#[utoipa::path(put, path = "/api/v1/contacts/{username}", tag = "contacts", security(("bearer" = [])),
    params(("username" = String, Path)),
    request_body(content = p::PutContactRequest, description = "Optional"),
    responses(
        (status = 201, description = "Added", body = p::Contact),
        (status = 200, description = "Updated", body = p::Contact),
        (status = 404, description = "No such user (`user_not_found`)", body = p::ErrorResponse),
    ))]
pub async fn put_contact(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(name): ApiPath<String>,
    OptionalJson(req): OptionalJson<p::PutContactRequest>,
) -> ApiResult<(StatusCode, Json<p::Contact>)> {
    let name = username("username", &name)?;
    let contact_name = req.name.as_deref().map(ContactName::parse).transpose()?;
    let groups = ContactGroups::parse(&req.groups)?;
    let (contact, created) = s
        .hub
        .put_contact(&caller, &name, contact_name, groups)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(contact.into())))
}

/// `DELETE /api/v1/contacts/{username}`: remove a contact.
#[utoipa::path(delete, path = "/api/v1/contacts/{username}", tag = "contacts", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, body = p::ErrorResponse)))]
pub async fn remove_contact(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = username("username", &name)?;
    s.hub.remove_contact(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
