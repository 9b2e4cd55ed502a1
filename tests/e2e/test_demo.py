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

        # The CLI does the same jobs over the API.
        def cli(*args, tok=token):
            env = {**os.environ, "MILLWRIGHT_URL": base, "MILLWRIGHT_TOKEN": tok}
            return subprocess.run([str(_millwright_bin()), *args], capture_output=True,
                                  text=True, timeout=30, env=env)
        r = cli("command", "send", "demo-0004", "ping", "--wait", "--timeout", "10")
        assert r.returncode == 0 and json.loads(r.stdout)["status"] == "succeeded", r
        r = cli("twin", "set-desired", "demo-0004", '{"speed": 900}')
        assert r.returncode == 0, r.stderr
        _until(lambda: json.loads(cli("twin", "get", "demo-0004").stdout)["state"]["reported"]
               .get("speed") == 900, "demo-0004 reporting speed 900")
        r = cli("telemetry", "latest", "demo-0001", "--output", "csv")
        assert r.returncode == 0 and r.stdout.startswith("device,metric,ts,value"), r
        r = cli("telemetry", "query", "demo-0001", "temp", "--agg", "avg", "--bucket", "10s",
                "--csv")
        assert r.returncode == 0 and "temp" in r.stdout, r
        r = cli("command", "list", "demo-0004", "--output", "json")
        assert r.returncode == 0 and len(json.loads(r.stdout)) >= 1, r
        # Admin jobs with the admin token printed at first start.
        admin = re.search(r"(mwa_[A-Za-z0-9_-]+)", log.read_text()).group(1)
        r = cli("token", "create", "ci", "--role", "viewer", tok=admin)
        assert r.returncode == 0 and r.stdout.strip().startswith("mwa_"), r
        viewer = r.stdout.strip()
        assert cli("command", "send", "demo-0004", "ping", tok=viewer).returncode == 4
        r = cli("user", "add", "shiftlead", "--role", "operator", "--password", "long-enough-pw",
                tok=admin)
        assert r.returncode == 0, r.stderr
        r = cli("user", "list", "--output", "json", tok=admin)
        assert "shiftlead" in r.stdout, r
        r = cli("completions", "bash")
        assert r.returncode == 0 and "millwright" in r.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "broker stopped; state saved" in log.read_text()
