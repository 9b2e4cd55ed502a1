"""Running Millwright: graceful shutdown, restart, $SYS metrics, start-up errors.

All millwright_only: they test the product's process behaviour and settings
(docs/configuration.md), not MQTT semantics shared with mosquitto.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

import rawmqtt as raw
from conftest import _millwright_bin, free_ports
from helpers import (TIMEOUT, V5, V311, Collector, PacketTypes, props, unique, wait_until)

pytestmark = pytest.mark.millwright_only(reason="Millwright process behaviour and settings")


# --------------------------------------------------------------- shutdown

def test_sigterm_disconnects_clients_with_0x8b_and_exits_0(broker_factory, clients):
    b = broker_factory()
    v5 = raw.RawClient(b.host, b.port)
    v3 = raw.RawClient(b.host, b.port)
    try:
        assert v5.connect(unique("term5"), version=raw.V5).code == 0
        assert v3.connect(unique("term3"), version=raw.V311).code == 0
        paho = clients(b, version=V5)
        paho.connect()
        start = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        before_close = v5.wait_closed(timeout=5.0)
        assert [p.type for p in before_close] == [raw.DISCONNECT], before_close
        assert raw.disconnect_reason(before_close[0]) == raw.RC_SERVER_SHUTTING_DOWN
        assert v3.wait_closed(timeout=5.0) == [], "v3.1.1 clients get a bare close"
        assert paho.wait_disconnected().rc == raw.RC_SERVER_SHUTTING_DOWN
        try:
            rc = b.proc.wait(timeout=max(0.1, 5.0 - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            raise AssertionError("millwright still running 5 s after SIGTERM") from None
        assert rc == 0, f"exit status {rc} after SIGTERM"
    finally:
        v5.close()
        v3.close()


def test_persistent_session_survives_sigterm_and_restart(broker_factory, clients):
    b = broker_factory()
    topic = unique("ops/q")
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=3600)
    # A: offline session with queued messages
    cid_a = unique("ops-a")
    a = clients(b, cid_a, version=V5)
    a.connect(clean_start=True, properties=expiry)
    a.subscribe(topic, 1)
    a.disconnect()
    # B: online session holding unacknowledged (in-flight) messages at shutdown
    cid_b = unique("ops-b")
    b_sub = clients(b, cid_b, version=V5, manual_ack=True)
    b_sub.connect(clean_start=True, properties=expiry)
    b_sub.subscribe(topic, 1)
    pub = clients(b, version=V5)
    pub.connect()
    sent = [f"q{i:02d}".encode() for i in range(10)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    b_sub.messages.wait_for(len(sent))  # received, never acknowledged
    assert b.stop(timeout=5.0) == 0
    b.start()

    a2 = clients(b, cid_a, version=V5)
    assert a2.connect(clean_start=False, properties=expiry).session_present is True
    msgs = a2.messages.wait_for(len(sent))
    assert [m.payload for m in msgs] == sent, "queued messages lost or reordered"

    b2 = clients(b, cid_b, version=V5)
    assert b2.connect(clean_start=False, properties=expiry).session_present is True
    redelivered = b2.messages.wait_for(len(sent))
    assert [m.payload for m in redelivered] == sent, "in-flight messages not redelivered"
    assert all(m.dup for m in redelivered), "redelivered PUBLISHes must have DUP set"

    # and the subscriptions survived: live traffic still flows
    pub2 = clients(b, version=V5)
    pub2.connect()
    pub2.publish(topic, b"after-restart", qos=1)
    a2.messages.wait_for_payload(b"after-restart")
    b2.messages.wait_for_payload(b"after-restart")


# ------------------------------------------------------------------- $SYS

def _int_value(payload: bytes) -> int:
    return int(payload.decode().split()[0])


def _latest(collector: Collector, topic: str):
    for m in reversed(collector.snapshot()):
        if m.topic == topic:
            return m.payload
    return None


def test_sys_topics_are_published_and_not_matched_by_hash(broker_factory, clients):
    b = broker_factory(sys_interval=1)
    sys_sub = clients(b, version=V5)
    sys_sub.connect()
    sys_sub.subscribe("$SYS/#", 0)
    hash_sub = clients(b, version=V5)
    hash_sub.connect()
    hash_sub.subscribe("#", 0)
    pub = clients(b, version=V311)
    pub.connect()
    topic = unique("sys/t")
    for i in range(5):
        pub.publish(topic, f"p{i}", qos=1)

    wanted = ["$SYS/broker/clients/connected", "$SYS/broker/messages/received",
              "$SYS/broker/uptime"]
    sys_sub.messages.wait_until(
        lambda ms: set(wanted) <= {m.topic for m in ms}, timeout=3.0, what=f"{wanted}")
    wait_until(lambda: _int_value(_latest(sys_sub.messages,
                                          "$SYS/broker/clients/connected")) >= 3,
               timeout=3.0, what="clients/connected to count our 3 clients")
    wait_until(lambda: _int_value(_latest(sys_sub.messages,
                                          "$SYS/broker/messages/received")) >= 5,
               timeout=3.0, what="messages/received to count our 5 publishes")
    first_uptime = _int_value(_latest(sys_sub.messages, "$SYS/broker/uptime"))
    assert _latest(sys_sub.messages, "$SYS/broker/uptime").decode().endswith("seconds")
    wait_until(lambda: _int_value(_latest(sys_sub.messages, "$SYS/broker/uptime"))
               > first_uptime, timeout=3.0, what="a later uptime (periodic update)")

    # `#` saw our traffic but none of the $SYS topics [MQTT-4.7.2-1]
    hash_sub.messages.wait_until(lambda ms: len([m for m in ms if m.topic == topic]) == 5)
    leaked = [m.topic for m in hash_sub.messages.snapshot() if m.topic.startswith("$")]
    assert leaked == [], f"`#` matched $-topics: {leaked[:5]}"


def test_sys_counts_auth_failures_and_acl_denials(broker_factory, clients, tmp_path):
    pw, acl = tmp_path / "passwd", tmp_path / "acl"
    res = subprocess.run([str(_millwright_bin()), "passwd", str(pw), "dev1", "--password", "pw1"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stderr
    acl.write_text("pattern readwrite devices/%u/#\ntopic read $SYS/#\n")
    b = broker_factory(sys_interval=1, allow_anonymous=False, password_file=pw, acl_file=acl)
    with raw.RawClient(b.host, b.port) as c:
        assert c.connect(unique("bad"), version=raw.V5, username="dev1",
                         password=b"nope").code == raw.RC_BAD_USERNAME_OR_PASSWORD
    dev = clients(b, version=V5, username="dev1", password="pw1")
    dev.connect()
    assert dev.publish_rc("devices/dev2/x", b"no", qos=1) == raw.RC_NOT_AUTHORIZED
    dev.subscribe("devices/dev2/#", 1, expect_granted=False)
    dev.subscribe("$SYS/broker/#", 0)
    for metric in ["auth/failures", "acl/publish_denied", "acl/subscribe_denied"]:
        wait_until(lambda: (v := _latest(dev.messages, f"$SYS/broker/{metric}")) is not None
                   and _int_value(v) >= 1, timeout=3.0, what=f"$SYS/broker/{metric} >= 1")


# -------------------------------------------------------- start-up errors

def _serve(tmp_path, toml_text: str, env: dict | None = None,
           timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run `millwright serve` expecting it to refuse to start."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml_text)
    cmd = [str(_millwright_bin()), "serve", "--data-dir", str(tmp_path / "data"),
           "--config", str(cfg)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MILLWRIGHT_")}
    full_env.update(env or {})
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=full_env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"millwright kept running with an invalid configuration:\n"
                             f"{toml_text}\nenv={env}") from None


def _valid_toml(port: int) -> str:
    return (f'[mqtt]\nbind = "127.0.0.1"\nport = {port}\nws_port = 0\n'
            "allow_anonymous = true\n")


def test_unknown_config_key_is_refused_naming_the_key(tmp_path):
    res = _serve(tmp_path, "[mqtt]\nportt = 5\n")
    assert res.returncode != 0
    assert "portt" in res.stderr, res.stderr


def test_invalid_env_value_is_refused_naming_the_setting(tmp_path):
    [port] = free_ports(1)
    res = _serve(tmp_path, _valid_toml(port), env={"MILLWRIGHT_MQTT__PORT": "notanumber"})
    assert res.returncode != 0
    assert "mqtt.port" in res.stderr, res.stderr


def test_port_in_use_is_refused_naming_the_port(tmp_path):
    [port] = free_ports(1)
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        res = _serve(tmp_path, _valid_toml(port))
    finally:
        squatter.close()
    assert res.returncode != 0
    assert str(port) in res.stderr, res.stderr


def test_env_override_moves_the_listener(broker_factory):
    [env_port] = free_ports(1)
    b = broker_factory(env={"MILLWRIGHT_MQTT__PORT": str(env_port)}, start=False)
    file_port = b.port       # what the TOML file says
    b.port = env_port        # where the listener must be
    b.start()
    with raw.RawClient(b.host, env_port) as c:
        assert c.connect(unique("env"), version=raw.V311).code == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((b.host, file_port), timeout=TIMEOUT).close()
