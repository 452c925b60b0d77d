//! Handlers for the caller's blocked list (what XMPP clients see as the
//! XEP-0191 blocklist).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use natter_proto as p;

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{ApiPath, Auth, username};

/// `GET /api/v1/blocks`: the caller's blocked list, ordered by username.
#[utoipa::path(get, path = "/api/v1/blocks", tag = "blocks", security(("bearer" = [])),
    responses((status = 200, body = p::BlockList)))]
pub async fn list_blocks(
    State(s): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<p::BlockList>> {
    let blocks = s.hub.blocked(&caller).await?;
    Ok(Json(p::BlockList {
        blocks: blocks.into_iter().map(Into::into).collect(),
    }))
}

/// `DELETE /api/v1/blocks`: unblock everyone.
#[utoipa::path(delete, path = "/api/v1/blocks", tag = "blocks", security(("bearer" = [])),
    responses((status = 204, description = "Everyone unblocked")))]
pub async fn unblock_all(State(s): State<AppState>, Auth(caller): Auth) -> ApiResult<StatusCode> {
    s.hub.unblock_all(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/blocks/{username}`: block a user.
#[utoipa::path(put, path = "/api/v1/blocks/{username}", tag = "blocks", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 201, description = "Blocked", body = p::Block),
        (status = 200, description = "Already blocked", body = p::Block),
        (status = 400, description = "Yourself (`invalid_field`)", body = p::ErrorResponse),
        (status = 404, description = "No such user (`user_not_found`)", body = p::ErrorResponse),
    ))]
pub async fn block(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<p::Block>)> {
    let name = username("username", &name)?;
    let (entry, created) = s.hub.block(&caller, &name).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(entry.into())))
}

/// `DELETE /api/v1/blocks/{username}`: unblock a user.
#[utoipa::path(delete, path = "/api/v1/blocks/{username}", tag = "blocks", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses(
        (status = 204, description = "Unblocked"),
        (status = 404, description = "No such user (`user_not_found`) or not blocked (`block_not_found`)", body = p::ErrorResponse),
    ))]
pub async fn unblock(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let name = username("username", &name)?;
    s.hub.unblock(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
