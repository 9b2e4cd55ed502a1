"""Telemetry end to end: device telemetry over MQTT (mosquitto_pub, paho) and
InfluxDB line protocol over HTTP (curl) go into the embedded time-series
store and come back out of the HTTP query API, and every acknowledged point
survives kill -9 during sustained ingest.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from conftest import BROKER_KIND, _millwright_bin, free_ports

pytestmark = pytest.mark.millwright_only

READY = 15.0


class Platform:
    """A Millwright process with MQTT and the HTTP API on free ports."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.mqtt_port, self.http_port = free_ports(2)
        self.token = "e2e-telemetry-token-0123456789"
        self.config = root / "millwright.toml"
        self.config.write_text(
            "[mqtt]\n"
            f'bind = "127.0.0.1"\nport = {self.mqtt_port}\nws_port = 0\n'
            "[http]\n"
            f'bind = "127.0.0.1"\nport = {self.http_port}\n'
            "[tls]\nenabled = false\n"
            f'[auth]\nbootstrap_admin_token = "{self.token}"\n'
        )
        self.log = root / "millwright.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(_millwright_bin()), "serve", "--data-dir", str(self.data), "--config", str(self.config)],
            stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"},
        )
        deadline = time.monotonic() + READY
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"millwright exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health", timeout=1):
                    pass
                socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("millwright did not become ready")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def http(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = resp.read()
                return resp.status, data
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def device(self, device_id: str) -> list[str]:
        """Registers a device; returns mosquitto_pub arguments that connect
        as it (its id as client id, its own token)."""
        status, body = self.http("POST", "/api/devices",
                                 json.dumps({"id": device_id, "token": True}).encode(),
                                 {"Content-Type": "application/json"})
        assert status == 201, body
        return ["-i", device_id, "-u", device_id, "-P", json.loads(body)["token"]]

    def query(self, device: str, metric: str, start: int, end: int) -> list[tuple[int, float]]:
        status, body = self.http(
            "GET", f"/api/telemetry/query?device={device}&metric={metric}&start={start}&end={end}&limit=100000"
        )
        assert status == 200, body
        doc = json.loads(body)
        points = []
        for s in doc["series"]:
            points.extend((p["ts"], p["value"]) for p in s["points"])
        return sorted(points)


@pytest.fixture
def platform(tmp_path):
    if BROKER_KIND != "millwright":
        pytest.skip("telemetry storage is Millwright's")
    p = Platform(tmp_path)
    p.start()
    yield p
    p.kill9()


def now_ms() -> int:
    return int(time.time() * 1000)


def test_mosquitto_pub_telemetry_is_stored_and_queryable(platform):
    t0 = now_ms() - 60_000
    press1, press2 = platform.device("press-1"), platform.device("press-2")
    for i, v in enumerate([20.5, 21.0, 21.5]):
        payload = json.dumps({"ts": t0 + i * 1000, "values": {"temp": v, "rpm": 1200 + i}})
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(platform.mqtt_port), "-V", "mqttv5", "-q", "1",
             *press1, "-t", "devices/press-1/telemetry", "-m", payload],
            check=True, timeout=10,
        )
    # Server-time form and array form.
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(platform.mqtt_port), "-q", "1", *press2,
         "-t", "devices/press-2/telemetry", "-m", '[{"temp": 50}, {"ts": %d, "values": {"temp": 49}}]' % t0],
        check=True, timeout=10,
    )
    assert platform.query("press-1", "temp", t0 - 1, t0 + 10_000) == [
        (t0, 20.5), (t0 + 1000, 21.0), (t0 + 2000, 21.5)]
    assert [v for _, v in platform.query("press-1", "rpm", t0 - 1, t0 + 10_000)] == [1200, 1201, 1202]
    pts = platform.query("press-2", "temp", t0 - 1, now_ms() + 1000)
    assert sorted(v for _, v in pts) == [49, 50]
    status, body = platform.http("GET", "/api/telemetry/latest?device=press-1&metric=temp")
    assert status == 200 and json.loads(body)["latest"][0]["value"] == 21.5


def test_telemetry_published_through_a_topic_alias_is_stored(platform):
    """MQTT 5 devices save bytes with topic aliases: the first PUBLISH maps
    alias 1 to the telemetry topic, the next ones carry only the alias. All
    of them are stored; once the alias is re-mapped elsewhere, messages on
    it are not telemetry any more."""
    t0 = now_ms() - 60_000
    cred = platform.device("alias-1")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="alias-1",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(cred[3], cred[5])
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()
    try:
        def alias(n):
            props = Properties(PacketTypes.PUBLISH)
            props.TopicAlias = n
            return props

        infos = [client.publish("devices/alias-1/telemetry",
                                json.dumps({"ts": t0, "values": {"v": 0}}), qos=1, properties=alias(1))]
        for i in range(1, 5):
            infos.append(client.publish("", json.dumps({"ts": t0 + i, "values": {"v": i}}), qos=1,
                                        properties=alias(1)))
        # Re-mapped to a plain topic: what follows on alias 1 is not telemetry.
        infos.append(client.publish("devices/alias-1/status", b"{}", qos=1, properties=alias(1)))
        infos.append(client.publish("", json.dumps({"ts": t0 + 9, "values": {"v": 9}}), qos=1,
                                    properties=alias(1)))
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    assert platform.query("alias-1", "v", t0 - 1, t0 + 100) == [(t0 + i, i) for i in range(5)]


def test_bad_telemetry_payload_is_refused_with_0x99_and_nothing_is_stored(platform):
    out = subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(platform.mqtt_port), "-V", "mqttv5", "-q", "1", "-d",
         *platform.device("bad-1"), "-t", "devices/bad-1/telemetry", "-m", '{"temp": {"nested": 1}}'],
        capture_output=True, text=True, timeout=10,
    )
    assert "RC:153" in out.stdout + out.stderr, out.stdout + out.stderr
    status, body = platform.http("GET", "/api/devices/bad-1/series")
    assert status == 200
    assert json.loads(body).get("series", []) == []


def test_curl_line_protocol_in_http_query_out(platform):
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    t0 = now_ms() - 120_000
    lines = "\n".join(
        f"readings,device=truck-{i % 3},fleet=North velocity={i}.5,load={i}i {t0 + i * 10_000}" for i in range(9)
    )
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
         f"http://127.0.0.1:{platform.http_port}/api/v2/write?precision=ms",
         "-H", f"Authorization: Token {platform.token}", "--data-binary", lines],
        capture_output=True, text=True, timeout=10,
    )
    assert out.stdout == "204"
    pts = platform.query("truck-1", "readings.velocity", t0 - 1, t0 + 100_000)
    assert pts == [(t0 + 10_000, 1.5), (t0 + 40_000, 4.5), (t0 + 70_000, 7.5)]
    # A bad line: 400 naming the line, nothing from the request stored.
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"http://127.0.0.1:{platform.http_port}/write?precision=ms",
         "-H", f"Authorization: Token {platform.token}",
         "--data-binary", f"readings,device=truck-9 velocity=1 {t0}\nreadings,device=truck-9 velocity= {t0}"],
        capture_output=True, text=True, timeout=10,
    )
    problem = json.loads(out.stdout)
    assert problem["status"] == 400 and problem.get("line") == 2, problem
    assert platform.query("truck-9", "readings.velocity", t0 - 1, t0 + 1) == []


def test_every_acknowledged_point_survives_kill9_during_sustained_ingest(platform):
    """MQTT QoS 1 and HTTP line-protocol writers run flat out; the broker is
    killed with SIGKILL mid-stream; after restart every point whose PUBACK or
    204 arrived before the kill is there."""
    base = now_ms() - 3_600_000
    acked_mqtt: list[int] = []
    acked_http: list[int] = []
    stop = threading.Event()
    lock = threading.Lock()

    sent: dict[int, int] = {}
    cred = platform.device("crash-mqtt")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="crash-mqtt",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(cred[3], cred[5])
    client.max_inflight_messages_set(50)

    def on_publish(_c, _u, mid, rc, _p):
        if not rc.is_failure:
            with lock:
                if mid in sent:
                    acked_mqtt.append(sent.pop(mid))

    client.on_publish = on_publish
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()

    def mqtt_writer():
        i = 0
        while not stop.is_set() and i < 200_000:
            ts = base + i
            info = client.publish("devices/crash-mqtt/telemetry", json.dumps({"ts": ts, "values": {"v": i}}), qos=1)
            with lock:
                sent[info.mid] = ts
            i += 1
            if len(sent) > 200:
                time.sleep(0.001)

    def http_writer():
        i = 0
        while not stop.is_set():
            batch = [base + i * 100 + k for k in range(100)]
            body = "\n".join(f"m,device=crash-http v={ts % 1000} {ts}" for ts in batch).encode()
            try:
                status, _ = platform.http("POST", "/write?precision=ms", body)
            except OSError:
                return
            if status == 204:
                acked_http.extend(batch)
            i += 1

    threads = [threading.Thread(target=mqtt_writer), threading.Thread(target=http_writer)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (len(acked_mqtt) < 3000 or len(acked_http) < 3000):
        time.sleep(0.05)
    platform.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    client.loop_stop()
    with lock:
        mqtt_acked = sorted(acked_mqtt)
    http_acked = sorted(acked_http)
    assert len(mqtt_acked) >= 1000 and len(http_acked) >= 1000, (len(mqtt_acked), len(http_acked))

    platform.start()
    got_mqtt = {ts for ts, _ in platform.query("crash-mqtt", "v", base - 1, base + 10_000_000)}
    got_http = {ts for ts, _ in platform.query("crash-http", "m.v", base - 1, base + 10_000_000)}
    missing_mqtt = [ts for ts in mqtt_acked if ts not in got_mqtt]
    missing_http = [ts for ts in http_acked if ts not in got_http]
    assert not missing_mqtt, f"{len(missing_mqtt)} acknowledged MQTT points lost, e.g. {missing_mqtt[:5]}"
    assert not missing_http, f"{len(missing_http)} acknowledged HTTP points lost, e.g. {missing_http[:5]}"


def test_telemetry_survives_graceful_restart_after_flush(platform):
    t0 = now_ms() - 30_000
    body = "\n".join(f"m,device=restart-1 v={i} {t0 + i}" for i in range(1000)).encode()
    assert platform.http("POST", "/write?precision=ms", body)[0] == 204
    platform.stop()
    # The shutdown flush leaves chunk files, not just a WAL.
    assert any((platform.data / "tsdb" / "chunks").iterdir())
    platform.start()
    assert len(platform.query("restart-1", "m.v", t0 - 1, t0 + 2000)) == 1000
