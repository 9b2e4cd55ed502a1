//! The route table: every operation of the API.

use super::Access::{Admin, Claim, Operator, Public, Viewer};
use super::Guard::{AdminOnly, Audited, Credential, Data, InfluxV1, InfluxV2, Open, Session};
use super::{op, RouteSpec};

const PAGE: &[(&str, &str)] = &[
    ("limit", "page size"),
    ("after", "cursor: `next` of the previous page"),
];
const WRITES: &[u16] = &[415, 507];

/// Every route of the API, with its handler and the middleware it runs
/// behind: `crate::router` registers exactly these.
pub(crate) const ROUTES: &[RouteSpec] = &[
    // Meta.
    op(
        h!(crate::health),
        Open,
        "GET",
        "/health", Public, "meta", "Liveness").ok(&[(200, Some("Health"))]),
    op(
        h!(crate::ping),
        Open,
        "GET",
        "/ping",
        Public,
        "meta",
        "InfluxDB's liveness probe (204, X-Influxdb-Version), for InfluxDB clients and Telegraf",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::health),
        Open,
        "GET",
        "/health/live",
        Public,
        "meta",
        "Liveness: the process serves HTTP",
    )
    .ok(&[(200, Some("Health"))]),
    op(
        h!(crate::ready),
        Open,
        "GET",
        "/health/ready",
        Public,
        "meta",
        "Readiness: every check (the broker accepts work, its last persistence commit succeeded) passes; 503 names the failing ones",
    )
    .ok(&[(200, Some("Ready"))]),
    op(
        h!(crate::metrics_text),
        Data,
        "GET",
        "/metrics",
        Viewer,
        "meta",
        "Every figure of the platform in the Prometheus text format (docs/observability.md)",
    )
    .ok(&[(200, Some("PrometheusText"))]),
    op(
        h!(crate::prom::query),
        Data,
        "GET",
        "/api/v1/query",
        Viewer,
        "prometheus",
        "PromQL instant query over the telemetry store (Prometheus HTTP API; docs/observability.md)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::query_range),
        Data,
        "GET",
        "/api/v1/query_range",
        Viewer,
        "prometheus",
        "PromQL range query over the telemetry store (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::series),
        Data,
        "GET",
        "/api/v1/series",
        Viewer,
        "prometheus",
        "Series matching match[] selectors (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::labels),
        Data,
        "GET",
        "/api/v1/labels",
        Viewer,
        "prometheus",
        "Label names (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::query),
        Data,
        "POST",
        "/api/v1/query",
        Viewer,
        "prometheus",
        "PromQL instant query over the telemetry store (Prometheus HTTP API; docs/observability.md)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::query_range),
        Data,
        "POST",
        "/api/v1/query_range",
        Viewer,
        "prometheus",
        "PromQL range query over the telemetry store (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::series),
        Data,
        "POST",
        "/api/v1/series",
        Viewer,
        "prometheus",
        "Series matching match[] selectors (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::labels),
        Data,
        "POST",
        "/api/v1/labels",
        Viewer,
        "prometheus",
        "Label names (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::label_values),
        Data,
        "GET",
        "/api/v1/label/{name}/values",
        Viewer,
        "prometheus",
        "Values of a label; __name__ gives the metric names (Prometheus HTTP API)",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::prom::buildinfo),
        Data,
        "GET",
        "/api/v1/status/buildinfo",
        Viewer,
        "prometheus",
        "Build information, as Grafana's Prometheus data source asks for it",
    )
    .ok(&[(200, Some("PromAnswer"))]),
    op(
        h!(crate::openapi::document),
        Open,
        "GET",
        "/api/openapi.json",
        Public,
        "meta",
        "This OpenAPI 3.1 document",
    )
    .ok(&[(200, Some("OpenApi"))]),
    op(
        h!(crate::openapi::docs),
        Open,
        "GET",
        "/api/docs",
        Public,
        "meta",
        "The API reference page (HTML)",
    )
    .ok(&[(200, Some("Html"))]),
    // Telemetry.
    op(
        h!(crate::write::write_lp::<crate::write::V2>),
        InfluxV2,
        "POST",
        "/api/v2/write",
        Operator,
        "telemetry",
        "InfluxDB 2.x line protocol",
    )
    .query(&[
        ("org", "accepted and ignored"),
        ("bucket", "accepted and ignored"),
        ("precision", "ns, us, ms or s"),
    ])
    .body("LineProtocol")
    .ok(&[(204, None)])
    .errors(WRITES),
    op(
        h!(crate::prom::influx_query),
        InfluxV1,
        "GET",
        "/query",
        Viewer,
        "telemetry",
        "InfluxDB 1.x query endpoint with an InfluxQL subset (docs/observability.md)",
    )
    .ok(&[(200, Some("InfluxAnswer"))]),
    op(
        h!(crate::prom::influx_query),
        InfluxV1,
        "POST",
        "/query",
        Viewer,
        "telemetry",
        "InfluxDB 1.x query endpoint with an InfluxQL subset (docs/observability.md)",
    )
    .ok(&[(200, Some("InfluxAnswer"))]),
    op(
        h!(crate::write::write_lp::<crate::write::V1>),
        InfluxV1,
        "POST",
        "/write",
        Operator,
        "telemetry",
        "InfluxDB 1.x line protocol",
    )
    .query(&[
        ("db", "accepted and ignored"),
        ("rp", "accepted and ignored"),
        ("precision", "n, u, ms, s, m or h"),
        ("u", "user (ignored)"),
        ("p", "the token, as InfluxDB 1.x clients send it"),
    ])
    .body("LineProtocol")
    .ok(&[(204, None)])
    .errors(WRITES),
    op(
        h!(crate::write::write_device),
        Data,
        "POST",
        "/api/telemetry/{device}",
        Operator,
        "telemetry",
        "Device telemetry JSON, stamped with server time",
    )
    .body("DeviceTelemetry")
    .ok(&[(204, None)])
    .errors(WRITES),
    op(
        h!(crate::write::write_batch),
        Data,
        "POST",
        "/api/telemetry",
        Operator,
        "telemetry",
        "Batch of points",
    )
    .body("TelemetryBatch")
    .ok(&[(204, None)])
    .errors(WRITES),
    op(
        h!(crate::query::query),
        Data,
        "GET",
        "/api/telemetry/query",
        Viewer,
        "telemetry",
        "Raw points, or time-bucket aggregates with agg and bucket",
    )
    .query(&[
        ("device", "required: comma list or *"),
        ("metric", "comma list or * (all when absent)"),
        (
            "start",
            "Unix ms, RFC 3339, now or now-<duration>; default end-1h",
        ),
        ("end", "as start; default now"),
        ("limit", "raw points per page, 1 to 100000"),
        ("agg", "avg, min, max, sum, count, first or last"),
        ("bucket", "30s, 10m, 1h, 1d or milliseconds"),
        ("group_by", "series, device, label:<key> or all"),
        (
            "format",
            "json, csv or columnar (arrays per series; also Accept: application/vnd.millwright.columnar+json)",
        ),
    ])
    .ok(&[(200, Some("TelemetryQueryAnswer"))]),
    op(
        h!(crate::query::latest),
        Data,
        "GET",
        "/api/telemetry/latest",
        Viewer,
        "telemetry",
        "Latest point per series",
    )
    .query(&[
        ("device", "required: comma list or *"),
        ("metric", "comma list or *"),
        ("format", "json or csv"),
    ])
    .ok(&[(200, Some("LatestAnswer"))]),
    op(
        h!(crate::query::stats),
        Data,
        "GET",
        "/api/telemetry/stats",
        Viewer,
        "telemetry",
        "Storage statistics and query work counters",
    )
    .ok(&[(200, Some("Object"))]),
    op(
        h!(crate::system),
        Data,
        "GET",
        "/api/system",
        Viewer,
        "telemetry",
        "Version and the broker's figures: connections, sessions, message and byte counters, queue drops",
    )
    .ok(&[(200, Some("Object"))]),
    op(
        h!(crate::query::device_series),
        Data,
        "GET",
        "/api/devices/{id}/series",
        Viewer,
        "telemetry",
        "The metrics (series) of a device",
    )
    .ok(&[(200, Some("SeriesList"))]),
    op(
        h!(crate::stream::stream),
        Data,
        "GET",
        "/api/stream",
        Viewer,
        "telemetry",
        "Live Server-Sent Events: telemetry, presence, alarms, twins",
    )
    .query(&[
        ("devices", "comma list or * (default *)"),
        ("metrics", "comma list (default all)"),
        (
            "events",
            "comma list of telemetry, presence, alarms, twins (default all)",
        ),
    ])
    .ok(&[(200, Some("EventStream"))])
    .errors(&[429]),
    // Devices.
    op(
        h!(crate::devices::create),
        Audited,
        "POST",
        "/api/devices",
        Operator,
        "devices",
        "Create a device (its token shown once)",
    )
    .body("DeviceCreate")
    .ok(&[(201, Some("DeviceCreated"))]),
    op(
        h!(crate::devices::list),
        Audited,
        "GET",
        "/api/devices", Viewer, "devices", "List devices")
        .query(&[
            ("type", "device type"),
            ("group", "group name"),
            ("label", "k:v, repeatable"),
            ("enabled", "true or false"),
            ("state", "online or offline"),
            ("prefix", "id prefix"),
            ("limit", "1 to 1000, default 100"),
            ("after", "cursor"),
        ])
        .ok(&[(200, Some("DevicePage"))]),
    op(
        h!(crate::devices::get),
        Audited,
        "GET",
        "/api/devices/{id}", Viewer, "devices", "One device").ok(&[(200, Some("Device"))]),
    op(
        h!(crate::devices::update),
        Audited,
        "PATCH",
        "/api/devices/{id}",
        Operator,
        "devices",
        "Change a device; enabled false drops its sessions",
    )
    .body("DevicePatch")
    .ok(&[(200, Some("Device"))]),
    op(
        h!(crate::devices::delete),
        Audited,
        "DELETE",
        "/api/devices/{id}",
        Operator,
        "devices",
        "Delete a device with its tokens, certificates, twins and commands",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::devices::import),
        Audited,
        "POST",
        "/api/devices/import",
        Operator,
        "devices",
        "Bulk create, JSON or CSV, all or nothing",
    )
    .query(&[("tokens", "true: issue and return a token per device")])
    .body("DeviceImport")
    .ok(&[(200, Some("ImportReport"))])
    .errors(&[415, 422]),
    op(
        h!(crate::devices::issue_token),
        Audited,
        "POST",
        "/api/devices/{id}/tokens",
        Operator,
        "devices",
        "New device token",
    )
    .body("TokenRotate")
    .ok(&[(201, Some("DeviceToken"))]),
    op(
        h!(crate::devices::revoke_tokens),
        Audited,
        "DELETE",
        "/api/devices/{id}/tokens",
        Operator,
        "devices",
        "Revoke every token of the device",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::certs::issue),
        Audited,
        "POST",
        "/api/devices/{id}/certificates",
        Operator,
        "certificates",
        "Issue a device certificate",
    )
    .body("CertificateRequest")
    .ok(&[(201, Some("IssuedCertificate"))]),
    op(
        h!(crate::certs::list),
        Audited,
        "GET",
        "/api/devices/{id}/certificates",
        Viewer,
        "certificates",
        "The device's certificates",
    )
    .ok(&[(200, Some("CertificateList"))]),
    op(
        h!(crate::certs::revoke),
        Audited,
        "POST",
        "/api/certificates/{serial}/revoke",
        Operator,
        "certificates",
        "Revoke a certificate",
    )
    .ok(&[(200, Some("Certificate"))]),
    op(
        h!(crate::certs::ca),
        Audited,
        "GET",
        "/api/ca",
        Viewer,
        "certificates",
        "The CA certificate (PEM)",
    )
    .ok(&[(200, Some("Pem"))]),
    // Provisioning.
    op(
        h!(crate::claims::create),
        Audited,
        "POST",
        "/api/claims",
        Operator,
        "provisioning",
        "Create a claim (its token shown once)",
    )
    .body("ClaimCreate")
    .ok(&[(201, Some("Claim"))]),
    op(
        h!(crate::claims::list),
        Audited,
        "GET",
        "/api/claims",
        Viewer,
        "provisioning",
        "List claims (never their tokens)",
    )
    .ok(&[(200, Some("ClaimList"))]),
    op(
        h!(crate::claims::revoke),
        Audited,
        "DELETE",
        "/api/claims/{id}",
        Operator,
        "provisioning",
        "Revoke a claim",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::claims::certificate),
        Audited,
        "POST",
        "/api/claims/{id}/certificate",
        Operator,
        "provisioning",
        "A claim certificate and its key, for provisioning over mTLS",
    )
    .body("CertificateDays")
    .ok(&[(201, Some("IssuedCertificate"))]),
    op(
        h!(crate::claims::provision),
        Credential,
        "POST",
        "/api/provision",
        Claim,
        "provisioning",
        "A device registers itself with a claim token",
    )
    .body("ProvisionRequest")
    .ok(&[(201, Some("Provisioned"))]),
    // Rules and alarms.
    op(
        h!(crate::rule_routes::list),
        Audited,
        "GET",
        "/api/rules", Viewer, "rules", "List rules").ok(&[(200, Some("RuleList"))]),
    op(
        h!(crate::rule_routes::create),
        Audited,
        "POST",
        "/api/rules", Operator, "rules", "Create a rule")
        .body("RuleDefinition")
        .ok(&[(201, Some("Rule"))]),
    op(
        h!(crate::rule_routes::validate),
        Audited,
        "POST",
        "/api/rules/validate",
        Operator,
        "rules",
        "Check a rule without saving it",
    )
    .body("RuleDefinition")
    .ok(&[(200, Some("Validation"))]),
    op(
        h!(crate::rule_routes::dry_run),
        Audited,
        "POST",
        "/api/rules/dry-run",
        Operator,
        "rules",
        "Evaluate a rule over sample messages",
    )
    .body("DryRun")
    .ok(&[(200, Some("Object"))]),
    op(
        h!(crate::rule_routes::get),
        Audited,
        "GET",
        "/api/rules/{name}", Viewer, "rules", "One rule").ok(&[(200, Some("Rule"))]),
    op(
        h!(crate::rule_routes::replace),
        Audited,
        "PUT",
        "/api/rules/{name}",
        Operator,
        "rules",
        "Replace a rule",
    )
    .body("RuleDefinition")
    .ok(&[(200, Some("Rule"))]),
    op(
        h!(crate::rule_routes::delete),
        Audited,
        "DELETE",
        "/api/rules/{name}",
        Operator,
        "rules",
        "Delete a rule",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::rule_routes::enable),
        Audited,
        "POST",
        "/api/rules/{name}/enable",
        Operator,
        "rules",
        "Enable a rule",
    )
    .ok(&[(200, Some("Rule"))]),
    op(
        h!(crate::rule_routes::disable),
        Audited,
        "POST",
        "/api/rules/{name}/disable",
        Operator,
        "rules",
        "Disable a rule",
    )
    .ok(&[(200, Some("Rule"))]),
    op(
        h!(crate::rule_routes::traces),
        Audited,
        "GET",
        "/api/rules/{name}/traces",
        Viewer,
        "rules",
        "Recent evaluations of a rule",
    )
    .ok(&[(200, Some("TraceList"))]),
    op(
        h!(crate::rule_routes::alarms),
        Audited,
        "GET",
        "/api/alarms", Viewer, "alarms", "List alarms")
        .query(&[
            ("device", "device id"),
            ("type", "alarm type"),
            ("severity", "severity"),
            (
                "state",
                "active, cleared, active_unack, active_ack, cleared_unack or cleared_ack",
            ),
            ("since", "Unix ms or RFC 3339"),
            ("until", "Unix ms or RFC 3339"),
            ("limit", "1 to 1000, default 100"),
            ("after", "cursor"),
        ])
        .ok(&[(200, Some("AlarmPage"))]),
    op(
        h!(crate::rule_routes::counts),
        Audited,
        "GET",
        "/api/alarms/counts",
        Viewer,
        "alarms",
        "Alarm counts by state and severity",
    )
    .ok(&[(200, Some("AlarmCounts"))]),
    op(
        h!(crate::rule_routes::alarm),
        Audited,
        "GET",
        "/api/alarms/{id}", Viewer, "alarms", "One alarm").ok(&[(200, Some("Alarm"))]),
    op(
        h!(crate::rule_routes::acknowledge),
        Audited,
        "POST",
        "/api/alarms/{id}/ack",
        Operator,
        "alarms",
        "Acknowledge an alarm",
    )
    .ok(&[(200, Some("Alarm"))]),
    op(
        h!(crate::rule_routes::clear),
        Audited,
        "POST",
        "/api/alarms/{id}/clear",
        Operator,
        "alarms",
        "Clear an alarm",
    )
    .ok(&[(200, Some("Alarm"))]),
    // Twins, commands, presence.
    op(
        h!(crate::twins::get_classic),
        Audited,
        "GET",
        "/api/devices/{id}/twin",
        Viewer,
        "twins",
        "The classic twin's document (ETag: version)",
    )
    .ok(&[(200, Some("TwinDocument"))]),
    op(
        h!(crate::twins::patch_classic),
        Audited,
        "PATCH",
        "/api/devices/{id}/twin",
        Operator,
        "twins",
        "Merge-patch desired (If-Match or version for a conditional change)",
    )
    .body("TwinPatch")
    .ok(&[(200, Some("TwinDocument"))])
    .errors(&[412]),
    op(
        h!(crate::twins::list),
        Audited,
        "GET",
        "/api/devices/{id}/twins",
        Viewer,
        "twins",
        "Every twin of a device",
    )
    .ok(&[(200, Some("TwinList"))]),
    op(
        h!(crate::twins::get_named),
        Audited,
        "GET",
        "/api/devices/{id}/twins/{name}",
        Viewer,
        "twins",
        "A named twin's document",
    )
    .ok(&[(200, Some("TwinDocument"))]),
    op(
        h!(crate::twins::patch_named),
        Audited,
        "PATCH",
        "/api/devices/{id}/twins/{name}",
        Operator,
        "twins",
        "Merge-patch a named twin's desired state",
    )
    .body("TwinPatch")
    .ok(&[(200, Some("TwinDocument"))])
    .errors(&[412]),
    op(
        h!(crate::twins::query),
        Audited,
        "GET",
        "/api/twins",
        Viewer,
        "twins",
        "Ids of devices whose twin matches a query",
    )
    .query(&[
        ("name", "twin name (classic when absent)"),
        ("query", "e.g. reported.fw = \"1.2\" and desired.speed > 10"),
        ("limit", "page size"),
        ("after", "cursor"),
    ])
    .ok(&[(200, Some("TwinQueryAnswer"))]),
    op(
        h!(crate::commands::create),
        Audited,
        "POST",
        "/api/devices/{id}/commands",
        Operator,
        "commands",
        "Send a command",
    )
    .body("CommandCreate")
    .ok(&[(202, Some("Command")), (200, Some("Command"))])
    .errors(&[504]),
    op(
        h!(crate::commands::list),
        Audited,
        "GET",
        "/api/devices/{id}/commands",
        Viewer,
        "commands",
        "The device's commands, oldest first",
    )
    .query(PAGE)
    .ok(&[(200, Some("CommandPage"))]),
    op(
        h!(crate::commands::get),
        Audited,
        "GET",
        "/api/devices/{id}/commands/{cmd}",
        Viewer,
        "commands",
        "One command",
    )
    .ok(&[(200, Some("Command"))]),
    op(
        h!(crate::commands::cancel),
        Audited,
        "POST",
        "/api/devices/{id}/commands/{cmd}/cancel",
        Operator,
        "commands",
        "Cancel a command not yet final",
    )
    .ok(&[(200, Some("Command"))]),
    op(
        h!(crate::presence::get),
        Audited,
        "GET",
        "/api/devices/{id}/presence",
        Viewer,
        "fleet",
        "A device's presence",
    )
    .ok(&[(200, Some("Presence"))]),
    op(
        h!(crate::presence::fleet_status),
        Audited,
        "GET",
        "/api/fleet/status",
        Viewer,
        "fleet",
        "Presence counts, whole fleet or grouped",
    )
    .query(&[("group_by", "type, group or label:<key>")])
    .ok(&[(200, Some("FleetStatus"))]),
    // Operators.
    op(
        h!(crate::operators::login),
        Credential,
        "POST",
        "/api/auth/login",
        Public,
        "operators",
        "Log in: a session token",
    )
    .body("Login")
    .ok(&[(200, Some("Session"))])
    .errors(&[429]),
    op(
        h!(crate::operators::logout),
        Session,
        "POST",
        "/api/auth/logout",
        Viewer,
        "operators",
        "End the session used",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::operators::me),
        Session,
        "GET",
        "/api/auth/me",
        Viewer,
        "operators",
        "Who the credential is",
    )
    .ok(&[(200, Some("Me"))]),
    op(
        h!(crate::operators::list_users),
        AdminOnly,
        "GET",
        "/api/users",
        Admin,
        "operators",
        "List operator accounts",
    )
    .ok(&[(200, Some("UserList"))]),
    op(
        h!(crate::operators::create_user),
        AdminOnly,
        "POST",
        "/api/users",
        Admin,
        "operators",
        "Create an operator account",
    )
    .body("UserCreate")
    .ok(&[(201, Some("User"))]),
    op(
        h!(crate::operators::update_user),
        AdminOnly,
        "PATCH",
        "/api/users/{name}",
        Admin,
        "operators",
        "Change an operator account",
    )
    .body("UserPatch")
    .ok(&[(200, Some("User"))]),
    op(
        h!(crate::operators::delete_user),
        AdminOnly,
        "DELETE",
        "/api/users/{name}",
        Admin,
        "operators",
        "Delete an operator account",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::operators::list_tokens),
        AdminOnly,
        "GET",
        "/api/tokens",
        Admin,
        "operators",
        "API tokens and sessions",
    )
    .ok(&[(200, Some("ApiTokenList"))]),
    op(
        h!(crate::operators::create_token),
        AdminOnly,
        "POST",
        "/api/tokens",
        Admin,
        "operators",
        "Create an API token (shown once)",
    )
    .body("ApiTokenCreate")
    .ok(&[(201, Some("ApiToken"))]),
    op(
        h!(crate::operators::revoke_token),
        AdminOnly,
        "DELETE",
        "/api/tokens/{id}",
        Admin,
        "operators",
        "Revoke a token or session",
    )
    .ok(&[(204, None)]),
    op(
        h!(crate::audit::query),
        AdminOnly,
        "GET",
        "/api/audit",
        Admin,
        "operators",
        "The audit log, newest first",
    )
    .query(&[
        ("actor", "principal"),
        ("action", "e.g. device.create"),
        ("target", "object id"),
        ("since", "Unix ms or RFC 3339"),
        ("until", "Unix ms or RFC 3339"),
        ("limit", "page size"),
        ("before", "cursor: `next` of the previous page"),
    ])
    .ok(&[(200, Some("AuditPage"))]),
];
