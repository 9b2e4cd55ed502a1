"""A Millwright process for the platform suites (security, devices, rules,
API contract): MQTT and the HTTP API on free ports, optionally the TLS
listeners (MQTT/TLS, HTTPS, secure WebSocket) with the built-in CA, a
bootstrap admin token, and the settings sections a suite needs; plus the
HTTP and CLI helpers and the fixture that prints a failed test's server
logs. Each suite subclasses `Platform` with its own defaults and helpers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import _millwright_bin, free_ports
from helpers import TIMEOUT, wait_until

READY = 15.0
ADMIN_TOKEN = "e2e-admin-token-0123456789"

PLATFORMS: list["Platform"] = []  # every platform made, for logs of failed tests

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Resp:
    status: int
    body: object       # parsed JSON, or the text when it is not JSON
    text: str
    headers: dict      # lower-case names

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.text[:800]!r}>"


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):  # an inline table
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def _section(name: str, values: dict) -> str:
    return f"\n[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


def _lower(headers) -> dict:
    return {k.lower(): v for k, v in headers.items()}


class Platform:
    """One Millwright process with its own data directory and free ports.

    `mqtt` overrides `[mqtt]` keys; `sections` adds whole sections
    (`{"devices": {...}}`); `extra_toml` is appended as is; `tls` turns on
    the TLS listeners (ports `tls_port`, `https_port`, `wss_port`)."""

    host = "127.0.0.1"
    ws_port = None  # (for helpers.MqttClient)

    def __init__(self, root: Path, *, mqtt: dict | None = None,
                 sections: dict[str, dict] | None = None, tls: bool = False,
                 extra_toml: str = ""):
        self.root = Path(root)
        self.data = self.root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.certs = self.root / "certs"
        self.certs.mkdir(exist_ok=True)
        ports = free_ports(5 if tls else 2)
        self.mqtt_port, self.http_port = ports[:2]
        self.tls_port, self.https_port, self.wss_port = ports[2:] if tls else (None, None, None)
        self.port = self.mqtt_port  # helpers.MqttClient / rawmqtt use .port
        m = {"bind": self.host, "port": self.mqtt_port, "ws_port": 0,
             "tls_port": self.tls_port or 0, "wss_port": self.wss_port or 0,
             "allow_anonymous": False}
        m.update(mqtt or {})
        self.settings = m
        http = {"bind": self.host, "port": self.http_port, "tls_port": self.https_port or 0}
        tls_section = {"enabled": tls}
        if tls:
            tls_section["hostnames"] = ["localhost", "127.0.0.1"]
        self.config = self.root / "millwright.toml"
        self.config.write_text(
            _section("mqtt", m) + _section("http", http) + _section("tls", tls_section)
            + _section("auth", {"bootstrap_admin_token": ADMIN_TOKEN})
            + "".join(_section(name, values) for name, values in (sections or {}).items())
            + ("\n" + extra_toml if extra_toml else "")
        )
        self.log = self.root / "millwright.log"
        self.proc: subprocess.Popen | None = None
        PLATFORMS.append(self)

    # ----------------------------------------------------------- process
    def start(self) -> None:
        assert not self.running
        with open(self.log, "ab") as logf:
            logf.write(f"\n===== start {time.strftime('%H:%M:%S')}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(
                [str(_millwright_bin()), "serve", "--data-dir", str(self.data),
                 "--config", str(self.config)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": os.environ.get("E2E_MILLWRIGHT_LOG", "info")},
            )
        deadline = time.monotonic() + READY
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"millwright exited with {self.proc.returncode} during "
                                     f"start-up; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as r:
                    assert r.status == 200
                socket.create_connection((self.host, self.mqtt_port), timeout=1).close()
                if self.tls_port:
                    # A full handshake against the platform CA (a bare TCP
                    # probe would be logged as a failed handshake).
                    ctx = ssl.create_default_context(cafile=str(self.ca_pem))
                    for p in (self.tls_port, self.https_port, self.wss_port):
                        with socket.create_connection((self.host, p), timeout=1) as sock:
                            ctx.wrap_socket(sock, server_hostname=self.host).close()
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    self.kill9()
                    raise AssertionError(f"millwright not ready within {READY}s; log tail:\n"
                                         f"{self.log_tail()}")
                time.sleep(0.05)  # polling interval, not synchronisation

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def ca_pem(self) -> Path:
        return self.data / "ca" / "ca.pem"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    # -------------------------------------------------------------- logs
    def log_tail(self, n: int = 60) -> str:
        try:
            return _ANSI.sub("", "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]))
        except FileNotFoundError:
            return "(no log)"

    def log_mark(self) -> int:
        return self.log.stat().st_size

    def log_since(self, mark: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(mark)
            return _ANSI.sub("", f.read().decode(errors="replace"))

    def wait_log(self, mark: int, *needles: str, timeout: float = TIMEOUT) -> str:
        """The first log line written after `mark` that contains every needle
        (case-insensitive, a needle may be `a|b` for either); fails after `timeout`."""
        alts = [[a.lower() for a in n.split("|")] for n in needles]

        def find():
            for line in self.log_since(mark).splitlines():
                low = line.lower()
                if all(any(a in low for a in alt) for alt in alts):
                    return line
            return None
        try:
            return wait_until(find, timeout, what=f"a log line with {needles}")
        except AssertionError:
            raise AssertionError(f"no log line containing {needles} within {timeout}s; log "
                                 f"since then:\n{self.log_since(mark)[-3000:]}") from None

    # -------------------------------------------------------------- HTTP
    def api(self, method: str, path: str, body=None, *, token: str | None = ADMIN_TOKEN,
            ctype: str | None = None, headers: dict | None = None,
            timeout: float = 60) -> Resp:
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            if isinstance(body, (bytes, str)):
                data = body.encode() if isinstance(body, str) else body
                hdrs.setdefault("Content-Type", ctype or "application/octet-stream")
            else:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", ctype or "application/json")
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw_body, rh = r.status, r.read(), _lower(r.headers)
        except urllib.error.HTTPError as e:
            status, raw_body, rh = e.code, e.read(), _lower(e.headers)
        text = raw_body.decode(errors="replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Resp(status, parsed, text, rh)

    def ok(self, method: str, path: str, body=None, *, expect: int | tuple = (200, 201, 204),
           **kw) -> Resp:
        r = self.api(method, path, body, **kw)
        expect = (expect,) if isinstance(expect, int) else expect
        assert r.status in expect, f"{method} {path} {body!r:.400}: expected {expect}, got {r}"
        return r

    def problem(self, method: str, path: str, body=None, *, status: int, code: str,
                field: str | None = None, **kw) -> Resp:
        """A request that must fail with `status`, the problem `code` and
        (if given) the problem's `field`."""
        r = self.api(method, path, body, **kw)
        assert r.status == status, f"{method} {path} {body!r:.400}: expected {status}, got {r}"
        assert isinstance(r.body, dict) and r.body.get("code") == code, (
            f"{method} {path} {body!r:.300}: expected problem code {code!r}, got {r}")
        assert r.headers.get("content-type", "").startswith("application/problem+json"), r
        if field is not None:
            assert r.body.get("field") == field, (
                f"{method} {path} {body!r:.300}: expected field {field!r}, got {r}")
        return r

    def add_device(self, device_id: str, *, token: bool = True, **fields) -> str | None:
        """Registers a device via the API; returns its token (shown once)."""
        r = self.ok("POST", "/api/devices", {"id": device_id, "token": token, **fields},
                    expect=201)
        assert r.body["id"] == device_id, r
        if token:
            assert isinstance(r.body.get("token"), str) and r.body["token"], r
            return r.body["token"]
        return None

    # --------------------------------------------------------------- CLI
    def cli(self, *args: str, token: str | None = ADMIN_TOKEN,
            timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**os.environ, "MILLWRIGHT_URL": self.url}
        env.pop("MILLWRIGHT_TOKEN", None)
        if token is not None:
            env["MILLWRIGHT_TOKEN"] = token
        return subprocess.run([str(_millwright_bin()), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(autouse=True)
def _log_on_failure(request):
    """When a test fails, prints what the platforms logged during it."""
    marks = {id(p): (p.log_mark() if p.log.exists() else 0) for p in PLATFORMS}
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        return
    out = []
    for p in PLATFORMS:
        if not p.log.exists():
            continue
        lines = p.log_since(marks.get(id(p), 0)).splitlines()
        if lines:
            out.append(f"----- {p.log} ({len(lines)} lines during the test, last 80) -----")
            out += lines[-80:]
    if not out:
        return
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print("\n" + "\n".join(out))
    else:
        print("\n".join(out))


@pytest.fixture
def platforms(tmp_path):
    """Factory of platforms (`Platform` or a subclass: `cls=`) for this test
    only, started; all killed at teardown."""
    made: list[Platform] = []

    def make(cls=None, **kw) -> Platform:
        p = (cls or Platform)(tmp_path / f"platform{len(made)}", **kw)
        made.append(p)
        p.start()
        return p

    yield make
    for p in made:
        p.kill9()
