"""The rules engine and alarms end to end, with real clients only.

A Millwright process (MQTT over TCP and the HTTP API on free ports, TLS off)
is driven with paho-mqtt 2.x devices and observers, urllib for the operator
API, and a local HTTP server started by the tests as the webhook receiver,
against the contract of docs/rules.md:

1. the headline scenario: a press above 85 for 2 s raises a critical alarm,
   calls a webhook and sends the device a slow-down command; repeated
   values update the one alarm; an operator acknowledges it; the rule
   clears it when the value drops; every change is an `$events/alarms/...`
   message; the trace shows each evaluation and each action's result;
2. webhooks to an endpoint that is down are queued on disk and delivered
   with back-off once it is up (also across kill -9), without holding the
   engine back;
3. parse errors (line and column), bad actions (the field), validation, and
   runtime errors that stay in one rule's trace;
4. hot changes (replace, disable, enable, delete) and rules surviving kill -9;
5. the other actions (republish with templates, store, twin), windows,
   platform events as a rule source, the republish hop limit;
6. dry runs: what a rule would do, without doing it or changing its state.

Tests share one platform (each uses its own devices and topics, and deletes
its rules); the restart tests start their own.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import mwplatform
from conftest import BROKER_KIND, free_ports
from mwplatform import Resp, _log_on_failure, _lower  # noqa: F401 (the fixture)
from helpers import ABSENCE_WAIT, TIMEOUT, V5, MqttClient, unique, wait_until

pytestmark = pytest.mark.millwright_only(reason="the rules engine and alarms are Millwright's")


# Every platform of this module: webhook calls give up quickly on a dead
# endpoint (the back-off itself is fixed: 1 s doubling), and may reach the
# test's receivers on loopback (refused by default: rules.webhook_allow_private
# / webhook_allowed_cidrs).
RULES_SETTINGS = {"webhook_timeout_secs": 1, "webhook_allowed_cidrs": ["127.0.0.0/8"]}
DEVICES_SETTINGS = {"scan_interval_ms": 100}


# =========================================================================
# The platform under test
# =========================================================================

class Platform(mwplatform.Platform):
    """A Millwright process without TLS; anonymous observers allowed."""

    def __init__(self, root: Path, *, mqtt: dict | None = None, rules: dict | None = None):
        m = {"allow_anonymous": True}
        m.update(mqtt or {})
        r = dict(RULES_SETTINGS)
        r.update(rules or {})
        super().__init__(root, mqtt=m, sections={"devices": DEVICES_SETTINGS, "rules": r})

    def api_token(self, name: str, role: str = "operator") -> str:
        r = self.ok("POST", "/api/tokens", {"name": name, "role": role}, expect=201)
        return r.body["token"]

    # ------------------------------------------------------------- rules
    def create_rule(self, name: str, sql: str, actions: list, **extra) -> dict:
        r = self.ok("POST", "/api/rules", {"name": name, "sql": sql, "actions": actions, **extra},
                    expect=201)
        assert r.body["name"] == name and r.body["sql"] == sql, r
        return r.body

    def rule(self, name: str) -> dict:
        return self.ok("GET", f"/api/rules/{name}", expect=200).body

    def metrics(self, name: str) -> dict:
        return self.rule(name)["metrics"]

    def traces(self, name: str) -> list[dict]:
        """The rule's trace, OLDEST first (the API answers newest first)."""
        items = self.ok("GET", f"/api/rules/{name}/traces", expect=200).body["items"]
        return list(reversed(items))

    def wait_evaluations(self, name: str, n: int, timeout: float = TIMEOUT) -> dict:
        """Waits until the rule has evaluated exactly `n` messages (more is a
        failure: the test knows what it sent) and finished with them: the
        counter goes up before the actions run, the trace entry is added
        after them. (n stays below rules.trace_capacity in these tests.)"""
        seen = {}

        def reached():
            seen["m"] = self.metrics(name)
            assert seen["m"]["evaluations"] <= n, (
                f"rule {name}: more evaluations than messages sent ({n}): {seen['m']}")
            return seen["m"]["evaluations"] == n and len(self.traces(name)) == n
        try:
            wait_until(reached, timeout, interval=0.02, what=f"{n} evaluations of {name}")
        except AssertionError as e:
            raise AssertionError(f"{e}; metrics {seen.get('m')}; trace "
                                 f"{self.traces(name)[-3:]}") from None
        return self.metrics(name)

    def dry_run(self, body: dict) -> dict:
        return self.ok("POST", "/api/rules/dry-run", body, expect=200).body

    # ------------------------------------------------------------ alarms
    def alarms(self, **query) -> list[dict]:
        qs = urllib.parse.urlencode(query)
        return self.ok("GET", f"/api/alarms?{qs}", expect=200).body["items"]

    def alarm(self, alarm_id: str) -> dict:
        return self.ok("GET", f"/api/alarms/{alarm_id}", expect=200).body

    def counts(self) -> dict:
        return self.ok("GET", "/api/alarms/counts", expect=200).body


# =========================================================================
# The webhook receiver
# =========================================================================

class Receiver:
    """A local HTTP server recording every POST (path, headers, parsed JSON
    body) in arrival order; answers 200."""

    def __init__(self, port: int | None = None):
        self.port = port if port is not None else free_ports(1)[0]
        self.calls: list[dict] = []
        self._cond = threading.Condition()
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/millwright"

    def start(self) -> "Receiver":
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    raw = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        raw += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                call = {"path": self.path, "headers": _lower(self.headers), "body": body,
                        "raw": raw}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with recv._cond:
                    recv.calls.append(call)
                    recv._cond.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def snapshot(self) -> list[dict]:
        with self._cond:
            return list(self.calls)

    def wait_for(self, n: int, timeout: float = TIMEOUT, what: str | None = None) -> list[dict]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.calls) >= n, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for "
                                     f"{what or f'{n} webhook call(s)'}; got "
                                     f"{[c['body'] for c in self.calls]}")
            return list(self.calls)

    def assert_stays(self, n: int, wait: float = ABSENCE_WAIT) -> list[dict]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.calls) > n, wait)
            assert len(self.calls) == n, (
                f"expected exactly {n} webhook call(s), got {[c['body'] for c in self.calls]}")
            return list(self.calls)


# =========================================================================
# Clients and helpers
# =========================================================================

def connect_device(mk, plat, dev: str, token: str, **kw) -> MqttClient:
    """A device connection: username = id, password = token, client id = id."""
    c = mk(plat, dev, version=V5, username=dev, password=token)
    c.connect(**kw)
    return c


def observer(mk, plat, *topics: str) -> MqttClient:
    """An anonymous client (full access: no ACL file) subscribed to `topics`."""
    c = mk(plat, unique("observer"), version=V5)
    c.connect()
    for t in topics:
        c.subscribe(t, 1)
    return c


def on_topic(c: MqttClient, topic: str) -> list[dict]:
    return [json.loads(m.payload) for m in c.messages.snapshot() if m.topic == topic]


def wait_on_topic(c: MqttClient, topic: str, n: int, timeout: float = TIMEOUT) -> list[dict]:
    c.messages.wait_until(lambda ms: sum(1 for m in ms if m.topic == topic) >= n, timeout,
                          what=f"{n} message(s) on {topic}")
    return on_topic(c, topic)


def telemetry(d: MqttClient, dev: str, payload: dict) -> None:
    """A QoS 1 telemetry message, acknowledged (so the platform has it)."""
    d.publish(f"devices/{dev}/telemetry", json.dumps(payload), qos=1)


def detail_of(r: Resp) -> tuple[int, int]:
    """(line, column) named in a parse error's detail."""
    m = re.search(r"line (\d+), column (\d+)", r.body.get("detail", ""))
    assert m, f"no 'line N, column M' in the detail: {r}"
    return int(m.group(1)), int(m.group(2))


# =========================================================================
# Fixtures
# =========================================================================

def _skip_unless_millwright():
    if BROKER_KIND != "millwright":
        pytest.skip("the rules engine and alarms are Millwright's")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    """The shared platform: tests use their own device ids and topics."""
    _skip_unless_millwright()
    p = Platform(tmp_path_factory.mktemp("rules"))
    p.start()
    yield p
    p.kill9()


@pytest.fixture
def fresh(tmp_path):
    """Factory of platforms for this test only (all killed at teardown)."""
    _skip_unless_millwright()
    made: list[Platform] = []

    def make(**kw) -> Platform:
        p = Platform(tmp_path / f"platform{len(made)}", **kw)
        made.append(p)
        p.start()
        return p

    yield make
    for p in made:
        p.kill9()


@pytest.fixture
def mk():
    """Factory of helpers.MqttClient; all are closed at teardown."""
    made: list[MqttClient] = []

    def make(plat, client_id=None, **kw) -> MqttClient:
        c = MqttClient(plat, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def receivers():
    """Factory of webhook receivers (not started); all stopped at teardown."""
    made: list[Receiver] = []

    def make(port: int | None = None) -> Receiver:
        r = Receiver(port)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def rules(plat):
    """Creates rules on the shared platform and deletes them at teardown,
    so that no rule of one test acts on another test's messages."""
    made: list[str] = []

    def make(name: str, sql: str, actions: list, **extra) -> dict:
        body = plat.create_rule(name, sql, actions, **extra)
        made.append(name)
        return body

    yield make
    if plat.running:
        for name in made:
            plat.api("DELETE", f"/api/rules/{name}")


# =========================================================================
# 1. The scenario: above 85 for 2 s -> critical alarm, webhook, slow-down
# =========================================================================

def test_overheat_alarm_webhook_and_command(plat, mk, rules, receivers):
    dev = "press-1"
    token = plat.add_device(dev, type="press")
    ops_name = unique("ops")
    ops = plat.api_token(ops_name, "operator")
    hook = receivers().start()
    obs = observer(mk, plat, "$events/alarms/#")
    d = connect_device(mk, plat, dev, token)
    d.subscribe(f"devices/{dev}/commands/+", 1)
    counts_before = plat.counts()

    name = unique("press-overheat")
    sql = ("SELECT temp, device_id() AS device FROM 'devices/+/telemetry' "
           "WHERE temp > 85 FOR 2s")
    actions = [
        {"type": "alarm", "alarm_type": "overheat", "severity": "critical", "auto_clear": True},
        {"type": "webhook", "url": hook.url},
        {"type": "command", "method": "set_speed", "params": {"rpm": 600}},
    ]
    r = rules(name, sql, actions, description="a press above 85 for 2 s")
    assert r["enabled"] is True and r["actions"] == actions, r
    assert r["description"] == "a press above 85 for 2 s", r
    assert r["metrics"]["evaluations"] == 0 and r["metrics"]["matches"] == 0, r
    listed = plat.ok("GET", "/api/rules", expect=200).body["items"]
    assert name in [x["name"] for x in listed], listed

    # The first high values: evaluated, no match yet, nothing raised or sent.
    sent = 0
    for _ in range(2):
        telemetry(d, dev, {"temp": 90})
        sent += 1
    plat.wait_evaluations(name, sent)
    tr = plat.traces(name)
    assert [t["matched"] for t in tr] == [False, False], tr
    assert all(t["actions"] == [] and t["outputs"] == {} for t in tr), tr
    assert plat.alarms(device=dev) == []
    assert hook.snapshot() == []
    assert [m for m in d.messages.snapshot() if "/commands/" in m.topic] == []

    # Keep sending a high value every 0.2 s until the alarm is raised.
    deadline = time.monotonic() + 8
    raised: list[dict] = []
    while not raised:
        assert time.monotonic() < deadline, (
            f"no alarm after {sent} messages over 8 s; trace {plat.traces(name)[-3:]}")
        telemetry(d, dev, {"temp": 90})
        sent += 1
        time.sleep(0.2)  # the device's pace, not synchronisation
        raised = plat.alarms(device=dev, type="overheat")
    plat.wait_evaluations(name, sent)
    tr = plat.traces(name)
    first_match = next(t for t in tr if t["matched"])
    assert first_match["time"] - tr[0]["time"] >= 2000, (
        f"matched before the value was high for 2 s: {tr}")
    assert all(not t["matched"] for t in tr if t["time"] - tr[0]["time"] < 2000), tr

    (al,) = raised
    assert al["device_id"] == dev and al["type"] == "overheat", al
    assert al["severity"] == "critical" and al["state"] == "active_unack", al
    assert al["rule"] == name, al
    assert al["details"] == {"temp": 90, "device": dev}, al
    assert al["count"] >= 1 and al["first_raised"] <= al["last_raised"], al
    assert al["acknowledged_by"] is None and al["cleared_by"] is None, al
    assert plat.alarm(al["id"])["id"] == al["id"]

    # The webhook receiver got a POST with JSON.
    call = hook.wait_for(1, what="the overheat webhook")[0]
    assert call["path"] == "/hooks/millwright", call
    assert call["headers"].get("content-type", "").startswith("application/json"), call
    body = call["body"]
    assert isinstance(body, dict), call
    assert body["rule"] == name and body["device_id"] == dev, body
    assert body["outputs"] == {"temp": 90, "device": dev}, body
    assert body["group"] == dev and isinstance(body["time"], int), body

    # The device got the slow-down command.
    d.messages.wait_until(lambda ms: any("/commands/" in m.topic for m in ms),
                          what="the set_speed command")
    cmd_msg = next(m for m in d.messages.snapshot() if "/commands/" in m.topic)
    assert json.loads(cmd_msg.payload) == {"method": "set_speed", "params": {"rpm": 600}}, \
        cmd_msg.payload
    cmd_id = cmd_msg.topic.rsplit("/", 1)[1]
    c = plat.ok("GET", f"/api/devices/{dev}/commands/{cmd_id}", expect=200).body
    assert c["method"] == "set_speed" and c["params"] == {"rpm": 600}, c

    # More high values update the same alarm: one active alarm, its count
    # is the number of matches.
    for _ in range(3):
        telemetry(d, dev, {"temp": 90})
        sent += 1
    m = plat.wait_evaluations(name, sent)
    active = plat.alarms(device=dev, type="overheat", state="active")
    assert len(active) == 1 and active[0]["id"] == al["id"], active
    assert active[0]["count"] == m["matches"] >= 4, (active, m)
    assert active[0]["last_raised"] >= al["last_raised"], active
    assert active[0]["first_raised"] == al["first_raised"], active
    matches = m["matches"]
    assert m["errors"] == 0 and m["action_failures"] == 0, m
    assert m["avg_eval_us"] > 0, m

    # The counts see one more critical, unacknowledged alarm.
    cn = plat.counts()
    assert cn["active"] == counts_before["active"] + 1, (counts_before, cn)
    assert cn["unacknowledged"] == counts_before["unacknowledged"] + 1, (counts_before, cn)
    assert (cn["active_by_severity"]["critical"]
            == counts_before["active_by_severity"]["critical"] + 1), (counts_before, cn)
    assert cn["by_state"]["active_unack"] == counts_before["by_state"]["active_unack"] + 1, cn
    # The history's filters.
    assert [a["id"] for a in plat.alarms(device=dev, severity="critical")] == [al["id"]]
    assert plat.alarms(device=dev, severity="minor") == []
    assert plat.alarms(device=dev, state="cleared") == []
    assert [a["id"] for a in plat.alarms(device=dev, state="active_unack")] == [al["id"]]
    plat.problem("GET", "/api/alarms?state=burning", status=400, code="bad_parameter",
                 field="state")

    # Every match called the webhook and sent a command.
    calls = hook.wait_for(matches, what=f"{matches} webhook calls")
    assert len(calls) == matches, [c["body"] for c in calls]
    assert all(c["body"]["outputs"]["temp"] == 90 for c in calls), calls
    d.messages.wait_until(lambda ms: sum("/commands/" in x.topic for x in ms) >= matches,
                          what=f"{matches} commands")
    # A viewer may look but not acknowledge.
    viewer = plat.api_token(unique("viewer"), "viewer")
    assert plat.api("GET", f"/api/alarms/{al['id']}", token=viewer).status == 200
    plat.problem("POST", f"/api/alarms/{al['id']}/ack", token=viewer, status=403,
                 code="forbidden")

    # An operator acknowledges it: who and when; twice is a conflict.
    r = plat.ok("POST", f"/api/alarms/{al['id']}/ack", token=ops, expect=200)
    assert r.body["state"] == "active_ack", r
    assert r.body["acknowledged_by"] == f"token:{ops_name}", r
    assert isinstance(r.body["acknowledged"], int) and r.body["acknowledged"] > 0, r
    plat.problem("POST", f"/api/alarms/{al['id']}/ack", token=ops, status=409, code="conflict")
    assert plat.counts()["unacknowledged"] == counts_before["unacknowledged"]

    # The value drops: the rule stops matching and clears its alarm.
    telemetry(d, dev, {"temp": 70})
    sent += 1
    plat.wait_evaluations(name, sent)
    seen = {}

    def cleared():
        seen["a"] = plat.alarm(al["id"])
        return seen["a"]["state"] == "cleared_ack"
    try:
        wait_until(cleared, TIMEOUT, interval=0.05, what="the alarm cleared")
    except AssertionError:
        raise AssertionError(f"alarm not cleared_ack after temp 70: {seen.get('a')}") from None
    a = seen["a"]
    assert a["cleared_by"] == f"rule:{name}", a
    assert isinstance(a["cleared"], int) and a["cleared"] >= a["acknowledged"], a
    assert a["acknowledged_by"] == f"token:{ops_name}" and a["count"] == matches, a
    assert plat.alarms(device=dev, state="active") == []
    assert [x["id"] for x in plat.alarms(device=dev, state="cleared_ack")] == [al["id"]]
    plat.problem("POST", f"/api/alarms/{al['id']}/clear", token=ops, status=409, code="conflict")
    cn = plat.counts()
    assert cn["active"] == counts_before["active"], (counts_before, cn)
    assert cn["by_state"]["cleared_ack"] == counts_before["by_state"]["cleared_ack"] + 1, cn

    # The events: raised, updated per further match, acknowledged, cleared.
    topic = f"$events/alarms/{dev}/overheat"
    obs.messages.wait_until(
        lambda ms: any(x.topic == topic and json.loads(x.payload)["event"] == "cleared"
                       for x in ms), what="the cleared event")
    evs = on_topic(obs, topic)
    kinds = [e["event"] for e in evs]
    assert kinds == ["raised"] + ["updated"] * (matches - 1) + ["acknowledged", "cleared"], kinds
    assert all(e["alarm"]["id"] == al["id"] for e in evs), evs
    assert evs[0]["alarm"]["state"] == "active_unack" and evs[0]["alarm"]["count"] == 1, evs[0]
    assert evs[-2]["alarm"]["state"] == "active_ack", evs[-2]
    assert evs[-1]["alarm"] == plat.alarm(al["id"]), (evs[-1], plat.alarm(al["id"]))

    # The trace: every evaluation, each matched one with its three results,
    # the last one with the clearing.
    tr = plat.traces(name)
    assert len(tr) == sent, (sent, tr)
    assert all(t["topic"] == f"devices/{dev}/telemetry" for t in tr), tr
    assert json.loads(tr[0]["payload"]) == {"temp": 90}, tr[0]
    for t in tr:
        assert t["error"] is None and t["group"] == dev, t
        assert isinstance(t["latency_us"], int) and isinstance(t["time"], int), t
        if t["matched"]:
            assert t["outputs"] == {"temp": 90, "device": dev}, t
            assert [x["type"] for x in t["actions"]] == ["alarm", "webhook", "command"], t
            assert all(x["ok"] is True for x in t["actions"]), t
            assert t["actions"][0]["detail"]["alarm"] == al["id"], t
            assert "queued" in t["actions"][1]["detail"], t
            assert t["actions"][2]["detail"]["device"] == dev, t
    assert sum(t["matched"] for t in tr) == matches
    last = tr[-1]
    assert last["matched"] is False and json.loads(last["payload"]) == {"temp": 70}, last
    assert [x["type"] for x in last["actions"]] == ["clear_alarm"], last
    assert last["actions"][0]["ok"] is True and last["actions"][0]["detail"]["alarm"] == al["id"]
    times = [t["time"] for t in tr]
    assert times == sorted(times), "the trace is not newest first"



# =========================================================================
# 2. Webhooks to an endpoint that is down
# =========================================================================

def test_webhook_queued_while_endpoint_down(plat, mk, rules, receivers):
    dev = unique("hook")
    token = plat.add_device(dev, type="press")
    d = connect_device(mk, plat, dev, token)
    hook = receivers()  # its port: nothing listens there yet
    obs = observer(mk, plat, f"other/{dev}")

    name, other = unique("hook-down"), unique("hook-other")
    rules(name, f"SELECT n FROM 'devices/{dev}/telemetry' WHERE n < 10",
          [{"type": "webhook", "url": hook.url, "headers": {"X-Trace": "e2e"}}])
    rules(other, f"SELECT n FROM 'devices/{dev}/telemetry'",
          [{"type": "republish", "topic": f"other/{dev}"}])

    t0 = time.monotonic()
    for n in (1, 2, 3):
        telemetry(d, dev, {"n": n})
        plat.wait_evaluations(name, n)
    tr = plat.traces(name)
    assert [t["matched"] for t in tr] == [True] * 3, tr
    ids = []
    for t in tr:
        (res,) = t["actions"]
        assert res["type"] == "webhook" and res["ok"] is True, t
        assert res["detail"]["url"] == hook.url and isinstance(res["detail"]["queued"], int), t
        ids.append(res["detail"]["queued"])
        assert t["latency_us"] < 500_000, f"a dead endpoint held the engine back: {t}"
    assert ids == sorted(set(ids)), ids
    m = plat.metrics(name)
    assert m["matches"] == 3 and m["action_failures"] == 0, m

    # Meanwhile the engine goes on: more messages are evaluated, other
    # rules' actions happen.
    for n in (100, 101):
        telemetry(d, dev, {"n": n})
    plat.wait_evaluations(name, 5)
    got = wait_on_topic(obs, f"other/{dev}", 5)
    assert [x["n"] for x in got] == [1, 2, 3, 100, 101], got
    assert plat.metrics(name)["matches"] == 3

    # The endpoint comes up: the three calls arrive (back-off 1 s doubling:
    # they have failed once or twice by now).
    hook.start()
    calls = hook.wait_for(3, timeout=15, what="the three queued webhook calls")
    took = time.monotonic() - t0
    calls = hook.assert_stays(3)
    bodies = [c["body"] for c in calls]
    assert sorted(b["outputs"]["n"] for b in bodies) == [1, 2, 3], bodies
    assert all(b["rule"] == name and b["device_id"] == dev for b in bodies), bodies
    assert all(c["headers"].get("x-trace") == "e2e" for c in calls), calls
    # docs/rules.md promises no order after a failure; the body's time is the
    # order of the matches.
    by_time = sorted(bodies, key=lambda b: b["time"])
    assert [b["outputs"]["n"] for b in by_time] == [1, 2, 3], bodies
    arrival = [b["outputs"]["n"] for b in bodies]
    print(f"queued webhook calls arrived {took:.1f}s after the first match, in the order "
          f"{arrival}")


def test_webhook_queue_survives_kill9(fresh, mk, receivers):
    p = fresh()
    dev = unique("hook-k9")
    token = p.add_device(dev, type="press")
    d = connect_device(mk, p, dev, token)
    hook = receivers()
    name = unique("hook-k9")
    p.create_rule(name, f"SELECT n FROM 'devices/{dev}/telemetry'",
                  [{"type": "webhook", "url": hook.url}])
    telemetry(d, dev, {"n": 7})
    p.wait_evaluations(name, 1)
    (t,) = p.traces(name)
    assert t["actions"][0]["type"] == "webhook" and t["actions"][0]["ok"] is True, t
    assert (p.data / "outbox.redb").exists()

    p.kill9()
    d.wait_disconnected()
    p.start()
    hook.start()
    calls = hook.wait_for(1, timeout=15, what="the webhook call queued before kill -9")
    calls = hook.assert_stays(1)
    body = calls[0]["body"]
    assert body["rule"] == name and body["device_id"] == dev, body
    assert body["outputs"] == {"n": 7}, body


# =========================================================================
# 3. Parse errors, validation, runtime errors
# =========================================================================

def test_parse_errors_validation_and_runtime_errors(plat, mk, rules):
    good_actions = [{"type": "republish", "topic": "x/y"}]

    # SQL that does not parse: 400 naming "sql", with the line and column.
    bad_sql = [
        ("SELEC temp FROM 'devices/+/telemetry'", (1, 1)),
        ("SELECT temp FROM", (1, 17)),
        ("SELECT temp\nFROM 'devices/+/telemetry'\nWHERE temp >", (3, 13)),
        ("SELECT temp, FROM 'devices/+/telemetry'", (1, 14)),
        ("SELECT temp FROM 'devices/+/telemetry' WHERE nosuch(temp) > 1", (1, 46)),
        ("SELECT temp FROM 'devices/#/telemetry'", (1, None)),
        ("SELECT temp FROM 'devices/+/telemetry' WHERE temp > 85 FOR 5 parsecs", (1, None)),
        ("", (1, 1)),
    ]
    for sql, (line, col) in bad_sql:
        name = unique("bad-sql")
        body = {"name": name, "sql": sql, "actions": good_actions}
        r = plat.problem("POST", "/api/rules", body, status=400, code="bad_body", field="sql")
        got = detail_of(r)
        assert got[0] == line and (col is None or got[1] == col), (
            f"{sql!r}: expected line {line}, column {col}; got {r}")
        # validate answers the same, and nothing was saved.
        rv = plat.problem("POST", "/api/rules/validate", body, status=400, code="bad_body",
                          field="sql")
        assert detail_of(rv) == got, (r, rv)
        plat.problem("GET", f"/api/rules/{name}", status=404, code="not_found")

    # Bad actions: 400 naming the action's field.
    bad_actions = [
        ([{"type": "republish"}], "actions[0].topic"),
        ([{"type": "republish", "topic": "a/+"}], "actions[0].topic"),
        ([{"type": "republish", "topic": "a", "qos": 2}], "actions[0].qos"),
        ([{"type": "republish", "topic": "a"},
          {"type": "alarm", "alarm_type": "hot", "severity": "apocalyptic"}],
         "actions[1].severity"),
        ([{"type": "alarm", "severity": "minor"}], "actions[0].alarm_type"),
        ([{"type": "teleport"}], "actions[0].type"),
        ([{"topic": "a"}], "actions[0].type"),
        ([{"type": "webhook", "url": "ftp://example.com/x"}], "actions[0].url"),
        ([{"type": "webhook", "url": "http://x", "headers": {"a": 1}}], "actions[0].headers"),
        ([{"type": "command"}], "actions[0].method"),
        ([{"type": "command", "method": "m", "params": [1]}], "actions[0].params"),
        ([{"type": "store", "metric": "m"}], "actions[0].value"),
        ([{"type": "twin", "desired": 5}], "actions[0].desired"),
        ([{"type": "republish", "topic": "a", "colour": "red"}], "actions[0].colour"),
    ]
    for actions, field in bad_actions:
        body = {"name": unique("bad-act"), "sql": "SELECT * FROM 'a/b'", "actions": actions}
        plat.problem("POST", "/api/rules", body, status=400, code="bad_body", field=field)
        plat.problem("POST", "/api/rules/validate", body, status=400, code="bad_body",
                     field=field)
        plat.problem("GET", f"/api/rules/{body['name']}", status=404, code="not_found")
    plat.problem("POST", "/api/rules", {"name": unique("x"), "sql": "SELECT * FROM 'a'",
                                        "actions": {"type": "republish"}},
                 status=400, code="bad_body", field="actions")
    # Bad names, unknown fields, not JSON.
    for bad_name in ("", "has space", "a/b", "validate", "dry-run", "x" * 65):
        plat.problem("POST", "/api/rules", {"name": bad_name, "sql": "SELECT * FROM 'a'",
                                            "actions": []},
                     status=400, code="bad_body", field="name")
    plat.problem("POST", "/api/rules", {"name": unique("x"), "sql": "SELECT * FROM 'a'",
                                        "actions": [], "priority": 1},
                 status=400, code="bad_body", field="priority")
    r = plat.api("POST", "/api/rules", None, headers={"Content-Type": "application/json"})
    assert r.status == 400, r

    # validate: a good definition is valid and is not saved.
    vname = unique("valid")
    r = plat.ok("POST", "/api/rules/validate",
                {"name": vname, "sql": "SELECT avg(temp) OVER 5m AS a FROM 'devices/+/telemetry'",
                 "actions": good_actions}, expect=200)
    assert r.body == {"valid": True}, r
    plat.problem("GET", f"/api/rules/{vname}", status=404, code="not_found")

    dev = unique("rt")
    token = plat.add_device(dev, type="press")
    d = connect_device(mk, plat, dev, token)
    obs = observer(mk, plat, f"rt/{dev}/#")
    bad, good = unique("rt-bad"), unique("rt-good")
    rules(bad, f"SELECT temp * 'x' AS weird FROM 'devices/{dev}/telemetry' WHERE temp > 0",
          [{"type": "republish", "topic": f"rt/{dev}/bad"}])
    # A duplicate name is a conflict.
    plat.problem("POST", "/api/rules", {"name": bad, "sql": "SELECT * FROM 'a'", "actions": []},
                 status=409, code="conflict")
    rules(good, f"SELECT temp FROM 'devices/{dev}/telemetry' WHERE temp > 0",
          [{"type": "republish", "topic": f"rt/{dev}/good"}])

    # A runtime type problem: recorded in that rule's trace; the other rule
    # fires on the same message.
    telemetry(d, dev, {"temp": 5})
    plat.wait_evaluations(bad, 1)
    plat.wait_evaluations(good, 1)
    (g,) = plat.traces(good)
    assert g["matched"] is True and g["actions"][0]["ok"] is True, g
    assert wait_on_topic(obs, f"rt/{dev}/good", 1) == [{"temp": 5}]
    (t,) = plat.traces(bad)
    assert t["error"], f"no error recorded for temp * 'x': {t}"
    assert re.search(r"line 1, column \d+", t["error"]), t
    m = plat.metrics(bad)
    assert m["errors"] == 1 and m["evaluations"] == 1, m
    # (The failed expression is null; the rule still matched on temp > 0.)
    assert t["matched"] is True and t["outputs"] == {"weird": None}, t
    (g,) = plat.traces(good)
    assert g["error"] is None and g["matched"] is True, g
    assert plat.metrics(good)["errors"] == 0

    # And it keeps working for the next message.
    telemetry(d, dev, {"temp": 6})
    assert plat.wait_evaluations(bad, 2)["errors"] == 2
    plat.wait_evaluations(good, 2)
    g = plat.traces(good)[-1]
    assert g["matched"] is True and g["actions"][0]["ok"] is True, g
    assert wait_on_topic(obs, f"rt/{dev}/good", 2)[-1] == {"temp": 6}


# =========================================================================
# 4. Hot changes; rules survive a restart
# =========================================================================

def test_replace_disable_enable_delete_without_restart(plat, mk, rules):
    dev = unique("hot")
    token = plat.add_device(dev, type="press")
    d = connect_device(mk, plat, dev, token)
    obs = observer(mk, plat, f"hot/{dev}")
    topic = f"hot/{dev}"
    name, witness = unique("hot"), unique("hot-witness")
    actions = [{"type": "republish", "topic": topic, "payload": {"t": "${temp}"}}]
    r = rules(name, f"SELECT temp FROM 'devices/{dev}/telemetry' WHERE temp > 50", actions)
    created_at = r["created_at"]
    # A rule on the same messages, to know when the engine has seen them.
    rules(witness, f"SELECT temp FROM 'devices/{dev}/telemetry'", [])
    sent = 0

    def send(temp):
        nonlocal sent
        telemetry(d, dev, {"temp": temp})
        sent += 1
        plat.wait_evaluations(witness, sent)

    send(60)
    send(40)
    assert [x["t"] for x in wait_on_topic(obs, topic, 1)] == [60]
    obs.messages.assert_stays(1)

    # Replace: a lower threshold, at once.
    new_sql = f"SELECT temp FROM 'devices/{dev}/telemetry' WHERE temp > 30"
    r = plat.ok("PUT", f"/api/rules/{name}", {"sql": new_sql, "actions": actions}, expect=200)
    assert r.body["sql"] == new_sql and r.body["created_at"] == created_at, r
    assert r.body["updated_at"] >= created_at, r
    assert plat.rule(name)["sql"] == new_sql
    send(40)
    send(20)
    assert [x["t"] for x in wait_on_topic(obs, topic, 2)] == [60, 40]
    obs.messages.assert_stays(2)
    # PUT of an unknown rule, a different name in the body, bad SQL.
    plat.problem("PUT", f"/api/rules/{unique('nope')}", {"sql": new_sql, "actions": []},
                 status=404, code="not_found")
    plat.problem("PUT", f"/api/rules/{name}", {"name": "other", "sql": new_sql, "actions": []},
                 status=400, code="bad_body", field="name")
    plat.problem("PUT", f"/api/rules/{name}", {"sql": "SELECT FROM", "actions": []},
                 status=400, code="bad_body", field="sql")
    assert plat.rule(name)["sql"] == new_sql, "a refused PUT changed the rule"

    # Disable: no evaluations at all.
    r = plat.ok("POST", f"/api/rules/{name}/disable", expect=200)
    assert r.body["enabled"] is False, r
    before = plat.metrics(name)["evaluations"]
    for _ in range(3):
        send(90)
    assert plat.metrics(name)["evaluations"] == before
    obs.messages.assert_stays(2)
    assert plat.rule(name)["enabled"] is False

    # Enable: evaluating and acting again.
    r = plat.ok("POST", f"/api/rules/{name}/enable", expect=200)
    assert r.body["enabled"] is True, r
    send(91)
    assert plat.metrics(name)["evaluations"] == before + 1
    assert [x["t"] for x in wait_on_topic(obs, topic, 3)] == [60, 40, 91]

    # Delete: gone.
    plat.ok("DELETE", f"/api/rules/{name}", expect=204)
    plat.problem("GET", f"/api/rules/{name}", status=404, code="not_found")
    plat.problem("GET", f"/api/rules/{name}/traces", status=404, code="not_found")
    plat.problem("DELETE", f"/api/rules/{name}", status=404, code="not_found")
    plat.problem("POST", f"/api/rules/{name}/enable", status=404, code="not_found")
    assert name not in [x["name"] for x in plat.ok("GET", "/api/rules").body["items"]]
    send(95)
    obs.messages.assert_stays(3)


def test_rules_survive_kill9(fresh, mk):
    p = fresh()
    dev = unique("dur")
    token = p.add_device(dev, type="press")
    on, off = unique("dur-on"), unique("dur-off")
    p.create_rule(on, f"SELECT temp FROM 'devices/{dev}/telemetry' WHERE temp > 50",
                  [{"type": "republish", "topic": f"dur/{dev}/on"}], description="kept")
    p.create_rule(off, f"SELECT temp FROM 'devices/{dev}/telemetry'",
                  [{"type": "republish", "topic": f"dur/{dev}/off"}])
    p.ok("POST", f"/api/rules/{off}/disable", expect=200)
    # An alarm raised before the crash, which the rule clears after it.
    alarm_rule = unique("dur-alarm")
    p.create_rule(alarm_rule, f"SELECT temp FROM 'devices/{dev}/telemetry' WHERE temp > 100",
                  [{"type": "alarm", "alarm_type": "hot", "severity": "major",
                    "auto_clear": True}])
    d = connect_device(mk, p, dev, token)
    telemetry(d, dev, {"temp": 120})
    p.wait_evaluations(alarm_rule, 1)
    (al,) = p.alarms(device=dev)
    assert al["state"] == "active_unack" and al["rule"] == alarm_rule, al
    before = {r["name"]: r for r in p.ok("GET", "/api/rules").body["items"]}

    p.kill9()
    d.wait_disconnected()
    p.start()
    after = {r["name"]: r for r in p.ok("GET", "/api/rules").body["items"]}
    assert set(after) == {on, off, alarm_rule}, after
    for n in (on, off, alarm_rule):
        for k in ("sql", "actions", "enabled", "description", "created_at", "updated_at"):
            assert after[n][k] == before[n][k], (n, k, before[n], after[n])
    assert after[on]["enabled"] is True and after[off]["enabled"] is False, after

    obs = observer(mk, p, f"dur/{dev}/#")
    d = connect_device(mk, p, dev, token)
    telemetry(d, dev, {"temp": 60})
    assert wait_on_topic(obs, f"dur/{dev}/on", 1) == [{"temp": 60}]
    p.wait_evaluations(on, 1)
    assert p.metrics(off)["evaluations"] == 0
    obs.messages.assert_stays(1)
    # The alarm is still there, and the rule still clears it.
    p.wait_evaluations(alarm_rule, 1)
    a = p.alarm(al["id"])
    assert a["state"] == "cleared_unack" and a["cleared_by"] == f"rule:{alarm_rule}", a
    assert a["first_raised"] == al["first_raised"] and a["count"] == 1, a
    # Once cleared, the next raise starts a new alarm.
    telemetry(d, dev, {"temp": 130})
    p.wait_evaluations(alarm_rule, 2)
    new = p.alarms(device=dev, state="active")
    assert len(new) == 1 and new[0]["id"] != al["id"] and new[0]["count"] == 1, new
    assert new[0]["details"] == {"temp": 130}, new
    hist = p.alarms(device=dev, type="hot")
    assert [x["id"] for x in hist] == [new[0]["id"], al["id"]], hist  # newest first


# =========================================================================
# 5. The other actions, windows, platform events, the hop limit
# =========================================================================

def test_republish_store_twin_windows_and_events(plat, mk, rules):
    devs = {k: unique(f"act-{k}") for k in ("rep", "store", "twin", "win", "ev")}
    tokens = {k: plat.add_device(v, type="press") for k, v in devs.items()}
    obs = observer(mk, plat, "alerts/#", "avg/#", "seen/#")

    # republish with a payload template: numbers stay numbers.
    dv = devs["rep"]
    name = unique("rep")
    rules(name, f"SELECT temp, device_id() AS device FROM 'devices/{dv}/telemetry' "
                "WHERE temp > 85",
          [{"type": "republish", "topic": "alerts/${device}", "qos": 1,
            "payload": {"device": "${device}", "temp": "${temp}", "msg": "hot: ${temp}",
                        "from": "${topic}", "fixed": [1, "${temp}"]}}])
    d = connect_device(mk, plat, dv, tokens["rep"])
    telemetry(d, dv, {"temp": 91.5})
    (got,) = wait_on_topic(obs, f"alerts/{dv}", 1)
    assert got == {"device": dv, "temp": 91.5, "msg": "hot: 91.5",
                   "from": f"devices/{dv}/telemetry", "fixed": [1, 91.5]}, got
    assert isinstance(got["temp"], float)
    plat.wait_evaluations(name, 1)
    (t,) = plat.traces(name)
    assert t["actions"] == [{"type": "republish", "ok": True,
                             "detail": {"topic": f"alerts/{dv}"}}], t

    # store a derived value as telemetry of the device.
    dv = devs["store"]
    name = unique("store")
    rules(name, f"SELECT temp * 1.8 + 32 AS f FROM 'devices/{dv}/telemetry'",
          [{"type": "store", "metric": "temp_f", "value": "${f}"}])
    d = connect_device(mk, plat, dv, tokens["store"])
    telemetry(d, dv, {"temp": 100})
    plat.wait_evaluations(name, 1)
    (t,) = plat.traces(name)
    assert t["actions"][0]["ok"] is True, t
    seen = {}

    def stored():
        r = plat.ok("GET", f"/api/telemetry/latest?device={dv}&metric=temp_f", expect=200)
        seen["r"] = r
        return r.body["latest"]
    pts = wait_until(stored, TIMEOUT, interval=0.05, what="the stored temp_f")
    assert len(pts) == 1 and pts[0]["device"] == dv and pts[0]["metric"] == "temp_f", seen["r"]
    assert abs(pts[0]["value"] - 212.0) < 1e-9, seen["r"]
    # (the device's own temp is stored by telemetry ingest, unchanged)

    # twin: desired fields of the device.
    dv = devs["twin"]
    name = unique("twin")
    rules(name, f"SELECT mode FROM 'devices/{dv}/telemetry' WHERE mode = 'fault'",
          [{"type": "twin", "desired": {"speed": 0, "mode": "${mode}", "why": "rule ${mode}"}}])
    d = connect_device(mk, plat, dv, tokens["twin"])
    d.subscribe(f"devices/{dv}/twin/delta", 1)
    telemetry(d, dv, {"mode": "run"})
    telemetry(d, dv, {"mode": "fault"})
    plat.wait_evaluations(name, 2)
    tw = plat.ok("GET", f"/api/devices/{dv}/twin", expect=200).body
    assert tw["state"]["desired"] == {"speed": 0, "mode": "fault", "why": "rule fault"}, tw
    delta = wait_on_topic(d, f"devices/{dv}/twin/delta", 1)[0]
    assert delta["state"] == {"speed": 0, "mode": "fault", "why": "rule fault"}, delta
    (_, t) = plat.traces(name)
    assert t["actions"][0]["type"] == "twin" and t["actions"][0]["ok"] is True, t
    assert t["actions"][0]["detail"]["version"] == tw["version"], (t, tw)

    # A sliding window: the average over the last 10 s.
    dv = devs["win"]
    name = unique("win")
    rules(name, f"SELECT avg(temp) OVER 10s AS a, count(temp) OVER 10s AS n "
                f"FROM 'devices/{dv}/telemetry' WHERE avg(temp) OVER 10s > 50",
          [{"type": "republish", "topic": f"avg/{dv}"}])
    d = connect_device(mk, plat, dv, tokens["win"])
    values = [40, 60, 80, 100, 21]
    for v in values:
        telemetry(d, dv, {"temp": v})
    plat.wait_evaluations(name, len(values))
    # means: 40, 50 (not > 50), 60, 70, 60.2
    got = wait_on_topic(obs, f"avg/{dv}", 3)
    expected = [(sum(values[:i]) / i, i) for i in range(1, len(values) + 1)
                if sum(values[:i]) / i > 50]
    assert [x["n"] for x in got] == [n for _, n in expected], got
    assert [x["a"] for x in got] == pytest.approx([a for a, _ in expected]), got
    assert [t["matched"] for t in plat.traces(name)] == [False, False, True, True, True]

    # Platform events as a source: a device connecting.
    dv = devs["ev"]
    name = unique("ev")
    rules(name, f"SELECT device_id AS dev, protocol, topic(3) AS t3 "
                f"FROM '$events/devices/+/connected' WHERE device_id = '{dv}'",
          [{"type": "republish", "topic": "seen/${dev}"}])
    connect_device(mk, plat, dv, tokens["ev"])
    (got,) = wait_on_topic(obs, f"seen/{dv}", 1)
    assert got == {"dev": dv, "protocol": "mqtt5", "t3": dv}, got
    tr = wait_until(lambda: (lambda x: x if any(t["matched"] for t in x) else None)(
        plat.traces(name)), what="the connected event in the trace")
    mine = [t for t in tr if t["matched"]]
    assert len(mine) == 1 and mine[0]["topic"] == f"$events/devices/{dv}/connected", tr


def test_republish_loop_stops_at_four_hops(plat, mk, rules):
    base = unique("loop")
    obs = observer(mk, plat, f"{base}/#")
    name = unique("loop")
    # Republishes into the topics it reads: a loop, cut after 4 hops.
    rules(name, f"SELECT n FROM '{base}/#'",
          [{"type": "republish", "topic": f"{base}/again", "payload": {"n": "${n}"}}])
    obs.publish(f"{base}/start", json.dumps({"n": 1}), qos=1)
    wait_on_topic(obs, f"{base}/again", 1)
    # Absence: more than 5 would be a loop the hop limit did not cut (a
    # bounded wait, well beyond the few milliseconds a hop takes).
    try:
        obs.messages.wait_until(
            lambda ms: sum(1 for m in ms if m.topic == f"{base}/again") > 5, ABSENCE_WAIT)
    except AssertionError:
        pass
    again = on_topic(obs, f"{base}/again")
    # The message at hop 4 is not evaluated: hops 0..3 republish.
    assert 1 <= len(again) <= 5, f"a rule loop was not cut at 4 hops: {len(again)} republishes"
    evals = plat.metrics(name)["evaluations"]
    assert evals == len(again), (evals, len(again))
    assert all(x == {"n": 1} for x in again), again


def test_alarm_rules_see_every_message_under_load(fresh, mk):
    """docs/rules.md "Under load": with the engine's queues full, a message a
    rule raising alarms reads is never skipped (publishers wait instead); a
    message only republish/webhook rules read may be dropped, and every such
    message is either evaluated or counted as dropped."""
    p = fresh(rules={"queue": 8, "workers": 2})
    base = unique("bp")
    n = 3000
    # Slow rules (windows) so that the publisher outruns the engine.
    sampled = [f"{base}-w{i}" for i in range(40)]
    for name in sampled:
        p.create_rule(name, f"SELECT avg(v) OVER 1m AS a FROM '{base}/+' "
                            f"WHERE avg(v) OVER 1m > 1000000000", [])
    strict = f"{base}-alarm"
    p.create_rule(strict, f"SELECT v FROM '{base}/+' WHERE v > 1000000000",
                  [{"type": "alarm", "alarm_type": "never", "severity": "minor"}])

    def load(c):
        for i in range(n):
            c.publish(f"{base}/{i % 10}", json.dumps({"v": i}), qos=0, wait=False)
        c.publish(f"{base}/0", json.dumps({"v": -1}), qos=1)

    def figures():
        b = p.ok("GET", "/api/rules", expect=200).body
        evals = {r["name"]: r["metrics"]["evaluations"] for r in b["items"]}
        return evals, b["dropped"], b["queues"]

    c = mk(p, unique("bp-pub"), version=V5)
    c.connect()
    load(c)
    wait_until(lambda: figures()[0][strict] == n + 1, TIMEOUT * 4, interval=0.1,
               what=f"{n + 1} evaluations of the alarm rule")
    evals, dropped, queues = figures()
    assert len(queues) == 2, queues
    assert dropped == 0, (dropped, queues)
    # Every rule reading those topics saw every message, the sampled ones
    # too (the alarm rule reads the same messages).
    wait_until(lambda: all(figures()[0][s] == n + 1 for s in sampled), TIMEOUT, interval=0.1,
               what="every message evaluated by every rule")
    held = sum(q["held"] for q in queues)
    print(f"held past the bound: {held}, queues {queues}")

    # Without the alarm rule the same load may be sampled: each message is
    # either evaluated or counted as dropped.
    p.ok("DELETE", f"/api/rules/{strict}", expect=204)
    e0, d0, _ = figures()
    load(c)

    def accounted():
        e, d, q = figures()
        return all(e[s] - e0[s] + (d - d0) >= n + 1 for s in sampled) and all(
            x["queued"] == 0 for x in q)
    wait_until(accounted, TIMEOUT * 4, interval=0.1, what="the second load evaluated or dropped")
    e1, d1, q1 = figures()
    for s in sampled:
        assert e1[s] - e0[s] + (d1 - d0) == n + 1, (s, e1[s] - e0[s], d1 - d0)
    print(f"second load: {d1 - d0} of {n + 1} dropped for the sampled rules")


# =========================================================================
# 6. Dry runs
# =========================================================================

def test_dry_run_has_no_side_effects(plat, mk, rules, receivers):
    dev = unique("dry")
    token = plat.add_device(dev, type="press")
    hook = receivers().start()
    obs = observer(mk, plat, f"dry/{dev}/#", "$events/alarms/#")
    d = connect_device(mk, plat, dev, token)
    d.subscribe(f"devices/{dev}/commands/+", 1)
    topic = f"devices/{dev}/telemetry"
    actions = [
        {"type": "republish", "topic": "dry/${device}/hot", "payload": {"t": "${temp}"}},
        {"type": "alarm", "alarm_type": "overheat", "severity": "major"},
        {"type": "webhook", "url": hook.url},
        {"type": "command", "method": "set_speed", "params": {"rpm": "${temp}"}},
        {"type": "store", "metric": "dry_f", "value": "${temp}"},
        {"type": "twin", "desired": {"limit": "${temp}"}},
    ]

    # A definition, never saved: matched, outputs, the rendered actions.
    sql = "SELECT temp, device_id() AS device FROM 'devices/+/telemetry' WHERE temp > 85"
    def_name = unique("dry-def")
    defn = {"name": def_name, "sql": sql, "actions": actions}
    out = plat.dry_run({"definition": defn, "topic": topic, "payload": {"temp": 90}})
    assert out["topic_matches"] is True and out["matched"] is True, out
    assert out["device_id"] == dev and out["group"] == dev and out["error"] is None, out
    assert out["outputs"] == {"temp": 90, "device": dev}, out
    ra = {a["type"]: a for a in out["actions"]}
    assert [a["type"] for a in out["actions"]] == [a["type"] for a in actions], out
    assert ra["republish"]["topic"] == f"dry/{dev}/hot", ra
    assert ra["republish"]["payload"] == {"t": 90}, ra
    assert ra["alarm"]["device"] == dev and ra["alarm"]["alarm_type"] == "overheat", ra
    assert ra["alarm"]["severity"] == "major" and ra["alarm"]["details"] == out["outputs"], ra
    assert ra["webhook"]["url"] == hook.url, ra
    assert ra["webhook"]["body"]["device_id"] == dev, ra
    assert ra["webhook"]["body"]["outputs"] == out["outputs"], ra
    assert ra["command"] == {"type": "command", "device": dev, "method": "set_speed",
                             "params": {"rpm": 90}}, ra
    assert ra["store"]["metric"] == "dry_f" and float(ra["store"]["value"]) == 90, ra
    assert ra["store"]["device"] == dev, ra
    assert ra["twin"]["device"] == dev and ra["twin"]["desired"] == {"limit": 90}, ra

    # Not matching, and a topic the rule does not read.
    out = plat.dry_run({"definition": defn,
                        "topic": topic, "payload": {"temp": 20}})
    assert out["topic_matches"] is True and out["matched"] is False, out
    assert out["actions"] == [], out
    out = plat.dry_run({"definition": defn,
                        "topic": "factory/x/telemetry", "payload": {"temp": 90}})
    assert out["topic_matches"] is False and out["matched"] is False, out
    assert out["actions"] == [], out
    # A payload given as a string is sent as is.
    out = plat.dry_run({"definition": {**defn, "actions": []}, "topic": topic,
                        "payload": '{"temp": 99}'})
    assert out["matched"] is True and out["outputs"]["temp"] == 99, out
    plat.problem("GET", f"/api/rules/{def_name}", status=404, code="not_found")

    # An existing FOR rule: a dry run neither starts nor advances its duration.
    name = unique("dry-for")
    rules(name, f"SELECT temp, device_id() AS device FROM '{topic}' WHERE temp > 85 FOR 1s",
          actions)
    deadline = time.monotonic() + 1.3
    runs = 0
    while time.monotonic() < deadline or runs < 3:
        out = plat.dry_run({"rule": name, "topic": topic, "payload": {"temp": 90}})
        runs += 1
        assert out["topic_matches"] is True and out["matched"] is False, (runs, out)
        assert out["actions"] == [], out
        time.sleep(0.1)  # spacing the dry runs over more than the duration
    m = plat.metrics(name)
    assert m["evaluations"] == 0 and m["matches"] == 0, m
    assert plat.traces(name) == []

    # A real message starts the duration; dry runs see that state (and
    # match once it has lasted 1 s) but do not change it.
    telemetry(d, dev, {"temp": 90})
    plat.wait_evaluations(name, 1)
    out = plat.dry_run({"rule": name, "topic": topic, "payload": {"temp": 90}})
    assert out["matched"] is False, out
    t0 = time.monotonic()
    out = wait_until(
        lambda: (lambda o: o if o["matched"] else None)(
            plat.dry_run({"rule": name, "topic": topic, "payload": {"temp": 90}})),
        5, interval=0.1, what="a dry run matching once the real state lasted 1 s")
    assert time.monotonic() - t0 < 1.5, "the dry runs did not see the real state"
    assert [a["type"] for a in out["actions"]] == [a["type"] for a in actions], out
    # (checked at the end: the webhook body it would send names the rule)
    dry_hook_body = next(a for a in out["actions"] if a["type"] == "webhook")["body"]
    # A cool dry run does not reset it either: a hot one right after still
    # matches.
    out = plat.dry_run({"rule": name, "topic": topic, "payload": {"temp": 20}})
    assert out["matched"] is False, out
    out = plat.dry_run({"rule": name, "topic": topic, "payload": {"temp": 90}})
    assert out["matched"] is True, out

    # Nothing happened: no alarm, no webhook, no command, no republish, no
    # stored point, no twin change, still one evaluation.
    assert plat.alarms(device=dev) == []
    hook.assert_stays(0)
    assert [m for m in d.messages.snapshot() if "/commands/" in m.topic] == []
    assert plat.ok("GET", f"/api/devices/{dev}/commands", expect=200).body["items"] == []
    assert on_topic(obs, f"dry/{dev}/hot") == []
    assert [m.topic for m in obs.messages.snapshot()] == []
    r = plat.ok("GET", f"/api/telemetry/latest?device={dev}&metric=dry_f", expect=200)
    assert r.body["latest"] == [], r
    assert plat.ok("GET", f"/api/devices/{dev}/twin", expect=200).body["state"]["desired"] == {}
    m = plat.metrics(name)
    assert m["evaluations"] == 1 and m["matches"] == 0, m
    assert len(plat.traces(name)) == 1

    # Errors: no rule and no definition, an unknown rule, no topic, bad SQL.
    plat.problem("POST", "/api/rules/dry-run", {"topic": topic, "payload": {}},
                 status=400, code="bad_body", field="rule")
    plat.problem("POST", "/api/rules/dry-run", {"rule": unique("nope"), "topic": topic},
                 status=404, code="not_found")
    plat.problem("POST", "/api/rules/dry-run", {"rule": name, "payload": {}},
                 status=400, code="bad_body", field="topic")
    r = plat.problem("POST", "/api/rules/dry-run",
                     {"definition": {**defn, "sql": "SELECT temp FROM"}, "topic": topic},
                     status=400, code="bad_body", field="sql")
    assert detail_of(r) == (1, 17), r

    # The webhook an existing rule would send names that rule, as the real
    # call would (docs/rules.md: the default body is {"rule", "device_id",
    # "group", "outputs", "time"}).
    assert dry_hook_body["rule"] == name, dry_hook_body
    assert dry_hook_body["device_id"] == dev and dry_hook_body["outputs"] == {
        "temp": 90, "device": dev}, dry_hook_body


def test_dry_run_definition_without_a_name(plat):
    """docs/rules.md: `{"definition": {...}}` with a topic and payload; a
    definition to try out needs no name (it is not saved)."""
    out = plat.dry_run({"definition": {"sql": "SELECT temp FROM 'devices/+/telemetry' "
                                              "WHERE temp > 85",
                                       "actions": [{"type": "republish", "topic": "x/${temp}"}]},
                        "topic": "devices/anything/telemetry", "payload": {"temp": 90}})
    assert out["matched"] is True and out["outputs"] == {"temp": 90}, out
    assert out["actions"] == [{"type": "republish", "topic": "x/90", "payload": {"temp": 90}}], out
