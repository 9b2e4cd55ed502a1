//! Presence routes: one device's connection state, and counts of the
//! fleet by state.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{FleetService, PathId};
use crate::params::Params;
use crate::{blocking, render, ApiState};

/// A device's presence as JSON; times are Unix milliseconds.
#[derive(Serialize)]
struct PresenceDto<'a> {
    state: &'static str,
    connected: bool,
    last_connected: Option<u64>,
    last_disconnected: Option<u64>,
    last_seen: Option<u64>,
    address: Option<&'a str>,
    protocol: Option<&'a str>,
    last_reason: Option<&'a str>,
}

/// `GET /api/devices/{id}/presence`.
pub(crate) async fn get(
    PathId(id): PathId,
    FleetService(fleet): FleetService,
) -> Result<Response, ApiError> {
    let v = blocking(move || Ok(fleet.presence(&id)?)).await?;
    let p = &v.presence;
    render::json(
        &PresenceDto {
            state: p.state.as_str(),
            connected: v.connected,
            last_connected: p.last_connected_ms,
            last_disconnected: p.last_disconnected_ms,
            last_seen: p.last_seen_ms,
            address: p.address.as_deref(),
            protocol: p.protocol.as_deref(),
            last_reason: p.last_reason.as_deref(),
        },
        None,
    )
}

/// Counts of one group.
#[derive(Serialize)]
struct CountsDto {
    online: u64,
    offline: u64,
    inactive: u64,
    never_connected: u64,
    total: u64,
}

/// `GET /api/fleet/status?group_by=type|group|label:<key>`: `{"groups":
/// {"<key>": {"online", "offline", "inactive", "never_connected",
/// "total"}}}`; without `group_by` one group, `all`. A device counts in
/// each of its groups; devices without the label count under `""`.
pub(crate) async fn fleet_status(
    State(st): State<Arc<ApiState>>,
    p: Params,
) -> Result<Response, ApiError> {
    p.only(&["group_by"], &[])?;
    let group_by = p.get("group_by").map(str::to_string);
    match group_by.as_deref() {
        None | Some("type") | Some("group") => {}
        Some(g) if g.strip_prefix("label:").is_some_and(|k| !k.is_empty()) => {}
        Some(g) => {
            return Err(ApiError::param(
                "group_by",
                format!("{g:?}: expected type, group or label:<key>"),
            ))
        }
    }
    let fleet = st.require_fleet()?;
    let all = group_by.is_none();
    let mut counts = blocking(move || {
        fleet.counts(group_by.as_deref()).map_err(|e| match e {
            fleet::FleetError::Invalid(reason) => ApiError::param("group_by", reason),
            other => other.into(),
        })
    })
    .await?;
    if all {
        // An empty fleet still has its one group.
        counts.entry("all".to_string()).or_default();
    }
    #[derive(Serialize)]
    struct StatusDto<'a> {
        groups: BTreeMap<&'a str, CountsDto>,
    }
    let groups = counts
        .iter()
        .map(|(k, c)| {
            (
                k.as_str(),
                CountsDto {
                    online: c.online,
                    offline: c.offline,
                    inactive: c.inactive,
                    never_connected: c.never_connected,
                    total: c.total(),
                },
            )
        })
        .collect();
    render::json(&StatusDto { groups }, None)
}
