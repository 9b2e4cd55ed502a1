//! The component schemas: the JSON shapes of the routes' DTOs, as the
//! handlers write them.

use serde_json::{json, Map, Value as Json};

fn obj(props: Json, required: &[&str]) -> Json {
    json!({ "type": "object", "properties": props, "required": required })
}

fn items_of(name: &str) -> Json {
    obj(
        json!({ "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{name}") } } }),
        &["items"],
    )
}

fn page_of(name: &str) -> Json {
    obj(
        json!({
            "items": { "type": "array", "items": { "$ref": format!("#/components/schemas/{name}") } },
            "next": { "type": ["string", "null"] },
        }),
        &["items"],
    )
}

/// The component schemas: the JSON shapes of the routes' DTOs.
pub(super) fn schemas() -> Json {
    let s = json!({ "type": "string" });
    let sn = json!({ "type": ["string", "null"] });
    let int = json!({ "type": "integer" });
    let intn = json!({ "type": ["integer", "null"] });
    let b = json!({ "type": "boolean" });
    let any = json!({});
    let strmap = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let strs = json!({ "type": "array", "items": { "type": "string" } });
    let scalar = json!({ "type": ["number", "integer", "boolean", "string"] });
    let mut m = Map::new();
    let mut put = |k: &str, v: Json| {
        m.insert(k.to_string(), v);
    };
    put("Object", json!({ "type": "object" }));
    put("Health", obj(json!({ "status": s }), &["status"]));
    put(
        "OpenApi",
        json!({ "type": "object", "required": ["openapi", "paths"] }),
    );
    put("Html", s.clone());
    put("PrometheusText", s.clone());
    // InfluxDB 1.x's own shape: `{"results": [...]}` or `{"error"}`.
    put("InfluxAnswer", json!({ "type": "object" }));
    // Prometheus' own shape, errors included (`status` "error" with
    // `errorType` and `error`, HTTP 400 or 422), not problem+json.
    put(
        "PromAnswer",
        obj(
            json!({ "status": s, "data": {}, "errorType": s, "error": s }),
            &["status"],
        ),
    );
    put(
        "Ready",
        obj(
            json!({ "status": s, "checks": { "type": "object", "additionalProperties": s } }),
            &["status", "checks"],
        ),
    );
    put("Pem", s.clone());
    put(
        "LineProtocol",
        json!({ "type": "string", "description": "InfluxDB line protocol" }),
    );
    put(
        "EventStream",
        json!({ "type": "string", "description":
        "text/event-stream: `event: telemetry` with {device, metric, ts, value}; `event: presence`, `event: alarm`, `event: twin` with {topic, payload}; comments as keep-alive every 15 s; a final `event: overflow` when the client read too slowly" }),
    );
    put(
        "Problem",
        obj(
            json!({
                "type": s, "title": s, "status": int, "detail": s,
                "code": { "type": "string", "description": "stable error code, e.g. bad_body, not_found" },
                "field": { "type": "string", "description": "the offending member or parameter" },
                "line": int,
                "errors": { "type": "array", "items": obj(json!({ "row": int, "id": sn, "message": s }), &["message"]) },
                "command": { "$ref": "#/components/schemas/Command" },
            }),
            &["type", "title", "status", "detail", "code"],
        ),
    );
    // Telemetry.
    put(
        "DeviceTelemetry",
        json!({ "type": ["object", "array"], "description": "the device-contract telemetry forms" }),
    );
    put(
        "TelemetryPoint",
        obj(
            json!({ "device": s, "metric": s, "ts": { "type": ["integer", "string"] },
        "value": scalar, "labels": strmap }),
            &["device", "metric", "value"],
        ),
    );
    put(
        "TelemetryBatch",
        obj(
            json!({ "points": { "type": "array", "items": { "$ref": "#/components/schemas/TelemetryPoint" } } }),
            &["points"],
        ),
    );
    put(
        "TelemetryQueryAnswer",
        obj(
            json!({
                "series": { "type": "array", "items": obj(json!({ "device": s, "metric": s, "labels": strmap,
                    "points": { "type": "array", "items": obj(json!({ "ts": int, "value": scalar }), &["ts"]) } }), &["device", "metric"]) },
                "groups": { "type": "array", "items": { "type": "object" } },
                "next": sn, "next_start": intn,
            }),
            &[],
        ),
    );
    put(
        "LatestAnswer",
        obj(
            json!({ "series": { "type": "array", "items": obj(json!({
        "device": s, "metric": s, "labels": strmap, "ts": int, "value": scalar }), &["device", "metric"]) } }),
            &[],
        ),
    );
    put("SeriesList", json!({ "type": "object" }));
    // Devices.
    let device_props = json!({ "id": s, "name": s, "type": s, "labels": strmap, "groups": strs,
        "metadata": { "type": "object" }, "enabled": b, "firmware_version": sn, "created_at": int,
        "updated_at": int, "connected": b,
        "state": { "enum": ["online", "offline", "inactive", "never_connected"] } });
    put(
        "Device",
        obj(
            device_props.clone(),
            &[
                "id",
                "name",
                "type",
                "labels",
                "groups",
                "enabled",
                "created_at",
                "connected",
            ],
        ),
    );
    let mut created = device_props.clone();
    created["token"] = s.clone();
    put("DeviceCreated", obj(created, &["id", "token"]));
    put("DevicePage", page_of("Device"));
    put(
        "DeviceCreate",
        obj(
            json!({ "id": s, "name": s, "type": s, "labels": strmap, "groups": strs,
        "metadata": { "type": "object" }, "enabled": b }),
            &["id"],
        ),
    );
    put(
        "DevicePatch",
        obj(
            json!({ "name": s, "type": s, "labels": strmap, "groups": strs,
        "metadata": { "type": "object" }, "enabled": b }),
            &[],
        ),
    );
    put(
        "DeviceImport",
        json!({ "oneOf": [
        { "type": "array", "items": { "$ref": "#/components/schemas/DeviceCreate" } },
        obj(json!({ "devices": { "type": "array", "items": { "$ref": "#/components/schemas/DeviceCreate" } } }), &["devices"]),
    ] }),
    );
    put(
        "ImportReport",
        obj(
            json!({ "created": int, "tokens": { "type": "array",
        "items": obj(json!({ "id": s, "token": s }), &["id", "token"]) } }),
            &["created"],
        ),
    );
    put("TokenRotate", obj(json!({ "grace_seconds": int }), &[]));
    put("DeviceToken", obj(json!({ "token": s }), &["token"]));
    put(
        "CertificateRequest",
        obj(json!({ "csr": s, "days": int }), &[]),
    );
    put("CertificateDays", obj(json!({ "days": int }), &[]));
    put(
        "Certificate",
        obj(
            json!({ "serial": s, "device_id": s, "issued_at": int, "not_after": int, "revoked_at": intn }),
            &["serial"],
        ),
    );
    put("CertificateList", items_of("Certificate"));
    put(
        "IssuedCertificate",
        json!({ "type": "object", "properties": { "serial": s, "certificate": s, "key": s, "ca": s } }),
    );
    // Provisioning.
    let template = obj(
        json!({ "type": s, "labels": strmap, "groups": strs, "id_pattern": s, "allow_list": strs, "bind_client_id": { "type": "boolean" } }),
        &[],
    );
    put(
        "ClaimCreate",
        obj(
            json!({ "name": s, "template": template, "max_uses": int, "expires_at": { "type": ["integer", "string"] } }),
            &["name"],
        ),
    );
    put(
        "Claim",
        obj(
            json!({ "id": s, "name": s, "template": { "type": "object" }, "max_uses": intn, "uses": int,
        "expires_at": intn, "revoked": b, "created_at": int, "token": { "type": "string", "description": "only when created" } }),
            &["id", "name", "uses", "revoked", "created_at"],
        ),
    );
    put("ClaimList", items_of("Claim"));
    put(
        "ProvisionRequest",
        obj(json!({ "device_id": s, "csr": s }), &["device_id"]),
    );
    put(
        "Provisioned",
        obj(
            json!({ "device_id": s, "token": s, "certificate": s, "ca": s }),
            &["device_id"],
        ),
    );
    // Rules and alarms.
    put(
        "RuleDefinition",
        obj(
            json!({ "name": s, "sql": s, "actions": { "type": "array", "items": { "type": "object" } },
        "enabled": b, "description": s }),
            &["sql"],
        ),
    );
    put(
        "Rule",
        obj(
            json!({ "name": s, "description": any, "sql": s, "actions": { "type": "array" }, "enabled": b,
        "filter": any, "created_at": int, "updated_at": int, "metrics": { "type": "object" } }),
            &["name", "sql", "enabled"],
        ),
    );
    put(
        "RuleList",
        obj(
            json!({ "items": { "type": "array", "items": { "$ref": "#/components/schemas/Rule" } }, "dropped": int,
        "queues": { "type": "array", "items": obj(json!({ "queued": int, "taken": int, "held": int, "dropped": int }), &[]) } }),
            &["items"],
        ),
    );
    put("Validation", obj(json!({ "valid": b }), &["valid"]));
    put("DryRun", json!({ "type": "object" }));
    put("TraceList", items_of("Object"));
    put(
        "Alarm",
        obj(
            json!({ "id": s, "device_id": s, "type": s, "severity": s, "state": s, "details": any,
        "count": int, "first_raised": int, "last_raised": int, "acknowledged_by": sn, "acknowledged": intn,
        "cleared_by": sn, "cleared": intn, "rule": sn }),
            &["id", "device_id", "type", "severity", "state"],
        ),
    );
    put("AlarmPage", page_of("Alarm"));
    put(
        "AlarmCounts",
        obj(
            json!({ "active": int, "unacknowledged": int,
        "active_by_severity": { "type": "object", "additionalProperties": int },
        "by_state": { "type": "object", "additionalProperties": int } }),
            &["active", "unacknowledged"],
        ),
    );
    // Twins, commands, presence.
    put(
        "TwinDocument",
        obj(
            json!({
        "state": obj(json!({ "desired": { "type": "object" }, "reported": { "type": "object" }, "delta": { "type": "object" } }), &[]),
        "metadata": { "type": "object" }, "version": int, "timestamp": any }),
            &["state", "version"],
        ),
    );
    put(
        "TwinPatch",
        obj(
            json!({ "desired": { "type": ["object", "null"] }, "version": int }),
            &["desired"],
        ),
    );
    put(
        "TwinList",
        obj(
            json!({ "items": { "type": "array", "items": obj(json!({ "name": s,
        "document": { "$ref": "#/components/schemas/TwinDocument" } }), &["name", "document"]) } }),
            &["items"],
        ),
    );
    put(
        "TwinQueryAnswer",
        json!({ "type": "object", "properties": { "items": strs, "next": sn } }),
    );
    put(
        "CommandCreate",
        obj(
            json!({ "method": s, "params": any, "timeout": { "type": "number" },
        "ttl": { "type": "number" }, "wait": b, "queue": b }),
            &["method"],
        ),
    );
    put(
        "Command",
        obj(
            json!({ "id": s, "device_id": s, "method": s, "params": any,
        "status": { "enum": ["queued", "sent", "delivered", "succeeded", "failed", "timed_out", "expired", "cancelled"] },
        "trail": { "type": "array", "items": obj(json!({ "status": s, "time": int }), &["status", "time"]) },
        "created_at": int, "timeout_ms": int, "expires_at": int, "response": any, "error": any }),
            &["id", "device_id", "method", "status"],
        ),
    );
    put("CommandPage", page_of("Command"));
    put(
        "Presence",
        obj(
            json!({ "state": { "enum": ["never_connected", "online", "inactive", "offline"] },
        "connected": b, "last_connected": intn, "last_disconnected": intn, "last_seen": intn,
        "address": sn, "protocol": any, "last_reason": any }),
            &["state", "connected"],
        ),
    );
    put(
        "FleetStatus",
        obj(
            json!({ "groups": { "type": "object", "additionalProperties": obj(json!({
        "online": int, "offline": int, "inactive": int, "never_connected": int, "total": int }),
        &["online", "offline", "inactive", "never_connected", "total"]) } }),
            &["groups"],
        ),
    );
    // Operators.
    put(
        "Login",
        obj(
            json!({ "username": s, "password": s }),
            &["username", "password"],
        ),
    );
    put(
        "Session",
        json!({ "type": "object", "properties": { "token": s }, "required": ["token"] }),
    );
    put(
        "Me",
        obj(
            json!({ "name": s, "role": { "enum": ["viewer", "operator", "admin"] } }),
            &["name", "role"],
        ),
    );
    put(
        "User",
        obj(
            json!({ "username": s, "role": s, "disabled": b, "created_at": int }),
            &["username", "role", "disabled"],
        ),
    );
    put("UserList", items_of("User"));
    put(
        "UserCreate",
        obj(
            json!({ "username": s, "password": s, "role": s }),
            &["username", "password", "role"],
        ),
    );
    put(
        "UserPatch",
        obj(json!({ "role": s, "disabled": b, "password": s }), &[]),
    );
    put(
        "ApiToken",
        obj(
            json!({ "id": s, "name": s, "role": s, "owner": sn, "created_at": int, "expires_at": intn,
        "session": b, "token": { "type": "string", "description": "only when created" } }),
            &["id", "name", "role"],
        ),
    );
    put("ApiTokenList", items_of("ApiToken"));
    put(
        "ApiTokenCreate",
        obj(
            json!({ "name": s, "role": s, "expires_at": { "type": ["integer", "string"] }, "owner": s }),
            &["name", "role"],
        ),
    );
    put(
        "AuditEntry",
        obj(
            json!({ "seq": int, "time": int, "actor": s, "action": s, "target": s, "source": s,
        "status": int, "details": any }),
            &["seq", "time", "actor", "action", "status"],
        ),
    );
    put("AuditPage", page_of("AuditEntry"));
    Json::Object(m)
}
