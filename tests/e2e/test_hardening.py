"""Hardening end to end, with paho-mqtt in both protocol versions: a device
can only be itself, the devices' tree belongs to the devices, anonymous
mode stays on this machine, persistent sessions are capped, and a publisher
is never acknowledged for telemetry that was not stored.

Each test starts its own Millwright (free ports, temp dir)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

import mwplatform
import rawmqtt as raw
from mwplatform import _log_on_failure, platforms  # noqa: F401 (fixtures)
from conftest import free_ports
from helpers import (TIMEOUT, V311, V5, VERSIONS, MqttClient, PacketTypes, props, unique,
                     wait_until)

pytestmark = pytest.mark.millwright_only(reason="device identity and storage are Millwright's")

# CONNACK codes as paho reports them: v3.1.1 return code 2 comes back as
# 0x85 and 3 as 0x88 (the literal v3.1.1 bytes are checked with rawmqtt).
CLIENT_ID_NOT_VALID = {V5: 0x85, V311: 0x85}
QUOTA = {V5: 0x97, V311: 0x88}
NOT_AUTHORIZED = 0x87
PAYLOAD_FORMAT_INVALID = 0x99


def rc(result) -> int:
    return int(getattr(result.rc, "value", result.rc))


def published(info) -> bool:
    """Whether paho saw the acknowledgement (it raises for a message whose
    connection is gone)."""
    try:
        return info.is_published()
    except RuntimeError:
        return False


def persistent(c: MqttClient, **kw):
    """Connects with a session that outlives the connection (v5: expiry
    one hour; v3.1.1: clean session 0, set at construction)."""
    p = props(PacketTypes.CONNECT, SessionExpiryInterval=3600) if c.version == V5 else None
    return c.connect(properties=p, **kw)


# =========================================================================
# A client id belongs to one principal
# =========================================================================

@pytest.mark.parametrize("version", VERSIONS)
def test_a_device_cannot_take_over_another_devices_session(platforms, clients, version):
    p = platforms()
    d1, d2 = unique("hd1"), unique("hd2")
    t1, t2 = p.add_device(d1), p.add_device(d2)
    real = clients(p, d1, version=version, username=d1, password=t1, clean=False)
    persistent(real)
    real.subscribe(f"devices/{d1}/commands/+", 1)
    mark = p.log_mark()
    # d2 presents d1's client id, asking to resume its session.
    thief = clients(p, d1, version=version, username=d2, password=t2, clean=False)
    res = persistent(thief, expect_success=False)
    assert rc(res) == CLIENT_ID_NOT_VALID[version], res
    assert not res.session_present
    # The real device is untouched and still works.
    assert real.is_connected
    assert real.publish_rc(f"devices/{d1}/status", b"ok", qos=1) in (0, 0x10)
    p.wait_log(mark, "client id refused")
    # The literal v3.1.1 return code is 2 (identifier rejected).
    with raw.RawClient(p.host, p.mqtt_port) as rawc:
        ack = rawc.connect(d1, version=raw.V311, clean=False, username=d2, password=t2.encode())
        assert ack.code == 2, ack
    assert real.is_connected
    # A client id outside the device's own (policy device_id) is refused too.
    other = clients(p, unique("random"), version=version, username=d2, password=t2)
    assert rc(other.connect(expect_success=False)) == CLIENT_ID_NOT_VALID[version]
    # The device's own id and `{id}-suffix` work.
    ok = clients(p, f"{d2}-aux", version=version, username=d2, password=t2)
    ok.connect()


@pytest.mark.parametrize("version", VERSIONS)
def test_anonymous_cannot_take_over_a_device_session(platforms, clients, version):
    p = platforms(mqtt={"allow_anonymous": True})
    d1 = unique("ha")
    t1 = p.add_device(d1)
    real = clients(p, d1, version=version, username=d1, password=t1, clean=False)
    persistent(real)
    anon = clients(p, d1, version=version, clean=False)
    assert rc(persistent(anon, expect_success=False)) == CLIENT_ID_NOT_VALID[version]
    assert real.is_connected


# =========================================================================
# devices/# belongs to devices
# =========================================================================

@pytest.mark.parametrize("version", VERSIONS)
def test_anonymous_clients_cannot_reach_the_device_tree(platforms, clients, version):
    p = platforms(mqtt={"allow_anonymous": True})
    d1 = unique("ht")
    t1 = p.add_device(d1)
    dev = clients(p, d1, version=version, username=d1, password=t1)
    dev.connect()
    dev.subscribe(f"devices/{d1}/commands/+", 1)
    anon = clients(p, unique("anon"), version=version)
    anon.connect()
    # No subscription into the tree.
    codes = anon.subscribe(f"devices/{d1}/#", 1, expect_granted=False)
    assert all(c >= 0x80 for c in codes), codes
    # A wide subscription carries nothing from it.
    anon.subscribe("#", 1)
    dev.publish(f"devices/{d1}/telemetry", json.dumps({"t": 1}), qos=1)
    anon.publish("plain/topic", b"visible", qos=1)
    anon.messages.wait_for_payload(b"visible")
    assert not [m for m in anon.messages.snapshot() if m.topic.startswith("devices/")]
    # A forged command is not delivered (v5: refused with 0x87).
    res = anon.publish_rc(f"devices/{d1}/commands/x", b'{"method":"reboot"}', qos=1)
    if version == V5:
        assert res == NOT_AUTHORIZED
    dev.messages.assert_stays(0)
    # Nothing forged reached the telemetry store.
    anon.publish_rc(f"devices/{d1}/telemetry", json.dumps({"forged": 1}), qos=1)
    series = p.ok("GET", f"/api/devices/{d1}/series").body
    names = json.dumps(series)
    assert "forged" not in names


def test_anonymous_mode_binds_loopback_only(tmp_path):
    """With anonymous access and no bind address, the plaintext listeners are
    on 127.0.0.1 only (and the log says so)."""
    p = mwplatform.Platform(tmp_path / "p", mqtt={"allow_anonymous": True})
    # Remove the explicit bind the suite's platform sets.
    text = p.config.read_text().replace(f'bind = "{p.host}"\nport = {p.mqtt_port}',
                                        f"port = {p.mqtt_port}", 1)
    assert f'port = {p.mqtt_port}' in text and text != p.config.read_text()
    p.config.write_text(text)
    p.start()
    try:
        p.wait_log(0, "bind 127.0.0.1 only")
        addrs = _listening_addrs(p.mqtt_port)
        assert addrs == {"127.0.0.1"}, addrs
    finally:
        p.kill9()


def _listening_addrs(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc)."""
    found = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state = cols[1], cols[3]
            if state != "0A":  # LISTEN
                continue
            ip_hex, port_hex = local.split(":")
            if int(port_hex, 16) != port:
                continue
            if len(ip_hex) == 8:
                ip = socket.inet_ntop(socket.AF_INET, bytes.fromhex(ip_hex)[::-1])
            else:
                raw = bytes.fromhex(ip_hex)
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1]
                                                               for i in range(0, 16, 4)))
            found.add(ip)
    return found


# =========================================================================
# Persistent sessions are capped
# =========================================================================

@pytest.mark.parametrize("version", VERSIONS)
def test_persistent_sessions_per_principal_are_capped(platforms, clients, version):
    p = platforms(mqtt={"max_persistent_sessions_per_principal": 2})
    d = unique("hp")
    t = p.add_device(d)
    for k in range(2):
        c = clients(p, f"{d}-{k}", version=version, username=d, password=t, clean=False)
        persistent(c)
        c.disconnect()
    third = clients(p, f"{d}-2", version=version, username=d, password=t, clean=False)
    assert rc(persistent(third, expect_success=False)) == QUOTA[version]
    # A clean session is not capped, and resuming one's own is fine.
    clients(p, f"{d}-3", version=version, username=d, password=t).connect()
    again = clients(p, f"{d}-0", version=version, username=d, password=t, clean=False)
    assert persistent(again).session_present


# =========================================================================
# Never acknowledge what was not stored
# =========================================================================

@pytest.mark.parametrize("version", VERSIONS)
def test_a_bad_payload_is_not_acknowledged_as_stored(platforms, clients, version):
    p = platforms()
    d = unique("hb")
    t = p.add_device(d)
    c = clients(p, d, version=version, username=d, password=t)
    c.connect()
    if version == V5:
        assert c.publish_rc(f"devices/{d}/telemetry", b"not json", qos=1) == PAYLOAD_FORMAT_INVALID
        assert c.is_connected
    else:
        # v3.1.1 has no failure acknowledgement: the connection closes.
        info = c.client.publish(f"devices/{d}/telemetry", b"not json", qos=1)
        c.wait_disconnected()
        assert not published(info)


@pytest.mark.parametrize("version", VERSIONS)
def test_one_devices_type_conflicts_never_fail_another_devices_writes(platforms, clients, version):
    """Two devices in the same commit windows: one keeps sending a value of
    the wrong type for its series; every point of the other is stored."""
    p = platforms()
    bad, good = unique("hcb"), unique("hcg")
    tb, tg = p.add_device(bad), p.add_device(good)
    b = clients(p, bad, version=V5, username=bad, password=tb)
    b.connect()
    assert b.publish_rc(f"devices/{bad}/telemetry", json.dumps({"x": 1}), qos=1) == 0
    g = clients(p, good, version=version, username=good, password=tg)
    g.connect()
    n_good = 10_000
    stop = threading.Event()
    refused_codes = []

    def offender():
        while not stop.is_set() and len(refused_codes) < 1000:
            refused_codes.append(
                b.publish_rc(f"devices/{bad}/telemetry", json.dumps({"x": "s"}), qos=1))

    th = threading.Thread(target=offender)
    th.start()
    try:
        infos = [g.client.publish(f"devices/{good}/telemetry",
                                  json.dumps({"ts": 1_700_000_000_000 + i, "values": {"v": i}}),
                                  qos=1)
                 for i in range(n_good)]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
    finally:
        stop.set()
        th.join(TIMEOUT)
    assert refused_codes and all(r == PAYLOAD_FORMAT_INVALID for r in refused_codes), \
        set(refused_codes)
    assert g.is_connected

    def stored():
        r = p.ok("GET", f"/api/telemetry/query?device={good}&metric=v"
                        f"&start=1700000000000&end=1700000100000&limit=100000")
        return sum(len(s["points"]) for s in r.body["series"])

    wait_until(lambda: stored() == n_good, what="every point of the good device")
    refused = p.ok("GET", "/api/telemetry/stats").body["writes_refused"]
    assert refused["type_conflicts"] >= len(refused_codes), refused


@pytest.mark.parametrize("version", VERSIONS)
def test_a_full_retained_store_is_never_acknowledged(platforms, clients, version):
    """The retained store is full: v5 gets 0x97, a v3.1.1 publisher (no
    failure acknowledgement) is disconnected instead of acknowledged."""
    p = platforms(mqtt={"allow_anonymous": True, "max_retained_messages": 1, "sys_interval": 0})
    c = clients(p, unique("ret"), version=version)
    c.connect()
    assert c.publish_rc(unique("r/one"), b"kept", qos=1, retain=True) in (0, 0x10)
    if version == V5:
        assert c.publish_rc(unique("r/two"), b"no room", qos=1, retain=True) == 0x97
        assert c.is_connected
    else:
        info = c.client.publish(unique("r/two"), b"no room", qos=1, retain=True)
        c.wait_disconnected()
        assert not published(info)
