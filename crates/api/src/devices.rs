//! Device routes: create, list, read, update, delete, bulk import, and
//! device tokens.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use registry::{Device, DeviceFilter, DevicePatch, NewDevice};
use serde_json::Value as Json;

use crate::audit::Note;
use crate::error::{ApiError, RowError};
use crate::extract::{Object, PathId};
use crate::fields::{read_body, Fields};
use crate::params::Params;
use crate::render::{self, created};
use crate::{blocking, csv, ApiState};

/// Default and largest page of `GET /api/devices`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Members of a device in a create or import body.
const DEVICE_MEMBERS: [&str; 7] = [
    "id", "name", "type", "labels", "groups", "metadata", "enabled",
];

/// A device as JSON (the shape `api-types` shares with the client), with
/// whether it is connected now and its presence `state` when the fleet
/// services run.
fn device_dto(st: &ApiState, d: &Device, state: Option<&str>) -> api_types::Device {
    api_types::Device {
        id: d.id.clone(),
        name: d.name.clone(),
        device_type: d.device_type.clone(),
        labels: d.labels.clone(),
        groups: d.groups.clone(),
        metadata: d.metadata.clone(),
        enabled: d.enabled,
        firmware_version: d.firmware_version.clone(),
        created_at: d.created_at_ms,
        updated_at: d.updated_at_ms,
        connected: st.live.is_connected(&d.id),
        state: state.map(str::to_string),
    }
}

/// A device's presence state, when the fleet services run. A store read:
/// call it on the blocking pool.
fn presence_state(st: &ApiState, id: &str) -> Option<&'static str> {
    match st.fleet.as_ref()?.presence(id) {
        Ok(v) => Some(v.presence.state.as_str()),
        Err(e) => {
            tracing::debug!(device = id, error = %e, "no presence for the device");
            None
        }
    }
}

/// Runs `f` over the device store on the blocking pool, then reads the
/// presence state of the device it returns.
async fn with_state(
    st: &Arc<ApiState>,
    f: impl FnOnce(&ApiState) -> Result<Device, ApiError> + Send + 'static,
) -> Result<(Device, Option<&'static str>), ApiError> {
    let st2 = st.clone();
    blocking(move || {
        let device = f(&st2)?;
        let state = presence_state(&st2, &device.id);
        Ok((device, state))
    })
    .await
}

/// A new device from a create body or an import element.
fn new_device(f: &Fields, extra_members: &[&str]) -> Result<NewDevice, ApiError> {
    let known: Vec<&str> = DEVICE_MEMBERS
        .iter()
        .chain(extra_members)
        .copied()
        .collect();
    f.only(&known)?;
    Ok(NewDevice {
        id: f.required_string("id")?,
        name: f.string("name")?,
        device_type: f.string("type")?,
        labels: f.string_map("labels")?.unwrap_or_default(),
        groups: f.string_list("groups")?.unwrap_or_default(),
        metadata: f.object("metadata")?.unwrap_or_default(),
        enabled: f.bool("enabled")?,
    })
}

/// `POST /api/devices`: 201 with the device, its token (unless `"token":
/// false`) and a `Location`.
pub(crate) async fn create(State(st): State<Arc<ApiState>>, Object(f): Object) -> Response {
    let note = match f.string("id") {
        Ok(Some(id)) => Note::target(&id),
        _ => Note::default(),
    };
    note.outcome(create_inner(&st, &f).await)
}

async fn create_inner(st: &Arc<ApiState>, f: &Fields) -> Result<Response, ApiError> {
    let new = new_device(f, &["token"])?;
    let with_token = f.bool("token")?.unwrap_or(true);
    let now = st.now_ms();
    let st2 = st.clone();
    let (device, token, state) = blocking(move || {
        let ns = &st2.namespace;
        let device = st2.devices.create_device(ns, new, now)?;
        let token = if with_token {
            match st2.devices.issue_device_token(ns, &device.id, 0, now) {
                Ok(t) => Some(t),
                Err(e) => {
                    // Do not leave a device behind that the caller was told
                    // failed.
                    let _ = st2.devices.delete_device(ns, &device.id);
                    return Err(e.into());
                }
            }
        } else {
            None
        };
        let state = presence_state(&st2, &device.id);
        Ok((device, token, state))
    })
    .await?;
    let mut v = serde_json::to_value(device_dto(st, &device, state))
        .map_err(|e| ApiError::Internal(format!("encoding a device: {e}")))?;
    if let (Json::Object(m), Some(t)) = (&mut v, token) {
        m.insert("token".to_string(), Json::String(t));
    }
    created(&v, &format!("/api/devices/{}", device.id))
}

/// `GET /api/devices`: filters, `limit`, `after`.
pub(crate) async fn list(State(st): State<Arc<ApiState>>, p: Params) -> Result<Response, ApiError> {
    p.only_repeating(
        &[
            "type", "group", "enabled", "state", "prefix", "limit", "after",
        ],
        &["label"],
    )?;
    let mut filter = DeviceFilter {
        device_type: p.get("type").map(str::to_string),
        group: p.get("group").map(str::to_string),
        id_prefix: p.get("prefix").map(str::to_string),
        ..DeviceFilter::default()
    };
    for l in p.all("label") {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| ApiError::param("label", format!("{l:?} is not key:value")))?;
        filter.labels.push((k.to_string(), v.to_string()));
    }
    filter.enabled = p.either("enabled", "true", "false")?;
    let online = p.either("state", "online", "offline")?;
    let limit = p.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p.get("after").map(str::to_string);
    let st2 = st.clone();
    let (page, states) = blocking(move || {
        let live = st2.live.clone();
        let extra = move |d: &Device| online.is_none_or(|want| live.is_connected(&d.id) == want);
        let page =
            st2.devices
                .list_devices(&st2.namespace, &filter, &extra, after.as_deref(), limit)?;
        let states: Vec<_> = page
            .items
            .iter()
            .map(|d| presence_state(&st2, &d.id))
            .collect();
        Ok((page, states))
    })
    .await?;
    let items: Vec<api_types::Device> = page
        .items
        .iter()
        .zip(states)
        .map(|(d, s)| device_dto(&st, d, s))
        .collect();
    render::page(items, page.next, &p, "/api/devices", "after")
}

/// `GET /api/devices/{id}`.
pub(crate) async fn get(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (device, state) = with_state(&st, move |st| {
        st.devices
            .get_device(&st.namespace, &id)?
            .ok_or_else(|| ApiError::Missing(format!("device {id:?} not found")))
    })
    .await?;
    render::json(&device_dto(&st, &device, state), None)
}

/// `PATCH /api/devices/{id}`; disabling drops the device's live sessions.
pub(crate) async fn update(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["name", "type", "labels", "groups", "metadata", "enabled"])?;
    let patch = DevicePatch {
        name: f.string("name")?,
        device_type: f.string("type")?,
        labels: f.string_map("labels")?,
        groups: f.string_list("groups")?,
        metadata: f.object("metadata")?,
        enabled: f.bool("enabled")?,
        firmware_version: None,
    };
    let disable = patch.enabled == Some(false);
    let now = st.now_ms();
    let (device, state) = with_state(&st, move |st| {
        Ok(st.devices.update_device(&st.namespace, &id, patch, now)?)
    })
    .await?;
    if disable {
        let n = st.drop_sessions(&device.id);
        tracing::info!(device = %device.id, sessions = n, "device disabled");
    }
    let resp = render::json(&device_dto(&st, &device, state), None)?;
    Ok(Note::target(&device.id).attach(resp))
}

/// `DELETE /api/devices/{id}`: 204; drops the device's live sessions and
/// forgets its twins and commands.
pub(crate) async fn delete(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let st2 = st.clone();
    let id2 = id.clone();
    let existed = blocking(move || {
        let existed = st2.devices.delete_device(&st2.namespace, &id2)?;
        if let (true, Some(fleet)) = (existed, &st2.fleet) {
            // The device is deleted either way: a failure to forget its
            // state is logged, not answered.
            if let Err(e) = fleet.forget(&id2) {
                tracing::warn!(device = %id2, error = %e, "cannot forget the device's twins and commands");
            }
        }
        Ok(existed)
    })
    .await?;
    if !existed {
        return Err(ApiError::Missing(format!("device {id:?} not found")));
    }
    st.drop_sessions(&id);
    Ok(render::no_content())
}

/// `POST /api/devices/import?tokens=true`: JSON or CSV, all or nothing.
pub(crate) async fn import(
    State(st): State<Arc<ApiState>>,
    p: Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    p.only(&["tokens"], &[])?;
    let tokens = p.either("tokens", "true", "false")?.unwrap_or(false);
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/csv"));
    let data = read_body(&headers, body, st.max_body_bytes).await?;
    let now = st.now_ms();
    let st2 = st.clone();
    let report = blocking(move || {
        let rows = if is_csv {
            let text =
                std::str::from_utf8(&data).map_err(|_| ApiError::body("csv", "not valid UTF-8"))?;
            import_csv(text)?
        } else {
            import_json(&data)?
        };
        let mut devices = Vec::with_capacity(rows.len());
        let mut errors = Vec::new();
        for (i, r) in rows.into_iter().enumerate() {
            match r {
                Ok(d) => devices.push(d),
                Err((id, message)) => errors.push(RowError {
                    row: i + 1,
                    id,
                    message,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(refused(errors));
        }
        let rep = st2
            .devices
            .import_devices(&st2.namespace, devices, tokens, now)?;
        if !rep.errors.is_empty() {
            let errors = rep
                .errors
                .into_iter()
                .map(|e| RowError {
                    row: e.index + 1,
                    id: e.id,
                    message: e.message,
                })
                .collect();
            return Err(refused(errors));
        }
        Ok(rep)
    })
    .await?;
    let dto = api_types::ImportReport {
        created: report.created,
        tokens: tokens.then(|| {
            report
                .tokens
                .into_iter()
                .map(|(id, token)| api_types::ImportedToken { id, token })
                .collect()
        }),
    };
    let resp = render::json(&dto, None)?;
    Ok(Note::details(serde_json::json!({ "created": report.created })).attach(resp))
}

fn refused(errors: Vec<RowError>) -> ApiError {
    ApiError::Unprocessable {
        reason: format!("{} row(s) refused; nothing was imported", errors.len()),
        errors,
    }
}

/// One parsed import row: a device, or (id, why not).
type Row = Result<NewDevice, (String, String)>;

/// `[{device}, ...]` or `{"devices": [...]}`.
fn import_json(data: &[u8]) -> Result<Vec<Row>, ApiError> {
    let doc: Json = serde_json::from_slice(data).map_err(|e| ApiError::BadBody {
        field: None,
        reason: format!("not valid JSON: {e}"),
    })?;
    let (items, path) = match doc {
        Json::Array(items) => (items, ""),
        Json::Object(mut m) => {
            if let Some(k) = m.keys().find(|k| *k != "devices") {
                return Err(ApiError::body(k.as_str(), "unknown member; known: devices"));
            }
            match m.remove("devices") {
                Some(Json::Array(items)) => (items, "devices"),
                _ => return Err(ApiError::body("devices", "required: an array of devices")),
            }
        }
        _ => {
            return Err(ApiError::BadBody {
                field: None,
                reason: "expected an array of devices or {\"devices\": [...]}".into(),
            })
        }
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item
                .get("id")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            Fields::from_value(item, &format!("{path}[{i}]"))
                .and_then(|f| new_device(&f, &[]))
                .map_err(|e| (id, problem_text(&e)))
        })
        .collect())
}

/// An error as one line: `field: reason`.
fn problem_text(e: &ApiError) -> String {
    match e {
        ApiError::BadBody {
            field: Some(f),
            reason,
        } => format!("{f}: {reason}"),
        other => other.to_string(),
    }
}

/// A header row naming columns (`id` required; `name`, `type`, `labels` as
/// `k=v;k2=v2`, `groups` as `a;b`, `enabled` as `true`/`false`), then one
/// device per row. Empty cells take the defaults.
fn import_csv(text: &str) -> Result<Vec<Row>, ApiError> {
    const COLUMNS: [&str; 6] = ["id", "name", "type", "labels", "groups", "enabled"];
    let records = csv::parse(text).map_err(|(line, reason)| ApiError::BadLine { line, reason })?;
    let Some((head, rows)) = records.split_first() else {
        return Ok(Vec::new());
    };
    let mut cols = Vec::with_capacity(head.fields.len());
    for (i, name) in head.fields.iter().enumerate() {
        let name = name.trim();
        if !COLUMNS.contains(&name) {
            return Err(ApiError::body(
                "csv header",
                format!("unknown column {name:?}; known: {}", COLUMNS.join(", ")),
            ));
        }
        if head.fields[..i].iter().any(|n| n.trim() == name) {
            return Err(ApiError::body(
                "csv header",
                format!("column {name:?} given twice"),
            ));
        }
        cols.push(name);
    }
    if !cols.contains(&"id") {
        return Err(ApiError::body("csv header", "the id column is required"));
    }
    Ok(rows.iter().map(|r| csv_row(&cols, &r.fields)).collect())
}

fn csv_row(cols: &[&str], fields: &[String]) -> Row {
    let id = cols
        .iter()
        .position(|c| *c == "id")
        .and_then(|i| fields.get(i))
        .cloned()
        .unwrap_or_default();
    if fields.len() != cols.len() {
        return Err((
            id,
            format!(
                "{} fields where the header has {}",
                fields.len(),
                cols.len()
            ),
        ));
    }
    let mut d = NewDevice::new(id.clone());
    for (col, value) in cols.iter().zip(fields) {
        if value.is_empty() {
            continue;
        }
        match *col {
            "name" => d.name = Some(value.clone()),
            "type" => d.device_type = Some(value.clone()),
            "labels" => {
                for pair in value.split(';').filter(|s| !s.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        (id.clone(), format!("labels: {pair:?} is not key=value"))
                    })?;
                    d.labels.insert(k.to_string(), v.to_string());
                }
            }
            "groups" => {
                d.groups = value
                    .split(';')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "enabled" => {
                d.enabled = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    o => return Err((id, format!("enabled: {o:?} is not true or false"))),
                })
            }
            _ => {}
        }
    }
    Ok(d)
}

/// `POST /api/devices/{id}/tokens`: `{"grace_seconds"?}` -> 201 `{"token"}`.
/// Without grace the previous tokens die at once and the device's live
/// sessions are dropped; with grace they keep working that long.
pub(crate) async fn issue_token(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
    Object(f): Object,
) -> Result<Response, ApiError> {
    f.only(&["grace_seconds"])?;
    // Ten years at most.
    let grace_s = f.uint("grace_seconds", 10 * 366 * 86_400)?.unwrap_or(0);
    let now = st.now_ms();
    let id2 = id.clone();
    let token = st
        .on_devices(move |d, ns| Ok(d.issue_device_token(ns, &id2, grace_s * 1000, now)?))
        .await?;
    if grace_s == 0 {
        st.drop_sessions(&id);
    }
    let v = api_types::IssuedToken { token };
    Ok(Note::target(&id).attach(created(&v, &format!("/api/devices/{id}"))?))
}

/// `DELETE /api/devices/{id}/tokens`: revokes every token, drops the live
/// sessions; 204.
pub(crate) async fn revoke_tokens(
    State(st): State<Arc<ApiState>>,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let id2 = id.clone();
    st.on_devices(move |d, ns| Ok(d.revoke_device_tokens(ns, &id2)?))
        .await?;
    st.drop_sessions(&id);
    Ok(render::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows() {
        let rows = import_csv(
            "id,name,type,labels,groups\n\
             p1,Press 1,press,zone=a;line=2,hall;north\n\
             p2,,,,\n\
             p3,x,y,bad,\n\
             p4,x\n",
        )
        .unwrap_or_default();
        assert_eq!(rows.len(), 4);
        let Ok(p1) = &rows[0] else {
            panic!("{:?}", rows[0])
        };
        assert_eq!(p1.name.as_deref(), Some("Press 1"));
        assert_eq!(p1.device_type.as_deref(), Some("press"));
        assert_eq!(p1.labels.get("line").map(String::as_str), Some("2"));
        assert_eq!(p1.groups, vec!["hall", "north"]);
        let Ok(p2) = &rows[1] else { panic!() };
        assert_eq!((p2.id.as_str(), p2.name.as_ref()), ("p2", None));
        assert!(matches!(&rows[2], Err((id, m)) if id == "p3" && m.contains("labels")));
        assert!(matches!(&rows[3], Err((id, _)) if id == "p4"));
        assert!(import_csv("name\nx\n").is_err());
        assert!(import_csv("id,colour\nx,red\n").is_err());
    }

    #[test]
    fn json_rows() {
        let rows = import_json(br#"{"devices": [{"id": "a"}, {"id": "b", "labels": []}, 3]}"#)
            .unwrap_or_default();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_ok());
        assert!(
            matches!(&rows[1], Err((id, m)) if id == "b" && m.starts_with("devices[1].labels"))
        );
        assert!(rows[2].is_err());
        assert!(import_json(br#"[{"id": "a", "token": true}]"#).unwrap_or_default()[0].is_err());
        assert!(import_json(br#"{"devs": []}"#).is_err());
    }
}
