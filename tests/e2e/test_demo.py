"""`millwright serve --demo`: a simulated factory inside the platform —
machines registered with their own tokens, connected over the real MQTT
listener, sending telemetry, keeping twins; demo rules; a printed login
that works."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BROKER_KIND, _millwright_bin, free_ports

pytestmark = pytest.mark.millwright_only(reason="demo mode is Millwright's")

DEADLINE = 30.0


def _http(method: str, url: str, body=None, token: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _until(pred, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling interval, not synchronisation


def test_demo_mode_runs_a_living_factory(tmp_path):
    if BROKER_KIND != "millwright":
        pytest.skip("demo mode is Millwright's")
    mqtt_port, http_port = free_ports(2)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[mqtt]\nbind = "127.0.0.1"\nport = {mqtt_port}\nws_port = 0\ntls_port = 0\nwss_port = 0\n'
        f'[http]\nbind = "127.0.0.1"\nport = {http_port}\ntls_port = 0\n'
        "[tls]\nenabled = false\n"
    )
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(_millwright_bin()), "serve", "--data-dir", str(tmp_path / "d"), "--config",
             str(cfg), "--demo", "--demo-machines", "6"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "info"})
    try:
        m = _until(lambda: re.search(r"login: demo / ([0-9a-f]+)", log.read_text()),
                   "the printed demo login")
        base = f"http://127.0.0.1:{http_port}"
        status, body = _http("POST", f"{base}/api/auth/login",
                             {"username": "demo", "password": m.group(1)})
        assert status == 200, body
        token = body["token"]

        def all_online():
            s, b = _http("GET", f"{base}/api/fleet/status", token=token)
            return s == 200 and b["groups"]["all"]["online"] == 6
        _until(all_online, "6 demo machines online")

        def telemetry():
            s, b = _http("GET", f"{base}/api/telemetry/latest?device=demo-0001&metric=temp",
                         token=token)
            return s == 200 and b["latest"]
        _until(telemetry, "telemetry of demo-0001")

        def reported():
            s, b = _http("GET", f"{base}/api/devices/demo-0002/twin", token=token)
            return s == 200 and b["state"]["reported"].get("firmware")
        _until(reported, "demo-0002's reported twin")

        status, body = _http("GET", f"{base}/api/rules", token=token)
        names = {r["name"] for r in body["items"]}
        assert {"demo-overheat", "demo-vibration"} <= names, body

        # A command reaches a simulated machine and comes back answered.
        status, body = _http("POST", f"{base}/api/devices/demo-0003/commands",
                             {"method": "ping", "wait": True, "timeout": 10}, token=token)
        assert status == 200 and body["status"] == "succeeded", body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "broker stopped; state saved" in log.read_text()
