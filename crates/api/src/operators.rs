//! Operators: login sessions, users and API tokens.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use registry::{ApiToken, Principal, Role, User};
use serde::Serialize;

use crate::audit::Note;
use crate::error::ApiError;
use crate::extract::{Object, PathId, PathName};
use crate::fields::{read_object, Fields};
use crate::render::{self, created};
use crate::ApiState;

/// Largest login body; a password is at most 1 KiB.
const LOGIN_BODY_LIMIT: usize = 8 * 1024;

fn role(f: &Fields, name: &str) -> Result<Option<Role>, ApiError> {
    match f.string(name)? {
        None => Ok(None),
        Some(r) => Role::parse(&r).map(Some).ok_or_else(|| {
            ApiError::body(
                f.path(name),
                format!("{r:?} is not viewer, operator or admin"),
            )
        }),
    }
}

/// `POST /api/auth/login`: `{"username", "password"}` -> 200 `{"token",
/// "role", "expires_at"}`, or 401. Audited with the username as actor;
/// failures (401) are counted instead (`GET /api/system`).
///
/// Guards, in order: the client's address backing off (429 before the
/// body is read), the body (at most 8 KiB), the username backing off
/// (429), a turn among `login_concurrency` argon2 slots (503 after
/// `login_wait`), the password. A failure extends both back-offs; a
/// success clears them.
pub(crate) async fn login(
    State(st): State<Arc<ApiState>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut note = Note::default();
    let addr = peer.map(|Extension(ConnectInfo(a))| a.ip());
    let r = login_inner(&st, addr, &headers, body, &mut note).await;
    note.outcome(r)
}

async fn login_inner(
    st: &Arc<ApiState>,
    addr: Option<IpAddr>,
    headers: &HeaderMap,
    body: Body,
    note: &mut Note,
) -> Result<Response, ApiError> {
    let guards = &st.guards;
    let throttle = &guards.login_throttle;
    let wait = throttle.address_wait_ms(addr, st.now_ms());
    if wait > 0 {
        return Err(guards.login_throttled(wait));
    }
    let f = read_object(headers, body, st.max_body_bytes.min(LOGIN_BODY_LIMIT)).await?;
    f.only(&["username", "password"])?;
    let username = f.required_string("username")?;
    *note = Note::actor(&username).with_target(&username);
    let password = f.required_string("password")?;
    let wait = throttle.wait_ms(addr, &username, st.now_ms());
    if wait > 0 {
        return Err(guards.login_throttled(wait));
    }
    let permit = guards.login_slot().await?;
    // Failures of logins that ran while this one waited count too.
    let now = st.now_ms();
    let wait = throttle.wait_ms(addr, &username, now);
    if wait > 0 {
        return Err(guards.login_throttled(wait));
    }
    let ttl = st.session_ttl_ms;
    let user = username.clone();
    let session = st
        .on_operators(move |o| {
            let _turn = permit;
            Ok(o.login(&user, password.as_bytes(), ttl, now)?)
        })
        .await?;
    let Some((token, principal)) = session else {
        throttle.failed(addr, &username, now);
        guards
            .counters()
            .login_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::Unauthorized);
    };
    throttle.succeeded(addr, &username);
    #[derive(Serialize)]
    struct SessionDto<'a> {
        token: &'a str,
        role: &'a str,
        expires_at: u64,
    }
    render::json(
        &SessionDto {
            token: &token,
            role: principal.role.as_str(),
            expires_at: now.saturating_add(ttl),
        },
        None,
    )
}

/// `POST /api/auth/logout`: ends the login session whose token the request
/// carries; 204. An API token is refused (400): revoke those with `DELETE
/// /api/tokens/{id}`.
pub(crate) async fn logout(
    State(st): State<Arc<ApiState>>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let Some(id) = p.token_id.clone() else {
        return Err(ApiError::param("Authorization", "not a login session"));
    };
    st.on_operators(move |o| {
        let session = o
            .list_api_tokens()?
            .into_iter()
            .any(|t| t.id == id && t.session);
        if !session {
            return Err(ApiError::param(
                "Authorization",
                "not a login session; API tokens are revoked with DELETE /api/tokens/{id}",
            ));
        }
        o.revoke_api_token(&id)?;
        Ok(())
    })
    .await?;
    Ok(render::no_content())
}

/// `GET /api/auth/me`: `{"name", "role"}` of the credential used.
pub(crate) async fn me(Extension(p): Extension<Principal>) -> Result<Response, ApiError> {
    render::json(
        &serde_json::json!({ "name": p.name, "role": p.role.as_str() }),
        None,
    )
}

/// A user as JSON (the shape `api-types` shares with the client).
fn user_dto(u: &User) -> api_types::User {
    api_types::User {
        username: u.username.clone(),
        role: u.role.as_str().to_string(),
        disabled: u.disabled,
        created_at: u.created_at_ms,
    }
}

/// `GET /api/users`.
pub(crate) async fn list_users(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let users = st.on_operators(|o| Ok(o.list_users()?)).await?;
    render::json(
        &serde_json::json!({ "items": users.iter().map(user_dto).collect::<Vec<_>>() }),
        None,
    )
}

/// `POST /api/users`: `{"username", "password", "role"}` -> 201.
pub(crate) async fn create_user(State(st): State<Arc<ApiState>>, Object(f): Object) -> Response {
    let note = match f.string("username") {
        Ok(Some(name)) => Note::target(&name),
        _ => Note::default(),
    };
    note.outcome(create_user_inner(&st, &f).await)
}

async fn create_user_inner(st: &ApiState, f: &Fields) -> Result<Response, ApiError> {
    f.only(&["username", "password", "role"])?;
    let username = f.required_string("username")?;
    let password = f.required_string("password")?;
    let role = role(f, "role")?.ok_or_else(|| ApiError::body("role", "required"))?;
    let now = st.now_ms();
    let user = st
        .on_operators(move |o| Ok(o.create_user(&username, &password, role, now)?))
        .await?;
    created(&user_dto(&user), &format!("/api/users/{}", user.username))
}

/// `PATCH /api/users/{name}`: `{"role"?, "disabled"?, "password"?}`.
/// Disabling or a new password ends the user's sessions.
pub(crate) async fn update_user(
    State(st): State<Arc<ApiState>>,
    PathName(name): PathName,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["role", "disabled", "password"])?;
    let role = role(&f, "role")?;
    let disabled = f.bool("disabled")?;
    let password = f.string("password")?;
    let user = st
        .on_operators(move |o| Ok(o.update_user(&name, role, disabled, password.as_deref())?))
        .await?;
    render::json(&user_dto(&user), None)
}

/// `DELETE /api/users/{name}`: the user and all their tokens; 204.
pub(crate) async fn delete_user(
    State(st): State<Arc<ApiState>>,
    PathName(name): PathName,
) -> Result<Response, ApiError> {
    let n2 = name.clone();
    let found = st.on_operators(move |o| Ok(o.delete_user(&n2)?)).await?;
    render::removed(found, || format!("user {name:?}"))
}

/// An API token as JSON (the shape `api-types` shares with the client),
/// with its secret only in the answer that created it.
fn token_dto(t: &ApiToken, secret: Option<String>) -> api_types::ApiToken {
    api_types::ApiToken {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.as_str().to_string(),
        owner: t.owner.clone(),
        created_at: t.created_at_ms,
        expires_at: t.expires_at_ms,
        last4: t.last4.clone(),
        session: t.session,
        token: secret,
    }
}

/// `GET /api/tokens`: API tokens and login sessions, never their secrets.
pub(crate) async fn list_tokens(State(st): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let tokens = st.on_operators(|o| Ok(o.list_api_tokens()?)).await?;
    render::json(
        &serde_json::json!({
            "items": tokens.iter().map(|t| token_dto(t, None)).collect::<Vec<_>>()
        }),
        None,
    )
}

/// `POST /api/tokens`: `{"name", "role", "expires_at"?, "owner"?}` -> 201
/// with `"token"` (shown once). A token with an owner is capped by the
/// owner's role and dies with the owner.
pub(crate) async fn create_token(
    State(st): State<Arc<ApiState>>,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["name", "role", "expires_at", "owner"])?;
    let name = f.required_string("name")?;
    let role = role(&f, "role")?.ok_or_else(|| ApiError::body("role", "required"))?;
    let owner = f.string("owner")?;
    let now = st.now_ms();
    let expires_at = f.future_instant("expires_at", now)?;
    let (token, secret) = st
        .on_operators(move |o| {
            Ok(o.create_api_token(&name, owner.as_deref(), role, expires_at, now)?)
        })
        .await?;
    let resp = created(
        &token_dto(&token, Some(secret)),
        &format!("/api/tokens/{}", token.id),
    )?;
    Ok(Note::target(&token.id).attach(resp))
}

/// `DELETE /api/tokens/{id}`: revoked at once (the next request with it is
/// 401); 204.
pub(crate) async fn revoke_token(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let id2 = id.clone();
    let found = st
        .on_operators(move |o| Ok(o.revoke_api_token(&id2)?))
        .await?;
    render::removed(found, || format!("API token {id:?}"))
}
