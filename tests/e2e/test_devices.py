"""Twins, commands, presence and the simulated fleet end to end, with real
clients only.

A Millwright process (MQTT over TCP and the HTTP API on free ports, TLS off)
is driven with paho-mqtt 2.x devices, urllib for the operator API and the
`millwright simulate` subcommand, against the contract of docs/devices.md:

- twins: desired changes from the API reach the device as a delta, reported
  state comes back over MQTT, versions / If-Match conflicts, size and depth
  limits, merge-patch deletes, named twins, queries by twin values;
- commands: queued for offline devices and delivered in order on connect
  (also to a resumed persistent session that does not subscribe again),
  the status trail, synchronous calls (success, failure, 504), `"queue":
  false`, cancel, expiry of the ttl;
- presence: `$events/devices/...` connected / disconnected (with reasons) /
  inactive / active, the presence API and fleet counts;
- durability of twins, queued commands and presence across kill -9;
- the simulator as a fleet of reference devices.

Tests share one platform (each uses its own device ids); the presence,
durability tests start their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import mwplatform
from conftest import BROKER_KIND, _millwright_bin
from mwplatform import Resp, _log_on_failure  # noqa: F401 (the fixture)
from helpers import (TIMEOUT, V311, V5, VERSIONS, MqttClient, PacketTypes, props, unique,
                     wait_until)

pytestmark = pytest.mark.millwright_only(reason="twins, commands and presence are Millwright's")


# Settings every platform of this module gets: a quick scan, so that
# inactivity, command timeouts and ttl expiry happen within a second or so.
DEVICES_SETTINGS = {
    "inactivity_timeout_secs": 300,
    "type_inactivity_secs": {"sleepy": 1},
    "scan_interval_ms": 100,
}


# =========================================================================
# The platform under test
# =========================================================================

class Platform(mwplatform.Platform):
    """A Millwright process without TLS, with quick fleet scans."""

    def __init__(self, root: Path, *, mqtt: dict | None = None, devices: dict | None = None):
        d = dict(DEVICES_SETTINGS)
        d.update(devices or {})
        super().__init__(root, mqtt=mqtt, sections={"devices": d})

    # ------------------------------------------------ twins and commands
    def twin(self, dev: str, name: str = "") -> Resp:
        path = f"/api/devices/{dev}/twin" if not name else f"/api/devices/{dev}/twins/{name}"
        return self.ok("GET", path, expect=200)

    def patch_desired(self, dev: str, desired, *, name: str = "", **kw) -> Resp:
        path = f"/api/devices/{dev}/twin" if not name else f"/api/devices/{dev}/twins/{name}"
        return self.api("PATCH", path, {"desired": desired, **kw.pop("extra", {})}, **kw)

    def command(self, dev: str, cmd_id: str) -> dict:
        return self.ok("GET", f"/api/devices/{dev}/commands/{cmd_id}", expect=200).body

    def send_command(self, dev: str, method: str, params=None, *, expect=202, **fields) -> Resp:
        body = {"method": method, **fields}
        if params is not None:
            body["params"] = params
        return self.ok("POST", f"/api/devices/{dev}/commands", body, expect=expect)

    def wait_command(self, dev: str, cmd_id: str, status: str,
                     timeout: float = TIMEOUT) -> dict:
        seen = {}

        def reached():
            seen["c"] = self.command(dev, cmd_id)
            return seen["c"]["status"] == status
        try:
            wait_until(reached, timeout, interval=0.05, what=f"command {cmd_id} {status}")
        except AssertionError:
            raise AssertionError(f"command {cmd_id} of {dev} not {status} within {timeout}s: "
                                 f"{seen.get('c')}") from None
        return seen["c"]

    def presence(self, dev: str) -> dict:
        return self.ok("GET", f"/api/devices/{dev}/presence", expect=200).body

    def wait_presence(self, dev: str, state: str, timeout: float = TIMEOUT) -> dict:
        seen = {}

        def reached():
            seen["p"] = self.presence(dev)
            return seen["p"]["state"] == state
        try:
            wait_until(reached, timeout, interval=0.05, what=f"{dev} {state}")
        except AssertionError:
            raise AssertionError(f"presence of {dev} not {state} within {timeout}s: "
                                 f"{seen.get('p')}") from None
        return seen["p"]


# =========================================================================
# Clients
# =========================================================================

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


def connect_device(mk, plat, dev: str, token: str, *, version: str = V5,
                   client_id: str | None = None, clean: bool = True,
                   **connect_kw) -> MqttClient:
    """A device connection: username = id, password = token, client id = id
    (unless given)."""
    c = mk(plat, client_id or dev, version=version, clean=clean, username=dev, password=token)
    c.connect(**connect_kw)
    return c


def find_json(c: MqttClient, topic: str, pred=lambda d: True, *, timeout: float = TIMEOUT,
              what: str | None = None) -> dict:
    """The first message on `topic` whose JSON payload satisfies `pred`."""
    found = {}

    def match(ms):
        for m in ms:
            if m.topic != topic:
                continue
            try:
                d = json.loads(m.payload)
            except ValueError:
                continue
            if pred(d):
                found["d"] = d
                return True
        return False
    c.messages.wait_until(match, timeout, what=what or f"a message on {topic}")
    return found["d"]


def on_topic(c: MqttClient, topic: str) -> list[dict]:
    return [json.loads(m.payload) for m in c.messages.snapshot() if m.topic == topic]


def command_messages(c: MqttClient, dev: str) -> list:
    """Commands the device received (`devices/{id}/commands/{cmd}`), in order."""
    prefix = f"devices/{dev}/commands/"
    return [m for m in c.messages.snapshot()
            if m.topic.startswith(prefix) and "/" not in m.topic[len(prefix):]]


def answer_commands(c: MqttClient, dev: str, answer) -> None:
    """Makes the device answer its commands from paho's network thread:
    answer(method, params) gives the response payload, or None for none."""
    prefix = f"devices/{dev}/commands/"
    inner = c.client.on_message

    def on_message(client, userdata, msg):
        inner(client, userdata, msg)
        rest = msg.topic[len(prefix):] if msg.topic.startswith(prefix) else ""
        if rest and "/" not in rest:
            body = json.loads(msg.payload)
            out = answer(body.get("method"), body.get("params"))
            if out is not None:
                client.publish(f"{msg.topic}/response", json.dumps(out), qos=1)

    c.client.on_message = on_message


def q(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def assert_trail(cmd: dict, statuses: list[str], optional: set[str] = frozenset()) -> None:
    """The command's trail has `statuses` in order (those in `optional` may be
    missing), with times that never go backwards, starting at creation."""
    trail = cmd["trail"]
    got = [t["status"] for t in trail]
    assert got in (statuses, [s for s in statuses if s not in optional]), cmd
    times = [t["time"] for t in trail]
    assert times == sorted(times), f"trail times go backwards: {cmd}"
    assert times[0] == cmd["created_at"], cmd


# =========================================================================
# Fixtures
# =========================================================================

def _skip_unless_millwright():
    if BROKER_KIND != "millwright":
        pytest.skip("twins, commands and presence are Millwright's")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    """The shared platform: tests use their own device ids."""
    _skip_unless_millwright()
    p = Platform(tmp_path_factory.mktemp("devices"))
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


# =========================================================================
# 1. Twin round trip
# =========================================================================

@pytest.mark.parametrize("version", VERSIONS)
def test_twin_round_trip(plat, mk, version):
    dev = unique("twin")
    token = plat.add_device(dev, type="press")
    prefix = f"devices/{dev}/twin"

    # Never written: version 0, empty.
    r = plat.twin(dev)
    assert r.body["version"] == 0 and r.headers.get("etag") == '"0"', r

    d = connect_device(mk, plat, dev, token, version=version)
    for t in ("delta", "update/accepted", "update/rejected", "get/accepted"):
        d.subscribe(f"{prefix}/{t}", 1)
    # A second connection of the device (its own tree) watches the documents.
    watcher = connect_device(mk, plat, dev, token, version=version, client_id=unique(dev))
    watcher.subscribe(f"{prefix}/documents", 1)

    # The operator wants speed 1200 in mode run.
    r = plat.patch_desired(dev, {"speed": 1200, "mode": "run"})
    assert r.status == 200, r
    v1 = r.body["version"]
    assert isinstance(v1, int) and v1 >= 1, r
    assert r.headers.get("etag") == f'"{v1}"', r.headers
    assert r.body["state"]["desired"] == {"speed": 1200, "mode": "run"}, r
    assert r.body["state"]["delta"] == {"speed": 1200, "mode": "run"}, r

    # The device gets the delta.
    delta = find_json(d, f"{prefix}/delta")
    assert delta["state"] == {"speed": 1200, "mode": "run"}, delta
    assert delta["version"] == v1, delta
    assert set(delta["metadata"]) == {"speed", "mode"}, delta
    assert isinstance(delta["timestamp"], int), delta

    # It applies it and reports.
    d.publish(f"{prefix}/update", json.dumps(
        {"state": {"reported": {"speed": 1200, "mode": "run"}}, "clientToken": "t1"}), qos=1)
    acc = find_json(d, f"{prefix}/update/accepted", lambda x: x.get("clientToken") == "t1")
    assert acc["state"]["delta"] == {}, acc
    assert acc["state"]["reported"] == {"speed": 1200, "mode": "run"}, acc
    assert acc["state"]["desired"] == {"speed": 1200, "mode": "run"}, acc
    v2 = acc["version"]
    assert v2 == v1 + 1, acc
    assert set(acc["metadata"]["reported"]) == {"speed", "mode"}, acc
    assert on_topic(d, f"{prefix}/update/rejected") == []

    # The operator sees the device caught up.
    r = plat.twin(dev)
    assert r.body["state"]["delta"] == {}, r
    assert r.body["state"]["reported"] == {"speed": 1200, "mode": "run"}, r
    assert r.body["version"] == v2 and r.headers.get("etag") == f'"{v2}"', (r, r.headers)

    # A get over MQTT answers the full document (with the client token).
    d.publish(f"{prefix}/get", json.dumps({"clientToken": "g1"}), qos=1)
    got = find_json(d, f"{prefix}/get/accepted", lambda x: x.get("clientToken") == "g1")
    assert got["version"] == v2, got
    assert got["state"] == {"desired": {"speed": 1200, "mode": "run"},
                            "reported": {"speed": 1200, "mode": "run"}, "delta": {}}, got
    assert set(got["metadata"]) >= {"desired", "reported"}, got
    # An empty get works too (no token).
    d.publish(f"{prefix}/get", b"", qos=1)
    d.messages.wait_until(
        lambda ms: sum(m.topic == f"{prefix}/get/accepted" for m in ms) >= 2,
        what="a second get/accepted")
    assert "clientToken" not in on_topic(d, f"{prefix}/get/accepted")[1]

    # The documents stream: previous / current for both changes.
    doc1 = find_json(watcher, f"{prefix}/documents", lambda x: x["current"]["version"] == v1)
    assert doc1["previous"]["version"] == v1 - 1, doc1
    assert doc1["current"]["state"]["desired"] == {"speed": 1200, "mode": "run"}, doc1
    doc2 = find_json(watcher, f"{prefix}/documents", lambda x: x["current"]["version"] == v2)
    assert doc2["previous"]["version"] == v1, doc2
    assert doc2["previous"]["state"]["reported"] == {}, doc2
    assert doc2["current"]["state"]["reported"] == {"speed": 1200, "mode": "run"}, doc2
    assert doc2["current"]["state"]["delta"] == {}, doc2
    assert isinstance(doc2["timestamp"], int), doc2

    # A change of desired that leaves no difference sends no delta.
    n_delta = len(on_topic(d, f"{prefix}/delta"))
    r = plat.patch_desired(dev, {"speed": 1200})
    assert r.status == 200 and r.body["state"]["delta"] == {}, r
    find_json(watcher, f"{prefix}/documents", lambda x: x["current"]["version"] == r.body["version"])
    assert len(on_topic(d, f"{prefix}/delta")) == n_delta, on_topic(d, f"{prefix}/delta")


# =========================================================================
# 2. Conflicts, limits, merge-patch deletes, named twins, queries
# =========================================================================

def test_twin_conflicts_limits_named_twins_and_query(plat, mk):
    dev = unique("twin2")
    token = plat.add_device(dev, type="press")
    prefix = f"devices/{dev}/twin"
    d = connect_device(mk, plat, dev, token)
    d.subscribe(f"{prefix}/#", 1)

    r = plat.patch_desired(dev, {"speed": 5, "mode": "run"})
    assert r.status == 200, r
    v = r.body["version"]

    # A stale version in the body, or in If-Match: 409, nothing changes.
    plat.problem("PATCH", f"/api/devices/{dev}/twin", {"desired": {"speed": 6}, "version": v - 1},
                 status=409, code="conflict")
    plat.problem("PATCH", f"/api/devices/{dev}/twin", {"desired": {"speed": 7}},
                 headers={"If-Match": f'"{v - 1}"'}, status=409, code="conflict")
    assert plat.twin(dev).body["version"] == v
    assert plat.twin(dev).body["state"]["desired"]["speed"] == 5
    # The current version (body or If-Match) goes through.
    r = plat.patch_desired(dev, {"speed": 6}, extra={"version": v})
    assert r.status == 200 and r.body["version"] == v + 1, r
    r = plat.patch_desired(dev, {"speed": 7}, headers={"If-Match": f'"{v + 1}"'})
    assert r.status == 200 and r.body["version"] == v + 2, r
    v = v + 2

    # The device updating at a stale version: rejected with 409.
    d.publish(f"{prefix}/update", json.dumps({"state": {"reported": {"speed": 7}},
                                              "version": v - 1, "clientToken": "stale"}), qos=1)
    rej = find_json(d, f"{prefix}/update/rejected", lambda x: x.get("clientToken") == "stale")
    assert rej["code"] == 409 and rej.get("message"), rej
    assert plat.twin(dev).body["version"] == v
    d.publish(f"{prefix}/update", json.dumps({"state": {"reported": {"speed": 7}},
                                              "version": v, "clientToken": "fresh"}), qos=1)
    acc = find_json(d, f"{prefix}/update/accepted", lambda x: x.get("clientToken") == "fresh")
    assert acc["version"] == v + 1 and acc["state"]["delta"] == {"mode": "run"}, acc
    v += 1

    # Over 64 KiB: 413; deeper than 8: 400 naming desired. Nothing changes.
    plat.problem("PATCH", f"/api/devices/{dev}/twin", {"desired": {"blob": "x" * 70_000}},
                 status=413, code="twin_too_large")
    deep: dict = {"leaf": 1}
    for _ in range(10):
        deep = {"n": deep}
    r = plat.problem("PATCH", f"/api/devices/{dev}/twin", {"desired": deep},
                     status=400, code="bad_body")
    assert r.body.get("field") == "desired", r
    # A device update over the limit is rejected over MQTT with 413.
    d.publish(f"{prefix}/update", json.dumps({"state": {"reported": {"blob": "y" * 70_000}},
                                              "clientToken": "big"}), qos=1)
    rej = find_json(d, f"{prefix}/update/rejected", lambda x: x.get("clientToken") == "big")
    assert rej["code"] == 413, rej
    assert plat.twin(dev).body["version"] == v

    # Merge patch: null deletes a member.
    r = plat.patch_desired(dev, {"mode": None, "extra": {"a": 1, "b": 2}})
    assert r.status == 200, r
    assert r.body["state"]["desired"] == {"speed": 7, "extra": {"a": 1, "b": 2}}, r
    assert "mode" not in r.body["state"]["delta"], r
    r = plat.patch_desired(dev, {"extra": {"a": None}})
    assert r.body["state"]["desired"] == {"speed": 7, "extra": {"b": 2}}, r
    assert r.body["state"]["delta"] == {"extra": {"b": 2}}, r
    assert "mode" not in r.body["metadata"].get("desired", {}), r

    # A named twin: device side over MQTT, operator side over HTTP.
    cfg = f"{prefix}/config"
    d.publish(f"{cfg}/update", json.dumps({"state": {"reported": {"interval": 5}},
                                           "clientToken": "c1"}), qos=1)
    acc = find_json(d, f"{cfg}/update/accepted", lambda x: x.get("clientToken") == "c1")
    assert acc["state"]["reported"] == {"interval": 5} and acc["version"] == 1, acc
    r = plat.twin(dev, "config")
    assert r.body["state"]["reported"] == {"interval": 5}, r
    assert r.headers.get("etag") == '"1"', r.headers
    r = plat.patch_desired(dev, {"interval": 10}, name="config")
    assert r.status == 200 and r.body["state"]["delta"] == {"interval": 10}, r
    delta = find_json(d, f"{cfg}/delta")
    assert delta["state"] == {"interval": 10} and delta["version"] == 2, delta
    names = {i["name"]: i["document"] for i in
             plat.ok("GET", f"/api/devices/{dev}/twins", expect=200).body["items"]}
    assert set(names) == {"", "config"}, names
    assert names["config"]["state"]["desired"] == {"interval": 10}, names
    assert names[""]["state"]["reported"] == {"speed": 7}, names
    d.publish(f"{cfg}/get", json.dumps({"clientToken": "cg"}), qos=1)
    got = find_json(d, f"{cfg}/get/accepted", lambda x: x.get("clientToken") == "cg")
    assert got["state"]["desired"] == {"interval": 10}, got

    # Queries by twin values.
    serial = unique("sn")
    d.publish(f"{prefix}/update", json.dumps({"state": {"reported": {"mode": "run",
                                                                     "serial": serial}},
                                              "clientToken": "q"}), qos=1)
    find_json(d, f"{prefix}/update/accepted", lambda x: x.get("clientToken") == "q")
    r = plat.ok("GET", "/api/twins?limit=1000&query=" + q('reported.mode = "run"'), expect=200)
    assert dev in r.body["items"], r
    r = plat.ok("GET", "/api/twins?query=" + q(f'reported.serial = "{serial}"'), expect=200)
    assert r.body["items"] == [dev], r
    r = plat.ok("GET", "/api/twins?query=" + q(f'reported.serial = "{serial}" and desired.speed > 6'),
                expect=200)
    assert r.body["items"] == [dev], r
    r = plat.ok("GET", "/api/twins?query=" + q(f'reported.serial = "{serial}" and desired.speed < 7'),
                expect=200)
    assert r.body["items"] == [], r
    r = plat.ok("GET", "/api/twins?name=config&query=" + q("reported.interval >= 5"), expect=200)
    assert dev in r.body["items"], r
    plat.problem("GET", "/api/twins?query=" + q("reported.mode ~~ 1"), status=400,
                 code="bad_parameter")


# =========================================================================
# 3. Commands queued for offline devices
# =========================================================================

def test_commands_to_an_offline_device_are_delivered_in_order_on_connect(plat, mk):
    dev = unique("cmdq")
    token = plat.add_device(dev, type="press")

    created = []
    for i in (1, 2, 3):
        r = plat.send_command(dev, f"m{i}", {"n": i, "tag": f"p{i}"})
        assert r.body["status"] == "queued", r
        assert r.body["method"] == f"m{i}" and r.body["device_id"] == dev, r
        assert r.headers.get("location") == f"/api/devices/{dev}/commands/{r.body['id']}", r.headers
        assert [t["status"] for t in r.body["trail"]] == ["queued"], r
        created.append(r.body["id"])
    listed = plat.ok("GET", f"/api/devices/{dev}/commands", expect=200).body
    assert [c["id"] for c in listed["items"]] == created, listed

    d = connect_device(mk, plat, dev, token)  # clean start
    d.subscribe(f"devices/{dev}/commands/+", 1)
    d.messages.wait_until(lambda ms: len(ms) >= 3, what="three commands")
    got = command_messages(d, dev)
    assert [m.topic.rsplit("/", 1)[1] for m in got] == created, [m.topic for m in got]
    for i, m in enumerate(got, 1):
        assert m.qos == 1, m.qos
        assert json.loads(m.payload) == {"method": f"m{i}", "params": {"n": i, "tag": f"p{i}"}}

    for cmd_id in created:
        d.publish(f"devices/{dev}/commands/{cmd_id}/response",
                  json.dumps({"status": 0, "result": {"ok": True}}), qos=1)
    for cmd_id in created:
        c = plat.wait_command(dev, cmd_id, "succeeded")
        assert c["response"] == {"status": 0, "result": {"ok": True}}, c
        assert c["error"] is None, c
        assert_trail(c, ["queued", "sent", "delivered", "succeeded"])
    # Answered commands are not sent again.
    d.messages.assert_stays(3)


def test_commands_reach_a_resumed_session_without_a_new_subscription(plat, mk):
    dev = unique("cmdp")
    token = plat.add_device(dev, type="press")
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=3600)

    d = connect_device(mk, plat, dev, token, clean=False, properties=expiry)
    d.subscribe(f"devices/{dev}/commands/+", 1)
    d.disconnect()
    plat.wait_presence(dev, "offline")

    created = [plat.send_command(dev, m, {"k": m}).body["id"] for m in ("first", "second")]
    for cmd_id in created:
        assert plat.command(dev, cmd_id)["status"] == "queued"

    d2 = connect_device(mk, plat, dev, token, clean=False, properties=expiry)
    assert d2.conn.session_present, "the persistent session was not resumed"
    d2.messages.wait_until(lambda ms: len(command_messages(d2, dev)) >= 2,
                           what="the queued commands on the resumed session")
    got = command_messages(d2, dev)
    assert [m.topic.rsplit("/", 1)[1] for m in got] == created, [m.topic for m in got]
    assert [json.loads(m.payload)["method"] for m in got] == ["first", "second"]
    for cmd_id in created:
        d2.publish(f"devices/{dev}/commands/{cmd_id}/response",
                   json.dumps({"status": 0, "result": {}}), qos=1)
    for cmd_id in created:
        assert_trail(plat.wait_command(dev, cmd_id, "succeeded"),
                     ["queued", "sent", "delivered", "succeeded"])


# =========================================================================
# 4. Synchronous commands, failures, timeouts, cancel, expiry
# =========================================================================

def test_synchronous_commands_failures_timeouts_cancel_and_expiry(plat, mk):
    dev = unique("cmds")
    token = plat.add_device(dev, type="press")
    d = connect_device(mk, plat, dev, token)

    def answer(method, params):
        if method == "ping":
            return {"status": 0, "result": {"pong": True, "echo": params}}
        if method == "fail":
            return {"status": 3, "result": {"error": "x"}}
        return None  # "silent": never answers
    answer_commands(d, dev, answer)
    d.subscribe(f"devices/{dev}/commands/+", 1)

    # Waiting for the answer.
    t0 = time.monotonic()
    r = plat.send_command(dev, "ping", {"a": 1}, expect=200, wait=True, timeout=5)
    assert time.monotonic() - t0 < 5
    assert r.body["status"] == "succeeded", r
    assert r.body["response"] == {"status": 0, "result": {"pong": True, "echo": {"a": 1}}}, r
    # paho answers from its message callback, i.e. before it sends the PUBACK:
    # the response may reach the platform before the acknowledgement.
    assert_trail(r.body, ["queued", "sent", "delivered", "succeeded"])

    # A failure answer: 200 with status failed.
    r = plat.send_command(dev, "fail", expect=200, wait=True, timeout=5)
    assert r.body["status"] == "failed", r
    assert r.body["response"] == {"status": 3, "result": {"error": "x"}}, r
    assert r.body["error"], r
    assert [t["status"] for t in r.body["trail"]][-1] == "failed", r

    # No answer within the timeout: 504, the command in the problem.
    t0 = time.monotonic()
    r = plat.problem("POST", f"/api/devices/{dev}/commands",
                     {"method": "silent", "wait": True, "timeout": 1}, status=504, code="timeout")
    took = time.monotonic() - t0
    assert 0.9 <= took < 4, took
    cmd = r.body["command"]
    assert cmd["method"] == "silent" and cmd["status"] in ("sent", "delivered", "timed_out"), r
    c = plat.wait_command(dev, cmd["id"], "timed_out")
    assert_trail(c, ["queued", "sent", "delivered", "timed_out"])
    # A late answer does not change a final command.
    d.publish(f"devices/{dev}/commands/{cmd['id']}/response",
              json.dumps({"status": 0, "result": {}}), qos=1)
    r = plat.send_command(dev, "ping", expect=200, wait=True, timeout=5)  # barrier
    assert plat.command(dev, cmd["id"])["status"] == "timed_out"

    # Offline device, "queue": false: 404 device_offline, nothing stored.
    off = unique("cmds-off")
    off_token = plat.add_device(off, type="press")
    plat.problem("POST", f"/api/devices/{off}/commands", {"method": "ping", "queue": False},
                 status=404, code="device_offline")
    plat.problem("POST", f"/api/devices/{off}/commands",
                 {"method": "ping", "queue": False, "wait": True, "timeout": 2},
                 status=404, code="device_offline")
    assert plat.ok("GET", f"/api/devices/{off}/commands", expect=200).body["items"] == []
    # An unknown device: 404 not_found.
    plat.problem("POST", f"/api/devices/{unique('nodev')}/commands", {"method": "ping"},
                 status=404, code="not_found")

    # Cancel a queued command; cancelling again is a conflict.
    queued = plat.send_command(off, "later").body
    r = plat.ok("POST", f"/api/devices/{off}/commands/{queued['id']}/cancel", expect=200)
    assert r.body["status"] == "cancelled", r
    assert_trail(r.body, ["queued", "cancelled"])
    plat.problem("POST", f"/api/devices/{off}/commands/{queued['id']}/cancel",
                 status=409, code="conflict")

    # A ttl of one second: expired while still queued.
    t0 = time.monotonic()
    short = plat.send_command(off, "short", ttl=1).body
    assert short["status"] == "queued" and short["expires_at"] is not None, short
    assert short["expires_at"] - short["created_at"] == 1000, short
    c = plat.wait_command(off, short["id"], "expired", timeout=5)
    assert time.monotonic() - t0 >= 0.9
    assert_trail(c, ["queued", "expired"])

    # Neither the cancelled nor the expired command reaches the device when it
    # connects; one queued after them does.
    pending = plat.send_command(off, "now-pending").body
    od = connect_device(mk, plat, off, off_token)
    od.subscribe(f"devices/{off}/commands/+", 1)
    od.messages.wait_until(lambda ms: len(command_messages(od, off)) >= 1,
                           what="the pending command")
    od.messages.assert_stays(1)
    assert command_messages(od, off)[0].topic == f"devices/{off}/commands/{pending['id']}"


# =========================================================================
# 5. Presence
# =========================================================================

def test_presence_events_inactivity_and_fleet_counts(fresh, mk):
    p = fresh(mqtt={"allow_anonymous": True})
    # An anonymous observer (full access: no ACL file) of the platform's events.
    obs = mk(p, unique("observer"))
    obs.connect()
    for what in ("connected", "disconnected", "inactive", "active"):
        obs.subscribe(f"$events/devices/+/{what}", 1)

    def event(dev, what, pred=lambda e: True, timeout=TIMEOUT):
        e = find_json(obs, f"$events/devices/{dev}/{what}", pred, timeout=timeout,
                      what=f"{what} event of {dev}")
        assert e["device_id"] == dev and e["event"] == what and isinstance(e["time"], int), e
        return e

    clean_dev, lost_dev, online_dev, never_dev = (unique(f"pr-{k}") for k in
                                                  ("clean", "lost", "on", "never"))
    sleepy_dev = unique("pr-sleepy")
    tokens = {dv: p.add_device(dv, type="press") for dv in (clean_dev, lost_dev, online_dev,
                                                            never_dev)}
    tokens[sleepy_dev] = p.add_device(sleepy_dev, type="sleepy")
    assert p.presence(never_dev)["state"] == "never_connected"
    assert p.presence(never_dev)["connected"] is False

    # Connect: an event with the connection's details, and the presence API.
    before = int(time.time() * 1000)
    c_clean = connect_device(mk, p, clean_dev, tokens[clean_dev], version=V311)
    e = event(clean_dev, "connected")
    assert e["protocol"] == "mqtt3.1.1" and e["client_id"] == clean_dev, e
    assert e["address"].startswith("127.0.0.1:"), e
    pr = p.presence(clean_dev)
    assert pr["state"] == "online" and pr["connected"] is True, pr
    assert pr["last_connected"] is not None and pr["last_connected"] >= before - 5, pr
    assert pr["address"] == e["address"] and pr["protocol"] == "mqtt3.1.1", pr

    # A clean disconnect.
    c_clean.disconnect()
    e = event(clean_dev, "disconnected")
    assert e["reason"] == "client disconnected", e
    pr = p.wait_presence(clean_dev, "offline")
    assert pr["connected"] is False and pr["last_reason"] == "client disconnected", pr
    assert pr["last_disconnected"] >= pr["last_connected"], pr

    # A connection that vanishes without DISCONNECT.
    c_lost = connect_device(mk, p, lost_dev, tokens[lost_dev])
    assert event(lost_dev, "connected")["protocol"] == "mqtt5"
    c_lost.drop()
    e = event(lost_dev, "disconnected")
    assert e["reason"] in ("connection lost", "keep-alive timeout"), e
    assert p.wait_presence(lost_dev, "offline")["last_reason"] == e["reason"]

    # A device that stays online (keep-alive 60 s, well under its type's 300 s).
    connect_device(mk, p, online_dev, tokens[online_dev])
    event(online_dev, "connected")

    # A sleepy device (1 s of silence allowed) goes inactive, then active
    # again when it sends something.
    s = connect_device(mk, p, sleepy_dev, tokens[sleepy_dev], keepalive=60)
    t0 = time.monotonic()
    event(sleepy_dev, "connected")
    e = event(sleepy_dev, "inactive", timeout=5)
    assert time.monotonic() - t0 >= 0.9, "inactive before its timeout"
    assert e["timeout_ms"] == 1000, e
    pr = p.wait_presence(sleepy_dev, "inactive")
    assert pr["connected"] is True, pr

    def counts():
        return p.ok("GET", "/api/fleet/status?group_by=type", expect=200).body["groups"]

    g = counts()
    assert g["press"] == {"online": 1, "offline": 2, "inactive": 0, "never_connected": 1,
                          "total": 4}, g
    assert g["sleepy"] == {"online": 0, "offline": 0, "inactive": 1, "never_connected": 0,
                           "total": 1}, g
    assert p.ok("GET", "/api/fleet/status", expect=200).body["groups"]["all"] == {
        "online": 1, "offline": 2, "inactive": 1, "never_connected": 1, "total": 5}

    s.publish(f"devices/{sleepy_dev}/telemetry", json.dumps({"temp": 1}), qos=1)
    event(sleepy_dev, "active")
    pr = p.presence(sleepy_dev)
    assert pr["state"] == "online", pr
    assert pr["last_seen"] >= pr["last_connected"], pr
    g = counts()
    assert g["sleepy"]["online"] == 1 and g["sleepy"]["inactive"] == 0, g

    # Only authenticated devices have presence events: the observer has none,
    # and no device got a second connected event.
    devices = {clean_dev, lost_dev, online_dev, never_dev, sleepy_dev}
    evs = [(m.topic, json.loads(m.payload)) for m in obs.messages.snapshot()]
    assert all(t.split("/")[2] in devices and e["device_id"] in devices for t, e in evs), evs
    for dv in (clean_dev, lost_dev, online_dev, sleepy_dev):
        assert len(on_topic(obs, f"$events/devices/{dv}/connected")) == 1, dv

    # A device may not read the platform's events.
    codes = s.subscribe("$events/devices/+/connected", 1, expect_granted=False)
    assert all(int(getattr(c, "value", c)) >= 0x80 for c in codes), codes


# =========================================================================
# 6. Durability across kill -9
# =========================================================================

def test_twins_commands_and_presence_survive_kill9(fresh, mk):
    p = fresh()
    dev, watcher_dev = unique("dur"), unique("dur-online")
    token, wtoken = p.add_device(dev, type="press"), p.add_device(watcher_dev, type="press")
    prefix = f"devices/{dev}/twin"

    r = p.patch_desired(dev, {"speed": 300, "mode": "run"})
    assert r.status == 200, r
    d = connect_device(mk, p, dev, token)
    d.subscribe(f"{prefix}/update/accepted", 1)
    d.publish(f"{prefix}/update", json.dumps({"state": {"reported": {"speed": 250}},
                                              "clientToken": "u"}), qos=1)
    acc = find_json(d, f"{prefix}/update/accepted", lambda x: x.get("clientToken") == "u")
    version = acc["version"]
    d.disconnect()
    p.wait_presence(dev, "offline")
    cmd = p.send_command(dev, "after-restart", {"x": 1}).body
    assert cmd["status"] == "queued", cmd

    w = connect_device(mk, p, watcher_dev, wtoken)
    p.wait_presence(watcher_dev, "online")

    p.kill9()
    w.wait_disconnected()
    p.start()

    r = p.twin(dev)
    assert r.body["version"] == version, r
    assert r.body["state"]["desired"] == {"speed": 300, "mode": "run"}, r
    assert r.body["state"]["reported"] == {"speed": 250}, r
    assert r.body["state"]["delta"] == {"speed": 300, "mode": "run"}, r
    c = p.command(dev, cmd["id"])
    assert c["status"] == "queued", c

    pr = p.presence(watcher_dev)
    assert pr["state"] == "offline" and pr["connected"] is False, pr
    assert pr["last_reason"] == "server restart", pr
    assert p.presence(dev)["state"] == "offline"

    d2 = connect_device(mk, p, dev, token)
    d2.subscribe(f"devices/{dev}/commands/+", 1)
    d2.messages.wait_until(lambda ms: len(command_messages(d2, dev)) >= 1,
                           what="the command queued before the restart")
    m = command_messages(d2, dev)[0]
    assert m.topic == f"devices/{dev}/commands/{cmd['id']}", m.topic
    assert json.loads(m.payload) == {"method": "after-restart", "params": {"x": 1}}
    d2.publish(f"{m.topic}/response", json.dumps({"status": 0, "result": {}}), qos=1)
    assert_trail(p.wait_command(dev, cmd["id"], "succeeded"),
                 ["queued", "sent", "delivered", "succeeded"])
    # The twin picks up where it was.
    d2.subscribe(f"{prefix}/update/accepted", 1)
    d2.publish(f"{prefix}/update", json.dumps({"state": {"reported": {"speed": 300,
                                                                      "mode": "run"}},
                                               "clientToken": "v"}), qos=1)
    acc = find_json(d2, f"{prefix}/update/accepted", lambda x: x.get("clientToken") == "v")
    assert acc["version"] == version + 1 and acc["state"]["delta"] == {}, acc


# =========================================================================
# 7. The simulated fleet
# =========================================================================

def test_simulator_end_to_end(plat):
    r = plat.ok("POST", "/api/tokens", {"name": unique("sim"), "role": "operator"}, expect=201)
    op_token = r.body["token"]
    cmd = [str(_millwright_bin()), "simulate", "--url", plat.url, "--token", op_token,
           "--mqtt", f"{plat.host}:{plat.mqtt_port}", "--count", "3", "--interval", "0.2",
           "--duration", "8", "--progress", "0", "--seed", "7", "--json"]
    env = {k: v for k, v in os.environ.items() if k not in ("MILLWRIGHT_URL", "MILLWRIGHT_TOKEN")}
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL, env=env)
    ids = ["sim-0001", "sim-0002", "sim-0003"]
    try:
        def all_online():
            if sim.poll() is not None:
                raise AssertionError(f"simulator exited early ({sim.returncode}): "
                                     f"{sim.stdout.read()}{sim.stderr.read()}")
            states = {}
            for i in ids:
                rr = plat.api("GET", f"/api/devices/{i}/presence")
                states[i] = rr.body.get("state") if rr.status == 200 else rr.status
            return all(s == "online" for s in states.values())
        wait_until(all_online, 6, interval=0.1, what="the three simulated devices online")

        def latest():
            rr = plat.ok("GET", "/api/telemetry/latest?device=sim-0001", expect=200)
            return {x["metric"]: x["value"] for x in rr.body.get("latest", [])}
        vals = wait_until(lambda: (lambda v: v if {"temp", "rpm"} <= set(v) else None)(latest()),
                          4, interval=0.1, what="telemetry of sim-0001")
        assert all(isinstance(vals[k], (int, float)) for k in ("temp", "rpm")), vals

        r = plat.patch_desired("sim-0002", {"speed": 900})
        assert r.status == 200, r
        seen = {}

        def caught_up():
            seen["t"] = plat.twin("sim-0002").body
            st = seen["t"]["state"]
            return st["reported"].get("speed") == 900 and st["delta"] == {}
        try:
            wait_until(caught_up, 5, interval=0.1, what="sim-0002 at speed 900")
        except AssertionError:
            raise AssertionError(f"sim-0002 did not apply speed 900: {seen.get('t')}") from None

        r = plat.send_command("sim-0003", "ping", expect=200, wait=True, timeout=5)
        assert r.body["status"] == "succeeded", r
        assert r.body["response"]["status"] == 0 and r.body["response"]["result"]["pong"] is True, r

        out, err = sim.communicate(timeout=15)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.communicate(timeout=5)
    assert sim.returncode == 0, f"simulator exited {sim.returncode}: {err}"
    report = json.loads(out)
    assert report["devices"] == 3, report
    assert report["telemetry_sent"] > 0 and report["telemetry_acked"] > 0, report
    assert report["commands_answered"] >= 1, report
    assert report["twin_deltas"] >= 1 or report["twin_reports"] >= 1, report
    assert report["errors"] == 0, report
    assert report["connects"] >= 3 and report["connect_failures"] == 0, report
