//! Rules (`/api/rules`) and alarms (`/api/alarms`), over the
//! `automation` service.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use registry::{Principal, Role};
use serde_json::{json, Value as Json};

use crate::audit::Note;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathId, Rules};
use crate::params::Params;
use crate::render::{self, created};
use crate::{blocking, ApiState};

impl From<automation::AutomationError> for ApiError {
    fn from(e: automation::AutomationError) -> Self {
        use automation::AutomationError as E;
        match e {
            E::Invalid { field, message } => ApiError::BadBody {
                field: (!field.is_empty()).then_some(field),
                reason: message,
            },
            E::Parse {
                line,
                column,
                message,
            } => ApiError::BadBody {
                field: Some("sql".into()),
                reason: format!("line {line}, column {column}: {message}"),
            },
            E::NotFound(m) => ApiError::Missing(m),
            E::Conflict(m) => ApiError::AlreadyExists(m),
            E::Storage(m) => ApiError::Internal(m),
        }
    }
}

impl From<alarms::AlarmError> for ApiError {
    fn from(e: alarms::AlarmError) -> Self {
        automation::AutomationError::from(e).into()
    }
}

/// A rule as `p` may read it: for a viewer, webhook header values
/// (credentials, often) are redacted; only those who may change a rule see
/// them.
fn rule_json_for(r: &automation::RuleView, p: &Principal) -> Json {
    let mut j = rule_json(r);
    if p.role < Role::Operator {
        j["actions"] = automation::redact_headers(&r.actions);
    }
    j
}

fn rule_json(r: &automation::RuleView) -> Json {
    json!({
        "name": r.name,
        "description": r.description,
        "sql": r.sql,
        "actions": r.actions,
        "enabled": r.enabled,
        "filter": r.filter,
        "created_at": r.created_ms,
        "updated_at": r.updated_ms,
        "metrics": {
            "evaluations": r.evaluations,
            "matches": r.matches,
            "errors": r.errors,
            "action_failures": r.action_failures,
            "avg_eval_us": r.avg_eval_us,
        },
    })
}

/// `GET /api/rules`.
pub(crate) async fn list(
    Extension(p): Extension<Principal>,
    Rules(a): Rules,
) -> Result<Response, ApiError> {
    let items: Vec<Json> = a.list().iter().map(|r| rule_json_for(r, &p)).collect();
    // Messages the engine could not take (its queue was full; only rules
    // that may be sampled read them), and each worker's queue.
    let dropped = a.dropped();
    let queues: Vec<Json> = a
        .queues()
        .iter()
        .map(
            |q| json!({"queued": q.queued, "taken": q.taken, "held": q.held, "dropped": q.dropped}),
        )
        .collect();
    render::json(
        &json!({ "items": items, "dropped": dropped, "queues": queues }),
        None,
    )
}

/// `GET /api/rules/{name}`.
pub(crate) async fn get(
    Extension(p): Extension<Principal>,
    PathId(name): PathId,
    Rules(a): Rules,
) -> Result<Response, ApiError> {
    let r = a
        .get(&name)
        .ok_or_else(|| ApiError::Missing(format!("rule {name:?} not found")))?;
    render::json(&rule_json_for(&r, &p), None)
}

/// `POST /api/rules`: `{"name", "sql", "actions", "enabled"?,
/// "description"?}` -> 201; a parse error is a 400 naming `sql` with the
/// line and column.
pub(crate) async fn create(Rules(a): Rules, JsonBody(def): JsonBody) -> Result<Response, ApiError> {
    let r = blocking(move || Ok(a.save(&def, true)?)).await?;
    let resp = created(&rule_json(&r), &format!("/api/rules/{}", r.name))?;
    Ok(Note::target(&r.name).attach(resp))
}

/// `PUT /api/rules/{name}`: replaces the definition (the body's name, if
/// given, must be the same).
pub(crate) async fn replace(
    PathId(name): PathId,
    Rules(a): Rules,
    JsonBody(mut def): JsonBody,
) -> Result<Response, ApiError> {
    let Some(o) = def.as_object_mut() else {
        return Err(ApiError::body("", "expected a JSON object"));
    };
    match o.get("name").and_then(Json::as_str) {
        Some(n) if n != name => return Err(ApiError::body("name", "differs from the path")),
        _ => {
            o.insert("name".into(), json!(name));
        }
    }
    let r = blocking(move || Ok(a.save(&def, false)?)).await?;
    Ok(Note::target(&r.name).attach(render::json(&rule_json(&r), None)?))
}

/// `DELETE /api/rules/{name}` -> 204.
pub(crate) async fn delete(PathId(name): PathId, Rules(a): Rules) -> Result<Response, ApiError> {
    let n2 = name.clone();
    if !blocking(move || Ok(a.delete(&n2)?)).await? {
        return Err(ApiError::Missing(format!("rule {name:?} not found")));
    }
    Ok(Note::target(&name).attach(render::no_content()))
}

async fn set_enabled(
    a: Arc<automation::Automation>,
    name: String,
    enabled: bool,
) -> Result<Response, ApiError> {
    let n2 = name.clone();
    let r = blocking(move || Ok(a.set_enabled(&n2, enabled)?)).await?;
    Ok(Note::target(&name).attach(render::json(&rule_json(&r), None)?))
}

/// `POST /api/rules/{name}/enable`.
pub(crate) async fn enable(PathId(name): PathId, Rules(a): Rules) -> Result<Response, ApiError> {
    set_enabled(a, name, true).await
}

/// `POST /api/rules/{name}/disable`.
pub(crate) async fn disable(PathId(name): PathId, Rules(a): Rules) -> Result<Response, ApiError> {
    set_enabled(a, name, false).await
}

/// `GET /api/rules/{name}/traces`: recent evaluations, newest first.
pub(crate) async fn traces(PathId(name): PathId, Rules(a): Rules) -> Result<Response, ApiError> {
    let traces = a
        .traces(&name)
        .ok_or_else(|| ApiError::Missing(format!("rule {name:?} not found")))?;
    let items: Vec<Json> = traces
        .iter()
        .map(|t| {
            json!({
                "time": t.time_ms,
                "topic": t.topic,
                "payload": t.payload,
                "matched": t.matched,
                "group": t.group,
                "outputs": t.outputs,
                "actions": t.actions.iter().map(|r| json!({"type": r.kind, "ok": r.ok, "detail": r.detail})).collect::<Vec<_>>(),
                "latency_us": t.latency_us,
                "error": t.error,
            })
        })
        .collect();
    render::json(&json!({ "items": items }), None)
}

/// `POST /api/rules/validate`: a definition -> 200 `{"valid": true}` or
/// the 400 a save would give.
pub(crate) async fn validate(
    Rules(a): Rules,
    JsonBody(def): JsonBody,
) -> Result<Response, ApiError> {
    a.validate(&def)?;
    render::json(&json!({ "valid": true }), None)
}

/// `POST /api/rules/dry-run`: `{"rule": name}` or `{"definition": {...}}`
/// with `{"topic", "payload"}` (a JSON value, or a string sent as is) ->
/// whether it matches, its outputs and the actions it would take; nothing
/// is carried out and no state changes.
pub(crate) async fn dry_run(
    Rules(a): Rules,
    JsonBody(req): JsonBody,
) -> Result<Response, ApiError> {
    let topic = req
        .get("topic")
        .and_then(Json::as_str)
        .ok_or_else(|| ApiError::body("topic", "required"))?
        .to_string();
    let payload = match req.get("payload") {
        Some(Json::String(s)) => s.clone().into_bytes(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
        None => Vec::new(),
    };
    let name = req.get("rule").and_then(Json::as_str).map(str::to_string);
    let def = req.get("definition").cloned();
    let out =
        blocking(move || Ok(a.dry_run(name.as_deref(), def.as_ref(), &topic, &payload)?)).await?;
    render::json(&out, None)
}

// ------------------------------------------------------------------ alarms

/// `GET /api/alarms?device=&type=&severity=&state=&since=&until=&limit=&after=`.
pub(crate) async fn alarms(
    State(st): State<Arc<ApiState>>,
    Rules(a): Rules,
    p: Params,
) -> Result<Response, ApiError> {
    p.only(
        &[
            "device", "type", "severity", "state", "since", "until", "limit", "after",
        ],
        &[],
    )?;
    let mut filter = alarms::AlarmFilter {
        device_id: p.get("device").map(str::to_string),
        alarm_type: p.get("type").map(str::to_string),
        ..Default::default()
    };
    if let Some(s) = p.get("severity") {
        filter.severities = vec![alarms::Severity::parse(s).ok_or_else(|| {
            ApiError::param(
                "severity",
                "critical, major, minor, warning or indeterminate",
            )
        })?];
    }
    if let Some(s) = p.get("state") {
        let mut states = Vec::new();
        for part in s.split(',') {
            let st = match part {
                "active" => vec![
                    alarms::AlarmState::ActiveUnacknowledged,
                    alarms::AlarmState::ActiveAcknowledged,
                ],
                "cleared" => vec![
                    alarms::AlarmState::ClearedUnacknowledged,
                    alarms::AlarmState::ClearedAcknowledged,
                ],
                other => vec![alarms::AlarmState::parse(other).ok_or_else(|| {
                    ApiError::param(
                        "state",
                        "active, cleared, active_unack, active_ack, cleared_unack or cleared_ack",
                    )
                })?],
            };
            states.extend(st);
        }
        filter.states = states;
    }
    let now = st.now_ms() as i64;
    for (key, slot) in [
        ("since", &mut filter.since_ms),
        ("until", &mut filter.until_ms),
    ] {
        if let Some(v) = p.get(key) {
            let t = crate::time::parse_instant(v, now)
                .map_err(|reason| ApiError::param(key, &reason))?;
            *slot = Some(t.max(0) as u64);
        }
    }
    let limit = match p.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::param("limit", "1 to 1000"))?,
    };
    let after = p.get("after").map(str::to_string);
    let (items, next) = blocking(move || {
        Ok(a.alarms()
            .query(automation::NAMESPACE, &filter, after.as_deref(), limit)?)
    })
    .await?;
    let items: Vec<Json> = items.iter().map(automation::alarm_json).collect();
    render::json(&json!({ "items": items, "next": next }), None)
}

/// `GET /api/alarms/counts`: active alarms by severity and state.
pub(crate) async fn counts(Rules(a): Rules) -> Result<Response, ApiError> {
    let c = blocking(move || Ok(a.alarms().counts(automation::NAMESPACE)?)).await?;
    render::json(&alarm_counts_json(&c), None)
}

fn alarm_counts_json(c: &alarms::AlarmCounts) -> Json {
    serde_json::to_value(CountsDto::from(c)).unwrap_or(Json::Null)
}

#[derive(serde::Serialize)]
struct CountsDto {
    active: u64,
    unacknowledged: u64,
    active_by_severity: std::collections::BTreeMap<String, u64>,
    by_state: std::collections::BTreeMap<String, u64>,
}

impl From<&alarms::AlarmCounts> for CountsDto {
    fn from(c: &alarms::AlarmCounts) -> Self {
        CountsDto {
            active: c.active(),
            unacknowledged: c.unacknowledged(),
            active_by_severity: alarms::Severity::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), c.active_with(*s)))
                .collect(),
            by_state: alarms::AlarmState::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), c.in_state(*s)))
                .collect(),
        }
    }
}

/// `GET /api/alarms/{id}`.
pub(crate) async fn alarm(PathId(id): PathId, Rules(a): Rules) -> Result<Response, ApiError> {
    let id2 = id.clone();
    let al = blocking(move || Ok(a.alarms().get(automation::NAMESPACE, &id2)?)).await?;
    let al = al.ok_or_else(|| ApiError::Missing(format!("alarm {id:?} not found")))?;
    render::json(&automation::alarm_json(&al), None)
}

/// `POST /api/alarms/{id}/ack`: by the caller; 409 if already acknowledged.
pub(crate) async fn acknowledge(
    Extension(p): Extension<Principal>,
    PathId(id): PathId,
    Rules(a): Rules,
) -> Result<Response, ApiError> {
    change_alarm(id, move |alarm| a.acknowledge_alarm(alarm, &p.name)).await
}

/// `POST /api/alarms/{id}/clear`: by the caller; 409 if already cleared.
pub(crate) async fn clear(
    Extension(p): Extension<Principal>,
    PathId(id): PathId,
    Rules(a): Rules,
) -> Result<Response, ApiError> {
    change_alarm(id, move |alarm| a.clear_alarm_by(alarm, &p.name)).await
}

/// Runs `change` on alarm `id` on the blocking pool: the alarm after it.
async fn change_alarm(
    id: String,
    change: impl FnOnce(&str) -> Result<alarms::Alarm, automation::AutomationError> + Send + 'static,
) -> Result<Response, ApiError> {
    let id2 = id.clone();
    let al = blocking(move || Ok(change(&id2)?)).await?;
    Ok(Note::target(&id).attach(render::json(&automation::alarm_json(&al), None)?))
}
