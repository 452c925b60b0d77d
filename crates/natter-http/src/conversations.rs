//! Handlers for conversations, members, messages and read markers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::DateTime;
use natter_proto as p;
use natter_store::ConversationCursor;
use natter_types::{ClientId, ConversationId, GroupTitle, Role};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Auth, OptionalJson, username};

/// Conversation-list cursors are opaque to clients: base64url of
/// `<last activity in µs>.<id>`.
fn encode_cursor(c: &ConversationCursor) -> String {
    let raw = format!("{}.{}", c.last_activity_at.timestamp_micros(), c.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> ApiResult<ConversationCursor> {
    let bad = || ApiError::invalid("cursor", "cursor: not a cursor from this API");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, id) = raw.split_once('.').ok_or_else(bad)?;
    Ok(ConversationCursor {
        last_activity_at: DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?)
            .ok_or_else(bad)?,
        id: id.parse().map_err(|_| bad())?,
    })
}

/// `POST /api/v1/conversations`: start a direct conversation or create a
/// group.
#[utoipa::path(post, path = "/api/v1/conversations", tag = "conversations", security(("bearer" = [])),
    request_body = p::CreateConversationRequest,
    responses(
        (status = 201, description = "Created", body = p::Conversation),
        (status = 200, description = "The direct conversation already existed", body = p::Conversation),
        (status = 400, body = p::ErrorResponse),
        (status = 404, description = "No such user (`user_not_found`)", body = p::ErrorResponse),
    ))]
pub async fn create(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiJson(req): ApiJson<p::CreateConversationRequest>,
) -> ApiResult<(StatusCode, Json<p::Conversation>)> {
    let out = match req {
        p::CreateConversationRequest::Direct { with } => {
            s.hub
                .direct_conversation(&caller, &username("with", &with)?)
                .await?
        }
        p::CreateConversationRequest::Group { title, members } => {
            let title = GroupTitle::parse(&title)?;
            let members = members
                .iter()
                .map(|m| username("members", m))
                .collect::<ApiResult<Vec<_>>>()?;
            s.hub.create_group(&caller, title, members).await?
        }
    };
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(p::Conversation::new(
            out.details.conversation,
            out.details.members,
        )),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// `next_cursor` from the previous page.
    cursor: Option<String>,
    /// At most 100; 50 by default.
    limit: Option<u32>,
}

/// `GET /api/v1/conversations`: the caller's conversations, most recently
/// active first, with the last message and unread count.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, body = p::ConversationList), (status = 400, body = p::ErrorResponse)))]
pub async fn list(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<p::ConversationList>> {
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 100 {
        return Err(ApiError::invalid(
            "limit",
            "limit: must be between 1 and 100",
        ));
    }
    let page = s.hub.conversations(&caller, after, limit).await?;
    let next_cursor = (page.len() == limit as usize).then(|| {
        let last = &page[page.len() - 1].conversation;
        encode_cursor(&ConversationCursor {
            last_activity_at: last.last_activity_at,
            id: last.id,
        })
    });
    Ok(Json(p::ConversationList {
        conversations: page.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// `GET /api/v1/conversations/{id}`: one conversation with its members.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = p::Conversation),
        (status = 403, description = "Not a member (`not_member`)", body = p::ErrorResponse),
        (status = 404, body = p::ErrorResponse),
    ))]
pub async fn get(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<p::Conversation>> {
    let d = s.hub.conversation(&caller, ConversationId(id)).await?;
    Ok(Json(p::Conversation::new(d.conversation, d.members)))
}

/// `PATCH /api/v1/conversations/{id}`: rename a group (admins and owners).
#[utoipa::path(patch, path = "/api/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = p::UpdateConversationRequest,
    responses((status = 200, body = p::Conversation), (status = 403, body = p::ErrorResponse), (status = 409, description = "Not a group (`not_a_group`)", body = p::ErrorResponse)))]
pub async fn update(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<p::UpdateConversationRequest>,
) -> ApiResult<Json<p::Conversation>> {
    let id = ConversationId(id);
    s.hub
        .rename_group(&caller, id, GroupTitle::parse(&req.title)?)
        .await?;
    let d = s.hub.conversation(&caller, id).await?;
    Ok(Json(p::Conversation::new(d.conversation, d.members)))
}

/// `PUT /api/v1/conversations/{id}/members/{username}`: add a member to a
/// group or change a member's role.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/members/{username}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("username" = String, Path)),
    request_body(content = p::PutMemberRequest, description = "Optional; role defaults to member"),
    responses(
        (status = 201, description = "Added", body = p::Conversation),
        (status = 200, description = "Role changed or unchanged", body = p::Conversation),
        (status = 403, description = "`insufficient_role` or `not_member`", body = p::ErrorResponse),
        (status = 409, description = "`not_a_group`, `last_owner` or `group_full`", body = p::ErrorResponse),
    ))]
pub async fn put_member(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
    OptionalJson(req): OptionalJson<p::PutMemberRequest>,
) -> ApiResult<(StatusCode, Json<p::Conversation>)> {
    let id = ConversationId(id);
    let name = username("username", &name)?;
    let role: Role = req.role.unwrap_or(p::Role::Member).into();
    let added = s.hub.set_member(&caller, id, &name, role).await?;
    let d = s.hub.conversation(&caller, id).await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(p::Conversation::new(d.conversation, d.members)),
    ))
}

/// `DELETE /api/v1/conversations/{id}/members/{username}`: remove a member,
/// or leave when the username is the caller's.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/members/{username}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("username" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 403, body = p::ErrorResponse), (status = 404, body = p::ErrorResponse)))]
pub async fn remove_member(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
) -> ApiResult<StatusCode> {
    let name = username("username", &name)?;
    s.hub
        .remove_member(&caller, ConversationId(id), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/conversations/{id}/messages`: send. Answered only after
/// the message is durably stored; a retry with the same `client_id`
/// returns the stored message with status 200.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = p::SendMessageRequest,
    responses(
        (status = 201, description = "Stored", body = p::MessageResponse),
        (status = 200, description = "A retry: the message stored earlier with this client_id", body = p::MessageResponse),
        (status = 403, description = "Not a member (`not_member`)", body = p::ErrorResponse),
        (status = 409, description = "client_id used in another conversation (`client_id_reused`)", body = p::ErrorResponse),
        (status = 413, description = "Body over the limit (`payload_too_large`)", body = p::ErrorResponse),
    ))]
pub async fn send(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<p::SendMessageRequest>,
) -> ApiResult<(StatusCode, Json<p::MessageResponse>)> {
    let client_id = ClientId::parse(&req.client_id)?;
    let body = s.hub.parse_body(req.body)?;
    let out = s
        .hub
        .send_message(&caller, ConversationId(id), client_id, body)
        .await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(p::MessageResponse {
            message: out.message.into(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryParams {
    /// Messages with a smaller sequence number (page backwards).
    before: Option<i64>,
    /// Messages with a greater sequence number (page forwards).
    after: Option<i64>,
    /// 1 to 100; 50 by default.
    limit: Option<u32>,
}

/// `GET /api/v1/conversations/{id}/messages`: history in ascending order.
/// Without `after`, the page ends at `before` (or the newest message);
/// with `after`, it starts right after it.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), HistoryParams),
    responses((status = 200, body = p::History), (status = 400, body = p::ErrorResponse), (status = 403, body = p::ErrorResponse)))]
pub async fn history(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<HistoryParams>,
) -> ApiResult<Json<p::History>> {
    let page = s
        .hub
        .history(&caller, ConversationId(id), q.before, q.after, q.limit)
        .await?;
    Ok(Json(p::History {
        messages: page.messages.into_iter().map(Into::into).collect(),
        has_more: page.has_more,
    }))
}

/// `PATCH /api/v1/conversations/{id}/messages/{seq}`: edit one's message.
#[utoipa::path(patch, path = "/api/v1/conversations/{id}/messages/{seq}", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("seq" = i64, Path)),
    request_body = p::EditMessageRequest,
    responses(
        (status = 200, body = p::MessageResponse),
        (status = 403, description = "`not_author` or `not_member`", body = p::ErrorResponse),
        (status = 404, body = p::ErrorResponse),
        (status = 409, description = "Deleted (`message_deleted`)", body = p::ErrorResponse),
    ))]
pub async fn edit(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, seq)): ApiPath<(Uuid, i64)>,
    ApiJson(req): ApiJson<p::EditMessageRequest>,
) -> ApiResult<Json<p::MessageResponse>> {
    let body = s.hub.parse_body(req.body)?;
    let m = s
        .hub
        .edit_message(&caller, ConversationId(id), seq, body)
        .await?;
    Ok(Json(p::MessageResponse { message: m.into() }))
}

/// `DELETE /api/v1/conversations/{id}/messages/{seq}`: delete a message,
/// leaving a tombstone (own messages; in groups admins and owners may
/// delete any).
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/messages/{seq}", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("seq" = i64, Path)),
    responses((status = 200, description = "The tombstone", body = p::MessageResponse), (status = 403, body = p::ErrorResponse), (status = 404, body = p::ErrorResponse), (status = 409, body = p::ErrorResponse)))]
pub async fn delete(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath((id, seq)): ApiPath<(Uuid, i64)>,
) -> ApiResult<Json<p::MessageResponse>> {
    let m = s
        .hub
        .delete_message(&caller, ConversationId(id), seq)
        .await?;
    Ok(Json(p::MessageResponse { message: m.into() }))
}

/// `POST /api/v1/conversations/{id}/read`: move the caller's read marker
/// forward (it never moves back, and stops at the last message).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/read", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = p::MarkReadRequest,
    responses((status = 200, body = p::ReadMarker), (status = 403, body = p::ErrorResponse)))]
pub async fn mark_read(
    State(s): State<AppState>,
    Auth(caller): Auth,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<p::MarkReadRequest>,
) -> ApiResult<Json<p::ReadMarker>> {
    let read_seq = s
        .hub
        .mark_read(&caller, ConversationId(id), req.seq)
        .await?;
    Ok(Json(p::ReadMarker { read_seq }))
}
