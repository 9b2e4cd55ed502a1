"""Broker fixtures for the end-to-end suite.

E2E_BROKER selects the implementation under test:
  mosquitto  (default) - reference broker, used to validate the suite itself
  millwright           - $MILLWRIGHT_BIN (default <repo>/target/debug/millwright)
E2E_RUN_ALL=1 also runs millwright_only tests against mosquitto (expected to fail).

Every broker instance gets its own free port(s) and its own temp data dir.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_KIND = os.environ.get("E2E_BROKER", "mosquitto").strip().lower() or "mosquitto"
if BROKER_KIND not in ("mosquitto", "millwright"):
    raise pytest.UsageError(f"E2E_BROKER must be 'mosquitto' or 'millwright', not {BROKER_KIND!r}")

READY_TIMEOUT = 10.0


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(port: int) -> bool:
    """Whether `port` can be bound the way the brokers bind it: on 127.0.0.1 and
    on the dual-stack wildcard (mosquitto's libwebsockets listener binds `*:port`,
    so a connection lingering in TIME_WAIT on that port anywhere makes it fail).
    No SO_REUSEADDR, so TIME_WAIT leftovers count as taken."""
    attempts = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0"),
                (socket.AF_INET6, "::")]
    for family, addr in attempts:
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this machine
        try:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


_used_ports: set[int] = set()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports for listeners.

    Picked at random below the kernel's ephemeral range, so the suite's own
    client connections (and their TIME_WAIT leftovers) never occupy them, and
    checked bindable both on 127.0.0.1 and on the wildcard address."""
    lo, hi = _ephemeral_range()
    if lo > 11000:
        bottom, top = 10000, lo - 1
    elif hi < 64535:
        bottom, top = hi + 1, 65535
    else:
        bottom, top = 1024, 65535
    ports: list[int] = []
    for _ in range(10000):
        p = random.randint(bottom, top)
        if p in ports or p in _used_ports or not _bindable(p):
            continue
        ports.append(p)
        if len(ports) == n:
            _used_ports.update(ports)
            return ports
    raise RuntimeError(f"could not find {n} free ports")


def _millwright_bin() -> Path:
    p = Path(os.environ.get("MILLWRIGHT_BIN", REPO_ROOT / "target" / "debug" / "millwright"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


# Millwright `[mqtt]` keys a test may set, and the mosquitto.conf option that
# means the same (None: mosquitto has no equivalent, so a test using it must be
# millwright_only). Listener-scoped mosquitto options are marked `listener:`.
MOSQUITTO_EQUIVALENT: dict[str, str | None] = {
    "allow_anonymous": "allow_anonymous",
    "password_file": "password_file",
    "acl_file": "acl_file",
    "max_packet_size": "max_packet_size",
    # mosquitto announces max_inflight_messages as its v5 Receive Maximum (it
    # also limits outgoing messages with it); an excess incoming QoS 2 gets
    # PUBREC 0x97 from it rather than DISCONNECT 0x93
    "receive_maximum": "max_inflight_messages",
    "max_inflight": "max_inflight_messages",
    "max_queued_messages": "max_queued_messages",
    "max_keepalive": "max_keepalive",
    "sys_interval": "sys_interval",
    "topic_alias_maximum": "listener:max_topic_alias",
    "outbound_queue": None,
    "max_queued_bytes": "max_queued_bytes",
    "max_connections": "listener:max_connections",
    "retain_available": "retain_available",
    "session_expiry_max": None,
    "max_topic_levels": None,
    "max_subscriptions_per_client": None,
    "max_retained_messages": None,
    "max_retained_bytes": None,
    "connect_timeout": None,
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def _conf_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class BrokerProcess:
    """One broker process with a fixed port set and data dir that survive restarts.

    `settings` are Millwright `[mqtt]` keys (e.g. allow_anonymous=False,
    max_packet_size=1024); for mosquitto they are translated through
    MOSQUITTO_EQUIVALENT. `env` adds environment variables (millwright only).
    """

    def __init__(self, kind: str, root: Path, settings: dict | None = None,
                 env: dict | None = None):
        self.kind = kind
        self.host = "127.0.0.1"
        self.root = Path(root)
        self.settings = dict(settings or {})
        self.port, ws = free_ports(2)
        self.ws_port: int | None = ws
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "broker.log"
        if kind == "mosquitto":
            if not shutil.which("mosquitto"):
                pytest.fail("E2E_BROKER=mosquitto but no `mosquitto` binary on PATH")
            self.data_dir = self.root
            self.config_path = self.root / "mosquitto.conf"
            self._write_mosquitto_conf()
            self.cmd = ["mosquitto", "-c", str(self.config_path)]
            self.env = dict(os.environ, **(env or {}))
        else:
            binary = _millwright_bin()
            if not binary.exists():
                pytest.fail(f"E2E_BROKER=millwright but {binary} does not exist "
                            "(build it, or point MILLWRIGHT_BIN at the binary)")
            self.data_dir = self.root / "data"
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.config_path = self.data_dir / "millwright.toml"
            self._write_millwright_toml()
            self.cmd = [str(binary), "serve", "--data-dir", str(self.data_dir),
                        "--config", str(self.config_path)]
            self.env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"),
                            **(env or {}))

    # ---------------------------------------------------------------- config
    def _write_mosquitto_conf(self) -> None:
        general = {
            "allow_anonymous": "true",
            # publish $SYS often so the `#`-does-not-match-$SYS test sees traffic
            "sys_interval": "1",
        }
        per_listener: dict[str, str] = {}
        for key, value in self.settings.items():
            if key not in MOSQUITTO_EQUIVALENT:
                raise KeyError(f"unknown broker setting {key!r}")
            option = MOSQUITTO_EQUIVALENT[key]
            if option is None:
                pytest.fail(f"mosquitto has no equivalent of Millwright's mqtt.{key}; "
                            "mark the test millwright_only")
            if option.startswith("listener:"):
                per_listener[option.split(":", 1)[1]] = _conf_value(value)
            else:
                general[option] = _conf_value(value)
        lines = [
            "per_listener_settings false",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            # mosquitto only writes its DB on clean shutdown or autosave, which
            # is why the kill -9 durability tests are millwright_only.
            "autosave_interval 1",
            "log_dest stderr",
            "log_type all",
            "log_timestamp_format %H:%M:%S",
        ]
        lines += [f"{k} {v}" for k, v in general.items()]
        listener_opts = [f"{k} {v}" for k, v in per_listener.items()]
        lines += [f"listener {self.port} {self.host}", *listener_opts,
                  f"listener {self.ws_port} {self.host}", "protocol websockets", *listener_opts]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # mosquitto started as root drops privileges to user `mosquitto`,
            # which could not write our temp dir.
            lines.insert(0, "user root")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _write_millwright_toml(self) -> None:
        mqtt = {"bind": self.host, "port": self.port}
        if self.ws_port:
            mqtt["ws_port"] = self.ws_port
        mqtt["allow_anonymous"] = True
        for key in self.settings:
            if key not in MOSQUITTO_EQUIVALENT:
                raise KeyError(f"unknown broker setting {key!r} (add it to MOSQUITTO_EQUIVALENT)")
        mqtt.update(self.settings)
        self.config_path.write_text(
            "[mqtt]\n"
            + "".join(f"{k} = {_toml_value(v)}\n" for k, v in mqtt.items())
            + "[http]\n"
            "enabled = false\n"
            # No TLS listeners: their default ports are fixed, and these
            # tests run many brokers side by side.
            "[tls]\n"
            "enabled = false\n"
        )

    # --------------------------------------------------------------- process
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, "broker already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')}: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.root, env=self.env)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for port in [p for p in (self.port, self.ws_port) if p]:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} during "
                                       f"startup; log tail:\n{self.log_tail()}")
                try:
                    with socket.create_connection((self.host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.kill9()
                        raise RuntimeError(f"{self.kind} did not accept connections on port "
                                           f"{port} within {READY_TIMEOUT}s; log tail:\n"
                                           f"{self.log_tail()}")
                    time.sleep(0.02)  # polling interval, not synchronisation

    def kill9(self) -> None:
        """SIGKILL: no chance to flush anything."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait for a clean exit (falls back to SIGKILL after `timeout`)."""
        if self.proc is None:
            return None
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"{self.kind} did not exit within {timeout}s of SIGTERM")
        return self.proc.returncode

    def restart(self) -> None:
        """Start again on the same port(s) with the same data dir (stops it first if running)."""
        if self.running:
            self.stop()
        self.start()

    def close(self) -> None:
        if self.running:
            self.kill9()

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<{self.kind} {self.host}:{self.port} ws={self.ws_port} dir={self.data_dir}>"


# -------------------------------------------------------------------- fixtures

def _start(root: Path) -> BrokerProcess:
    b = BrokerProcess(BROKER_KIND, root)
    b.start()
    return b


@pytest.fixture
def broker(tmp_path):
    """A fresh broker for this test only."""
    b = _start(tmp_path)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory):
    """One broker per test module, for tests that use unique topics/client ids
    and leave no state another test could observe."""
    b = _start(tmp_path_factory.mktemp("shared-broker"))
    try:
        yield b
    finally:
        b.close()


class BrokerFactory:
    """Starts brokers with extra settings; all are killed at teardown.

        b = broker_factory(allow_anonymous=False, password_file=path)
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.brokers: list[BrokerProcess] = []

    def __call__(self, *, env: dict | None = None, start: bool = True,
                 **settings) -> BrokerProcess:
        root = self.root / f"broker{len(self.brokers)}"
        root.mkdir(parents=True, exist_ok=True)
        b = BrokerProcess(BROKER_KIND, root, settings=settings, env=env)
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def close(self) -> None:
        for b in self.brokers:
            b.close()


@pytest.fixture
def broker_factory(tmp_path):
    """A factory for fresh brokers with extra settings (see BrokerProcess)."""
    f = BrokerFactory(tmp_path)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory):
    """Like broker_factory, but the brokers live for the whole module (for
    configured brokers shared by tests that leave no observable state)."""
    f = BrokerFactory(tmp_path_factory.mktemp("configured-brokers"))
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def broker_kind() -> str:
    return BROKER_KIND


# ----------------------------------------------------------------------- hooks

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "millwright_only: needs behaviour mosquitto does not provide "
                   "(e.g. durability after kill -9); skipped when E2E_BROKER=mosquitto")


def pytest_report_header(config):
    return f"e2e broker: {BROKER_KIND}"


def pytest_collection_modifyitems(config, items):
    if BROKER_KIND != "mosquitto" or os.environ.get("E2E_RUN_ALL") == "1":
        return  # E2E_RUN_ALL=1: run millwright_only tests on mosquitto too, to see them fail
    default = ("mosquitto persists only on clean shutdown/autosave, "
               "not every acknowledged message")
    for item in items:
        marker = item.get_closest_marker("millwright_only")
        if marker is not None:
            reason = marker.kwargs.get("reason", default)
            item.add_marker(pytest.mark.skip(reason=f"millwright_only: {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    seen = set()

    def attach(label, b):
        if b.log_path not in seen:
            seen.add(b.log_path)
            report.sections.append((f"{label} log tail ({b.log_path})", b.log_tail()))

    funcargs = getattr(item, "funcargs", {})
    for name, value in funcargs.items():
        if isinstance(value, BrokerProcess):
            attach(name, value)
    for name, value in funcargs.items():
        if isinstance(value, BrokerFactory):
            for i, b in enumerate(value.brokers):
                attach(f"{name}[{i}]", b)


@pytest.fixture
def clients():
    """Factory for helpers.MqttClient; every client made is closed at teardown.

        c = clients(broker, "client-id", version=V5, clean=False)
    """
    from helpers import MqttClient

    made = []

    def make(broker, client_id=None, **kw):
        c = MqttClient(broker, client_id, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
