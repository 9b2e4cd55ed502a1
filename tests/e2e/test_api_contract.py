"""API contract: the OpenAPI document against the running binary.

One Millwright process (TLS off, a bootstrap admin token; the Platform of
test_devices.py). The test fetches `/api/openapi.json` and exercises every
operation in it at least once, in a fixed order (creating what later calls
need: devices, a claim, a user, a rule and, through MQTT telemetry, an
alarm), checking that each status is one the document lists for that
operation and that every error is an RFC 9457 problem document. An
operation the table below does not exercise fails the test by name, so the
table stays complete as routes are added; an entry for an operation the
document does not list fails too.

`GET /api/stream` needs the binary's broker stream source: while the binary
has none it answers 503 (`unavailable`), which the document lists and this
test accepts; once it answers 200 the test reads the first bytes of the
event stream and checks its content type.

Then the error shapes: 401 without a token, 403 for a viewer on an operator
route, 404 for an unknown device, 400 naming the `field` of a bad body.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from helpers import V5, MqttClient, unique, wait_until
from mwplatform import ADMIN_TOKEN
from test_devices import Platform

pytestmark = pytest.mark.millwright_only(reason="Millwright's HTTP API")

PROBLEM_MEMBERS = ("type", "title", "status", "detail", "code")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("contract"))
    p.start()
    try:
        yield p
    finally:
        p.kill9()


def assert_problem(r, status: int, code: str | None = None):
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/problem+json"), r.headers
    assert isinstance(r.body, dict), r
    for m in PROBLEM_MEMBERS:
        assert m in r.body, (m, r)
    assert r.body["status"] == status, r
    if code is not None:
        assert r.body["code"] == code, r
    return r.body


def raw(plat, method: str, path: str, data: bytes, ctype: str, token: str | None = ADMIN_TOKEN,
        scheme: str = "Bearer"):
    """A request with a non-JSON body, answered like Platform.api."""
    hdrs = {"Content-Type": ctype}
    if token is not None:
        hdrs["Authorization"] = f"{scheme} {token}"
    req = urllib.request.Request(f"{plat.url}{path}", data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, body, h = r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        status, body, h = e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}
    from mwplatform import Resp
    text = body.decode(errors="replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Resp(status, parsed, text, h)


def stream(plat, ctx):
    """`GET /api/stream`: 503 without the binary's stream source, else an
    event stream whose first bytes arrive at once."""
    req = urllib.request.Request(f"{plat.url}/api/stream?devices={ctx['dev']}&events=telemetry",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    from mwplatform import Resp
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers.get("content-type", "").startswith("text/event-stream"), r.headers
            first = r.readline().decode()
            assert first.startswith(":"), first
            return Resp(r.status, None, first, {k.lower(): v for k, v in r.headers.items()})
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        r = Resp(e.code, json.loads(body) if body else None, body,
                 {k.lower(): v for k, v in e.headers.items()})
        assert_problem(r, 503, "unavailable")
        return r


def raise_alarm(plat, ctx):
    """Telemetry over MQTT that trips the contract rule; returns the alarm."""
    dev = ctx["dev"]
    c = MqttClient(plat, dev, version=V5, username=dev, password=ctx["dev_token"])
    c.connect()
    try:
        c.publish(f"devices/{dev}/telemetry", json.dumps({"temp": 120}), qos=1)
        found = {}

        def raised():
            r = plat.ok("GET", f"/api/alarms?device={dev}", expect=200)
            found["items"] = r.body["items"]
            return bool(found["items"])
        wait_until(raised, 10, interval=0.1, what="the contract rule's alarm")
    finally:
        c.disconnect()
    ctx["alarm"] = found["items"][0]["id"]
    return plat.api("GET", f"/api/alarms/{ctx['alarm']}")


def _rule(ctx):
    return {"name": ctx["rule"],
            "sql": "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 100",
            "actions": [{"type": "alarm", "alarm_type": "contract_hot", "severity": "major"}]}


def _save(key, member="id"):
    def f(ctx, r):
        ctx[key] = r.body[member]
    return f


# (method, path, request builder(plat, ctx) -> Resp, optional after(ctx, resp)).
# Order matters: later calls use what earlier ones made; deletions come last.
def table(ctx):
    dev, dev2 = ctx["dev"], ctx["dev2"]
    return [
        ("GET", "/health", lambda p: p.api("GET", "/health", token=None), None),
        ("GET", "/health/live", lambda p: p.api("GET", "/health/live", token=None), None),
        ("GET", "/ping", lambda p: p.api("GET", "/ping", token=None), None),
        ("GET", "/query", lambda p: p.api("GET", "/query?db=plant&q=SHOW%20MEASUREMENTS"), None),
        ("POST", "/query",
         lambda p: p.api("POST", "/query", "q=SHOW%20DATABASES",
                         ctype="application/x-www-form-urlencoded"), None),
        ("GET", "/health/ready", lambda p: p.api("GET", "/health/ready", token=None), None),
        ("GET", "/api/openapi.json", lambda p: p.api("GET", "/api/openapi.json", token=None), None),
        ("GET", "/api/docs", lambda p: p.api("GET", "/api/docs", token=None), None),
        # Devices and credentials.
        ("POST", "/api/devices",
         lambda p: p.api("POST", "/api/devices", {"id": dev, "type": "press",
                                                  "labels": {"line": "a"}}),
         _save("dev_token", "token")),
        ("GET", "/api/devices", lambda p: p.api("GET", "/api/devices?type=press&limit=10"), None),
        ("GET", "/api/devices/{id}", lambda p: p.api("GET", f"/api/devices/{dev}"), None),
        ("PATCH", "/api/devices/{id}",
         lambda p: p.api("PATCH", f"/api/devices/{dev}", {"name": "Contract press"}), None),
        ("POST", "/api/devices/import",
         lambda p: p.api("POST", "/api/devices/import?tokens=true", [{"id": dev2}]), None),
        ("POST", "/api/devices/{id}/tokens",
         lambda p: p.api("POST", f"/api/devices/{dev}/tokens", {"grace_seconds": 600}),
         _save("dev_token", "token")),
        ("POST", "/api/devices/{id}/certificates",
         lambda p: p.api("POST", f"/api/devices/{dev}/certificates", {"days": 2}),
         _save("serial", "serial")),
        ("GET", "/api/devices/{id}/certificates",
         lambda p: p.api("GET", f"/api/devices/{dev}/certificates"), None),
        ("POST", "/api/certificates/{serial}/revoke",
         lambda p: p.api("POST", f"/api/certificates/{ctx['serial']}/revoke"), None),
        ("GET", "/api/ca", lambda p: p.api("GET", "/api/ca"), None),
        # Telemetry.
        ("POST", "/api/telemetry/{device}",
         lambda p: p.api("POST", f"/api/telemetry/{dev}", {"temp": 20.5}), None),
        ("POST", "/api/telemetry",
         lambda p: p.api("POST", "/api/telemetry",
                         {"points": [{"device": dev, "metric": "rpm", "value": 1200}]}), None),
        ("POST", "/api/v2/write",
         lambda p: raw(p, "POST", "/api/v2/write?org=o&bucket=b&precision=ms",
                       f"press,device={dev} load=3".encode(), "text/plain", scheme="Token"), None),
        ("POST", "/write",
         lambda p: raw(p, "POST", "/write?db=x", f"press,device={dev} load=4".encode(),
                       "text/plain"), None),
        ("GET", "/api/telemetry/query",
         lambda p: p.api("GET", f"/api/telemetry/query?device={dev}&start=now-1h"), None),
        ("GET", "/api/telemetry/latest",
         lambda p: p.api("GET", f"/api/telemetry/latest?device={dev}"), None),
        ("GET", "/api/telemetry/stats", lambda p: p.api("GET", "/api/telemetry/stats"), None),
        ("GET", "/api/system", lambda p: p.api("GET", "/api/system"), None),
        ("GET", "/metrics", lambda p: p.api("GET", "/metrics"), None),
        # The Prometheus query API (GET, and POST with a form body).
        ("GET", "/api/v1/query",
         lambda p: p.api("GET", f"/api/v1/query?query=temp&time=1700000000"), None),
        ("POST", "/api/v1/query",
         lambda p: p.api("POST", "/api/v1/query", f"query=temp&time=1700000000",
                         ctype="application/x-www-form-urlencoded"), None),
        ("GET", "/api/v1/query_range",
         lambda p: p.api("GET", f"/api/v1/query_range?query=temp&start=1700000000"
                                f"&end=1700000060&step=15"), None),
        ("POST", "/api/v1/query_range",
         lambda p: p.api("POST", "/api/v1/query_range",
                         f"query=temp&start=1700000000&end=1700000060&step=15",
                         ctype="application/x-www-form-urlencoded"), None),
        ("GET", "/api/v1/series",
         lambda p: p.api("GET", "/api/v1/series?match[]=temp"), None),
        ("POST", "/api/v1/series",
         lambda p: p.api("POST", "/api/v1/series", "match[]=temp",
                         ctype="application/x-www-form-urlencoded"), None),
        ("GET", "/api/v1/labels", lambda p: p.api("GET", "/api/v1/labels"), None),
        ("POST", "/api/v1/labels",
         lambda p: p.api("POST", "/api/v1/labels", "",
                         ctype="application/x-www-form-urlencoded"), None),
        ("GET", "/api/v1/label/{name}/values",
         lambda p: p.api("GET", "/api/v1/label/device/values"), None),
        ("GET", "/api/v1/status/buildinfo", lambda p: p.api("GET", "/api/v1/status/buildinfo"),
         None),
        ("GET", "/api/devices/{id}/series", lambda p: p.api("GET", f"/api/devices/{dev}/series"),
         None),
        ("GET", "/api/stream", lambda p: stream(p, ctx), None),
        # Rules and alarms.
        ("POST", "/api/rules/validate",
         lambda p: p.api("POST", "/api/rules/validate", _rule(ctx)), None),
        ("POST", "/api/rules", lambda p: p.api("POST", "/api/rules", _rule(ctx)), None),
        ("GET", "/api/rules", lambda p: p.api("GET", "/api/rules"), None),
        ("GET", "/api/rules/{name}", lambda p: p.api("GET", f"/api/rules/{ctx['rule']}"), None),
        ("PUT", "/api/rules/{name}",
         lambda p: p.api("PUT", f"/api/rules/{ctx['rule']}",
                         {**_rule(ctx), "description": "contract"}), None),
        ("POST", "/api/rules/dry-run",
         lambda p: p.api("POST", "/api/rules/dry-run",
                         {"definition": _rule(ctx), "topic": f"devices/{dev}/telemetry",
                          "payload": {"temp": 150}}), None),
        ("POST", "/api/rules/{name}/disable",
         lambda p: p.api("POST", f"/api/rules/{ctx['rule']}/disable"), None),
        ("POST", "/api/rules/{name}/enable",
         lambda p: p.api("POST", f"/api/rules/{ctx['rule']}/enable"), None),
        ("GET", "/api/alarms", lambda p: raise_alarm(p, ctx) and p.api("GET", "/api/alarms"),
         None),
        ("GET", "/api/rules/{name}/traces",
         lambda p: p.api("GET", f"/api/rules/{ctx['rule']}/traces"), None),
        ("GET", "/api/alarms/counts", lambda p: p.api("GET", "/api/alarms/counts"), None),
        ("GET", "/api/alarms/{id}", lambda p: p.api("GET", f"/api/alarms/{ctx['alarm']}"), None),
        ("POST", "/api/alarms/{id}/ack",
         lambda p: p.api("POST", f"/api/alarms/{ctx['alarm']}/ack"), None),
        ("POST", "/api/alarms/{id}/clear",
         lambda p: p.api("POST", f"/api/alarms/{ctx['alarm']}/clear"), None),
        # Twins, commands, presence.
        ("GET", "/api/devices/{id}/twin", lambda p: p.api("GET", f"/api/devices/{dev}/twin"),
         None),
        ("PATCH", "/api/devices/{id}/twin",
         lambda p: p.api("PATCH", f"/api/devices/{dev}/twin", {"desired": {"speed": 10}}), None),
        ("GET", "/api/devices/{id}/twins", lambda p: p.api("GET", f"/api/devices/{dev}/twins"),
         None),
        ("PATCH", "/api/devices/{id}/twins/{name}",
         lambda p: p.api("PATCH", f"/api/devices/{dev}/twins/cfg", {"desired": {"mode": "a"}}),
         None),
        ("GET", "/api/devices/{id}/twins/{name}",
         lambda p: p.api("GET", f"/api/devices/{dev}/twins/cfg"), None),
        ("GET", "/api/twins",
         lambda p: p.api("GET", "/api/twins?query=" + urllib.request.quote("desired.speed > 5")),
         None),
        ("POST", "/api/devices/{id}/commands",
         lambda p: p.api("POST", f"/api/devices/{dev}/commands", {"method": "reboot"}),
         _save("cmd")),
        ("GET", "/api/devices/{id}/commands",
         lambda p: p.api("GET", f"/api/devices/{dev}/commands"), None),
        ("GET", "/api/devices/{id}/commands/{cmd}",
         lambda p: p.api("GET", f"/api/devices/{dev}/commands/{ctx['cmd']}"), None),
        ("POST", "/api/devices/{id}/commands/{cmd}/cancel",
         lambda p: p.api("POST", f"/api/devices/{dev}/commands/{ctx['cmd']}/cancel"), None),
        ("GET", "/api/devices/{id}/presence",
         lambda p: p.api("GET", f"/api/devices/{dev}/presence"), None),
        ("GET", "/api/fleet/status", lambda p: p.api("GET", "/api/fleet/status?group_by=type"),
         None),
        # Provisioning.
        ("POST", "/api/claims",
         lambda p: p.api("POST", "/api/claims", {"name": "contract", "max_uses": 5,
                                                 "template": {"type": "press"}}),
         lambda c, r: c.update(claim=r.body["id"], claim_token=r.body["token"])),
        ("GET", "/api/claims", lambda p: p.api("GET", "/api/claims"), None),
        ("POST", "/api/claims/{id}/certificate",
         lambda p: p.api("POST", f"/api/claims/{ctx['claim']}/certificate", {"days": 1}), None),
        ("POST", "/api/provision",
         lambda p: p.api("POST", "/api/provision", {"device_id": ctx["dev3"]},
                         token=ctx["claim_token"]), None),
        ("DELETE", "/api/claims/{id}", lambda p: p.api("DELETE", f"/api/claims/{ctx['claim']}"),
         None),
        # Operators.
        ("POST", "/api/users",
         lambda p: p.api("POST", "/api/users", {"username": ctx["user"],
                                                "password": "contract-password-1",
                                                "role": "viewer"}), None),
        ("GET", "/api/users", lambda p: p.api("GET", "/api/users"), None),
        ("PATCH", "/api/users/{name}",
         lambda p: p.api("PATCH", f"/api/users/{ctx['user']}", {"role": "operator"}), None),
        ("POST", "/api/auth/login",
         lambda p: p.api("POST", "/api/auth/login", {"username": ctx["user"],
                                                     "password": "contract-password-1"},
                         token=None),
         _save("session", "token")),
        ("GET", "/api/auth/me", lambda p: p.api("GET", "/api/auth/me", token=ctx["session"]),
         None),
        ("POST", "/api/auth/logout",
         lambda p: p.api("POST", "/api/auth/logout", token=ctx["session"]), None),
        ("POST", "/api/tokens",
         lambda p: p.api("POST", "/api/tokens", {"name": "contract-viewer", "role": "viewer"}),
         lambda c, r: c.update(viewer_id=r.body["id"], viewer=r.body["token"])),
        ("GET", "/api/tokens", lambda p: p.api("GET", "/api/tokens"), None),
        ("GET", "/api/audit", lambda p: p.api("GET", "/api/audit?limit=5"), None),
        # Deletions.
        ("DELETE", "/api/devices/{id}/tokens",
         lambda p: p.api("DELETE", f"/api/devices/{dev2}/tokens"), None),
        ("DELETE", "/api/rules/{name}", lambda p: p.api("DELETE", f"/api/rules/{ctx['rule']}"),
         None),
        ("DELETE", "/api/devices/{id}", lambda p: p.api("DELETE", f"/api/devices/{dev2}"), None),
        ("DELETE", "/api/users/{name}", lambda p: p.api("DELETE", f"/api/users/{ctx['user']}"),
         None),
        ("DELETE", "/api/tokens/{id}", lambda p: p.api("DELETE", f"/api/tokens/{ctx['viewer_id']}"),
         None),
    ]


def test_every_documented_operation_answers_a_documented_status(plat):
    doc = plat.ok("GET", "/api/openapi.json", token=None, expect=200).body
    assert doc["openapi"].startswith("3.1"), doc.get("openapi")
    documented = {(m.upper(), path): op for path, ops in doc["paths"].items()
                  for m, op in ops.items()}
    ctx = {"dev": unique("ct-dev"), "dev2": unique("ct-dev2"), "dev3": unique("ct-prov"),
           "rule": unique("ct_rule").replace("-", "_"), "user": unique("ct-user")}
    rows = table(ctx)
    in_table = {(m, p) for m, p, _, _ in rows}
    assert not in_table - set(documented), f"table entries not in the document: {in_table - set(documented)}"
    missing = sorted(set(documented) - in_table)
    assert not missing, f"documented operations the contract test does not exercise: {missing}"

    failures = []
    for method, path, build, after in rows:
        r = build(plat)
        allowed = set(documented[(method, path)]["responses"])
        if str(r.status) not in allowed:
            failures.append(f"{method} {path}: {r.status} not in {sorted(allowed)}: {r!r}")
            continue
        if r.status >= 400:
            try:
                assert_problem(r, r.status)
            except AssertionError as e:
                failures.append(f"{method} {path}: not a problem document: {e}")
        elif after is not None:
            after(ctx, r)
        if r.status >= 400 and path != "/api/stream":
            failures.append(f"{method} {path}: the contract call failed: {r!r}")
    assert not failures, "\n".join(failures)


def test_the_document_is_valid_openapi_31(plat):
    doc = plat.ok("GET", "/api/openapi.json", token=None, expect=200).body
    try:
        from openapi_spec_validator import validate
    except ImportError:  # not installed: the structure, checked by hand
        validate = None
    if validate is not None:
        validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["x-required-role"] in ("none", "claim", "viewer", "operator", "admin"), op
            assert op["responses"], (method, path)
            for code, resp in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert resp["$ref"] == f"#/components/responses/{code}", (method, path, code)
            if op["x-required-role"] in ("viewer", "operator", "admin"):
                assert op["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= set(op["responses"]), (method, path)
    for code in ("400", "401", "403", "404", "409"):
        content = doc["components"]["responses"][code]["content"]
        assert content["application/problem+json"]["schema"]["$ref"] == \
            "#/components/schemas/Problem"
    html = plat.api("GET", "/api/docs", token=None)
    assert html.status == 200 and html.headers["content-type"].startswith("text/html")
    assert "<script" not in html.text
    for path, ops in doc["paths"].items():
        assert path.replace("&", "&amp;") in html.text, path


def test_error_shapes(plat):
    # 401 without a credential.
    r = plat.api("GET", "/api/devices", token=None)
    assert_problem(r, 401, "unauthorized")
    assert "bearer" in r.headers.get("www-authenticate", "").lower(), r.headers
    # 403 for a viewer on an operator route.
    viewer = plat.ok("POST", "/api/tokens", {"name": unique("ct-shape"), "role": "viewer"},
                     expect=201).body
    r = plat.api("POST", "/api/devices", {"id": unique("ct-x")}, token=viewer["token"])
    assert_problem(r, 403, "forbidden")
    assert plat.api("GET", "/api/devices", token=viewer["token"]).status == 200
    # 404 for an unknown device.
    assert_problem(plat.api("GET", f"/api/devices/{unique('nope')}"), 404, "not_found")
    # 400 naming the offending member.
    body = assert_problem(plat.api("POST", "/api/devices", {"id": unique("ct-y"), "colour": 1}),
                          400, "bad_body")
    assert body.get("field") == "colour", body
    body = assert_problem(plat.api("POST", "/api/devices", {"id": unique("ct-z"), "enabled": "no"}),
                          400, "bad_body")
    assert body.get("field") == "enabled", body
    plat.ok("DELETE", f"/api/tokens/{viewer['id']}", expect=204)
    # The document's Problem schema requires what the server sends.
    doc = plat.api("GET", "/api/openapi.json", token=None).body
    assert set(PROBLEM_MEMBERS) <= set(doc["components"]["schemas"]["Problem"]["required"])
