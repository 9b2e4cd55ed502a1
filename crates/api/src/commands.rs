//! Command routes: send a method call to a device (queued while it is
//! offline, or refused with `"queue": false`), optionally waiting for its
//! answer; list, read and cancel commands.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value as Json;
use twin::{Command, CommandStatus, NewCommand};

use crate::audit::Note;
use crate::error::ApiError;
use crate::extract::{FleetService, Object, PathId, PathIds};
use crate::fields::Fields;
use crate::params::Params;
use crate::{blocking, render, ApiState};

/// Default response timeout of a command, in milliseconds (30 s).
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default time a command may wait queued, in milliseconds (one day).
const DEFAULT_TTL_MS: u64 = 86_400_000;
/// How much longer than the command's timeout a waiting request waits,
/// so that the fleet's scan (every second) has marked a silent command
/// timed out by the time the request gives up.
const WAIT_MARGIN_MS: u64 = 1_000;
/// Longest `timeout` of a command sent with `"wait": true` (five
/// minutes): a waiting request holds its connection open, and a graceful
/// shutdown lets it finish.
pub(crate) const MAX_WAIT_MS: u64 = 300_000;

/// Default and largest page of `GET /api/devices/{id}/commands`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A command as JSON (the shape `api-types` shares with the client).
/// Times are Unix milliseconds.
pub(crate) fn command_dto(c: &Command) -> api_types::Command {
    api_types::Command {
        id: c.id.clone(),
        device_id: c.device_id.clone(),
        method: c.method.clone(),
        params: c.params.clone(),
        status: c.status.as_str().to_string(),
        trail: c
            .trail
            .iter()
            .map(|&(s, t)| api_types::CommandStep {
                status: s.as_str().to_string(),
                time: t,
            })
            .collect(),
        created_at: c.created_at_ms,
        timeout_ms: c.timeout_ms,
        expires_at: c.expires_at_ms,
        response: c.response.clone(),
        error: c.error.clone(),
    }
}

fn command_json(c: &Command) -> Json {
    serde_json::to_value(command_dto(c)).unwrap_or(Json::Null)
}

/// `POST /api/devices/{id}/commands`: `{"method", "params"?, "timeout"?
/// (seconds, default 30), "ttl"? (seconds, default 86400), "wait"?
/// (default false), "queue"? (default true)}`.
///
/// Without `wait`: 202 with the command and its `Location`. With `wait`:
/// the request waits (on the async runtime, holding no worker) for the
/// command's final status, at most `timeout` plus a second: 200 with the
/// command once the device answered (or an operator cancelled it), 504
/// (`timeout`, the command in the problem's `command` member) otherwise.
/// An offline device with `"queue": false` is 404 (`device_offline`).
pub(crate) async fn create(
    PathId(id): PathId,
    FleetService(fleet): FleetService,
    Object(f): Object,
) -> Response {
    let mut note = Note::target(&id);
    let r = create_inner(fleet, id, f, &mut note).await;
    note.outcome(r)
}

async fn create_inner(
    fleet: Arc<fleet::Fleet>,
    id: String,
    f: Fields,
    note: &mut Note,
) -> Result<Response, ApiError> {
    f.only(&["method", "params", "timeout", "ttl", "wait", "queue"])?;
    let method = f
        .string("method")?
        .ok_or_else(|| ApiError::body("method", "required: the method name"))?;
    let new = NewCommand {
        method,
        params: f.raw("params").unwrap_or(Json::Null),
        timeout_ms: f
            .seconds("timeout", twin::MAX_TIMEOUT_MS)?
            .unwrap_or(DEFAULT_TIMEOUT_MS),
        ttl_ms: Some(
            f.seconds("ttl", twin::MAX_TTL_MS)?
                .unwrap_or(DEFAULT_TTL_MS),
        ),
    };
    new.validate().map_err(|e| match e {
        twin::TwinError::Invalid { field, message } => {
            // The store's names for what the API takes in seconds.
            let field = match field.as_str() {
                "timeout_ms" => "timeout".to_string(),
                "ttl_ms" => "ttl".to_string(),
                _ => field,
            };
            ApiError::body(field, message)
        }
        other => ApiError::body("method", other.to_string()),
    })?;
    let wait = f.bool("wait")?.unwrap_or(false);
    if wait && new.timeout_ms > MAX_WAIT_MS {
        return Err(ApiError::body(
            "timeout",
            format!("at most {} seconds with \"wait\": true", MAX_WAIT_MS / 1000),
        ));
    }
    let queue = f.bool("queue")?.unwrap_or(true);
    let timeout_ms = new.timeout_ms;
    let method = new.method.clone();
    let fleet2 = fleet.clone();
    let id2 = id.clone();
    let (command, rx) =
        blocking(move || Ok(fleet2.create_command(&id2, new, queue, wait)?)).await?;
    *note = Note::target(&id)
        .with_details(serde_json::json!({ "command": command.id, "method": method }));
    let location = format!("/api/devices/{id}/commands/{}", command.id);
    let Some(rx) = rx else {
        return render::located(StatusCode::ACCEPTED, &command_dto(&command), &location);
    };
    let limit = Duration::from_millis(timeout_ms.saturating_add(WAIT_MARGIN_MS));
    let last = match tokio::time::timeout(limit, rx).await {
        Ok(Ok(c)) => c,
        // The fleet let the waiter go (it is shutting down), or the wait
        // ran out: the command as it is now.
        Ok(Err(_)) | Err(_) => {
            let cmd_id = command.id.clone();
            blocking(move || Ok(fleet.command(&id, &cmd_id)?)).await?
        }
    };
    match last.status {
        CommandStatus::Succeeded | CommandStatus::Failed | CommandStatus::Cancelled => {
            render::json(&command_dto(&last), None)
        }
        status => Err(ApiError::Timeout {
            reason: format!(
                "no answer from the device within {} s; the command is {status}",
                timeout_ms as f64 / 1000.0
            ),
            command: Box::new(command_json(&last)),
        }),
    }
}

/// `GET /api/devices/{id}/commands?limit=&after=`: the device's commands,
/// oldest first; `{"items", "next"}`.
pub(crate) async fn list(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
    p: Params,
) -> Result<Response, ApiError> {
    p.only(&["limit", "after"], &[])?;
    let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.get("after").map(str::to_string);
    let fleet = st.require_fleet()?;
    let id2 = id.clone();
    let (items, next) = blocking(move || {
        fleet
            .commands(&id2, after.as_deref(), limit)
            .map_err(|e| match e {
                fleet::FleetError::Invalid(reason) => ApiError::param("after", reason),
                other => other.into(),
            })
    })
    .await?;
    let items = items.iter().map(command_dto).collect();
    render::page(
        items,
        next,
        &p,
        &format!("/api/devices/{id}/commands"),
        "after",
    )
}

/// `GET /api/devices/{id}/commands/{cmd}`.
pub(crate) async fn get(
    PathIds(id, cmd): PathIds,
    FleetService(fleet): FleetService,
) -> Result<Response, ApiError> {
    let c = blocking(move || Ok(fleet.command(&id, &cmd)?)).await?;
    render::json(&command_dto(&c), None)
}

/// `POST /api/devices/{id}/commands/{cmd}/cancel`: 200 with the cancelled
/// command; 409 when it is final already. A waiting request for it ends
/// with the cancelled command.
pub(crate) async fn cancel(
    PathIds(id, cmd): PathIds,
    FleetService(fleet): FleetService,
) -> Result<Response, ApiError> {
    let note = Note::target(&id).with_details(serde_json::json!({ "command": cmd }));
    let c = blocking(move || Ok(fleet.cancel_command(&id, &cmd)?)).await;
    Ok(note.outcome(c.and_then(|c| render::json(&command_dto(&c), None))))
}
