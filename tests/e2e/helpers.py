"""Client-side helpers: mosquitto_pub/mosquitto_sub wrappers and a paho wrapper.

Rules followed here: every wait is bounded, synchronisation uses events /
conditions (never sleeps); the only deliberate waits are short bounded ones
used to assert that something does NOT happen.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

V311 = "mqttv311"
V5 = "mqttv5"
VERSIONS = [V311, V5]
PAHO_PROTOCOL = {V311: mqtt.MQTTv311, V5: mqtt.MQTTv5}

TIMEOUT = 5.0          # default bound for anything we expect to happen
ABSENCE_WAIT = 0.5     # bounded wait used to assert that something does NOT arrive

_counter = itertools.count()


def unique(prefix: str = "e2e") -> str:
    """Unique topic / client-id fragment, safe for topics and client ids."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


def wait_until(pred, timeout: float = TIMEOUT, interval: float = 0.02, what: str = "condition"):
    """Poll `pred` until truthy or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# =========================================================================
# mosquitto_pub / mosquitto_sub
# =========================================================================

_STDBUF = shutil.which("stdbuf")  # mosquitto_sub block-buffers stdout into a pipe


def mosquitto_pub(broker, topic: str, message: str | None = None, *, qos: int = 0,
                  version: str = V311, retain: bool = False, null: bool = False,
                  extra: list[str] = (), timeout: float = 10.0, check: bool = True,
                  port: int | None = None) -> subprocess.CompletedProcess:
    cmd = ["mosquitto_pub", "-h", broker.host, "-p", str(port or broker.port), "-V", version,
           "-t", topic, "-q", str(qos), "-i", unique("pub")]
    if null:
        cmd.append("-n")
    else:
        cmd += ["-m", message if message is not None else ""]
    if retain:
        cmd.append("-r")
    cmd += list(extra)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert res.returncode == 0, f"{cmd} failed rc={res.returncode}: {res.stderr}{res.stdout}"
    return res


@dataclass
class CliMessage:
    topic: str
    qos: int
    retain: bool
    payload: str


class MosquittoSub:
    """A running mosquitto_sub whose output is parsed live.

    Debug output (-d) lets us wait for SUBACK deterministically; messages are
    printed in a marked format so they can't be confused with debug lines.
    """

    FORMAT = "MSG|%t|%q|%r|%p"

    def __init__(self, broker, topics: list[str] | str, *, version: str = V311, qos: int = 0,
                 count: int | None = None, wait_s: int = 10, client_id: str | None = None,
                 extra: list[str] = (), port: int | None = None):
        if isinstance(topics, str):
            topics = [topics]
        self.client_id = client_id or unique("sub")
        cmd = ["mosquitto_sub", "-h", broker.host, "-p", str(port or broker.port), "-V", version,
               "-q", str(qos), "-i", self.client_id, "-d", "-F", self.FORMAT, "-W", str(wait_s)]
        for t in topics:
            cmd += ["-t", t]
        if count is not None:
            cmd += ["-C", str(count)]
        cmd += list(extra)
        if _STDBUF:
            cmd = [_STDBUF, "-oL"] + cmd
        self.cmd = cmd
        self.messages: list[CliMessage] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._subscribed = False
        self._eof = False
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if line.startswith("MSG|"):
                    _, topic, qos, retain, payload = line.split("|", 4)
                    self.messages.append(CliMessage(topic, int(qos), retain == "1", payload))
                elif line.startswith("Subscribed (mid:"):
                    self._subscribed = True
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _wait(self, pred, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: pred() or self._eof, timeout):
                raise AssertionError(f"mosquitto_sub: timed out after {timeout}s waiting for "
                                     f"{what}; output so far:\n" + "\n".join(self.lines))
            if not pred():
                raise AssertionError(f"mosquitto_sub exited before {what}; output:\n"
                                     + "\n".join(self.lines))

    def wait_subscribed(self, timeout: float = TIMEOUT) -> "MosquittoSub":
        self._wait(lambda: self._subscribed, timeout, "SUBACK")
        return self

    def wait_for(self, n: int, timeout: float = TIMEOUT) -> list[CliMessage]:
        self._wait(lambda: len(self.messages) >= n, timeout, f"{n} message(s)")
        with self._cond:
            return list(self.messages)

    def wait_for_payload(self, payload: str, timeout: float = TIMEOUT) -> list[CliMessage]:
        self._wait(lambda: any(m.payload == payload for m in self.messages), timeout,
                   f"payload {payload!r}")
        with self._cond:
            return list(self.messages)

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return rc

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=TIMEOUT)
        finally:
            self._reader.join(timeout=TIMEOUT)

    def __enter__(self) -> "MosquittoSub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# =========================================================================
# paho-mqtt
# =========================================================================

class Collector:
    """Thread-safe list of received messages with bounded waits."""

    def __init__(self):
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()

    def add(self, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self.messages)

    def snapshot(self) -> list:
        with self._cond:
            return list(self.messages)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.snapshot()]

    def wait_until(self, pred, timeout: float = TIMEOUT, what: str = "messages") -> list:
        with self._cond:
            if not self._cond.wait_for(lambda: pred(self.messages), timeout):
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; got "
                    f"{[(m.topic, m.payload) for m in self.messages]}")
            return list(self.messages)

    def wait_for(self, n: int, timeout: float = TIMEOUT) -> list:
        return self.wait_until(lambda ms: len(ms) >= n, timeout, f"{n} message(s)")

    def wait_for_payload(self, payload: bytes, timeout: float = TIMEOUT) -> list:
        return self.wait_until(lambda ms: any(m.payload == payload for m in ms), timeout,
                               f"payload {payload!r}")

    def assert_stays(self, n: int, wait: float = ABSENCE_WAIT) -> list:
        """Bounded absence check: nothing beyond `n` messages arrives within `wait`."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) > n, wait)
            assert len(self.messages) == n, (
                f"expected exactly {n} message(s), got "
                f"{[(m.topic, m.payload) for m in self.messages]}")
            return list(self.messages)


@dataclass
class ConnResult:
    reason_code: object
    session_present: bool
    properties: object

    @property
    def rc(self) -> int:
        return int(getattr(self.reason_code, "value", self.reason_code))


@dataclass
class DisconnectInfo:
    reason_code: object
    properties: object

    @property
    def rc(self) -> int:
        return int(getattr(self.reason_code, "value", self.reason_code))


def props(packet_type, **values) -> Properties:
    """Properties(PacketTypes.X) with attributes set, e.g. props(PacketTypes.PUBLISH, TopicAlias=1)."""
    p = Properties(packet_type)
    for k, v in values.items():
        setattr(p, k, v)
    return p


class MqttClient:
    """One paho connection with paho's network thread (loop_start).

    The thread runs with reconnect_on_failure=False: an automatic
    reconnect would fight the broker in takeover tests and hide disconnects.
    One MqttClient == one network connection; create a new one to reconnect.
    """

    def __init__(self, broker, client_id: str | None = None, *, version: str = V5,
                 clean: bool = True, transport: str = "tcp", port: int | None = None,
                 manual_ack: bool = False, collector: Collector | None = None,
                 username: str | None = None, password: str | None = None):
        self.broker = broker
        self.version = version
        self.client_id = client_id if client_id is not None else unique("paho")
        self.port = port or (broker.ws_port if transport == "websockets" else broker.port)
        kwargs = dict(callback_api_version=CallbackAPIVersion.VERSION2,
                      client_id=self.client_id, protocol=PAHO_PROTOCOL[version],
                      transport=transport, reconnect_on_failure=False)
        if version == V311:
            kwargs["clean_session"] = clean
        self.clean = clean
        self.client = mqtt.Client(**kwargs)
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt")
        if manual_ack:
            self.client.manual_ack_set(True)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages = collector if collector is not None else Collector()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._suback: dict[int, list] = {}
        self._puback: dict[int, object] = {}
        self._events: dict[int, threading.Event] = {}
        self.conn: ConnResult | None = None
        self.disconnect_info: DisconnectInfo | None = None
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = lambda _c, _u, msg: self.messages.add(msg)
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish

    # ------------------------------------------------------------ callbacks
    def _on_connect(self, _c, _u, flags, reason_code, properties):
        self.conn = ConnResult(reason_code, bool(flags.session_present), properties)
        self._connected.set()

    def _on_disconnect(self, _c, _u, _flags, reason_code, properties):
        self.disconnect_info = DisconnectInfo(reason_code, properties)
        self._disconnected.set()

    def _event(self, mid: int) -> threading.Event:
        with self._lock:
            return self._events.setdefault(mid, threading.Event())

    def _on_subscribe(self, _c, _u, mid, reason_codes, _props):
        self._suback[mid] = reason_codes
        self._event(mid).set()

    def _on_publish(self, _c, _u, mid, reason_code, _props):
        self._puback[mid] = reason_code
        self._event(mid).set()

    # ------------------------------------------------------------- actions
    def will_set(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                 properties: Properties | None = None) -> "MqttClient":
        self.client.will_set(topic, payload, qos, retain, properties)
        return self

    def connect(self, *, clean_start: bool | None = None, properties: Properties | None = None,
                keepalive: int = 60, timeout: float = TIMEOUT,
                expect_success: bool = True) -> ConnResult:
        kw = {}
        if self.version == V5:
            kw["clean_start"] = self.clean if clean_start is None else clean_start
            if properties is not None:
                kw["properties"] = properties
        self.client.connect(self.broker.host, self.port, keepalive=keepalive, **kw)
        self.client.loop_start()
        self._started = True
        if not self._connected.wait(timeout) and not self._disconnected.is_set():
            raise AssertionError(f"{self.client_id}: no CONNACK within {timeout}s")
        if self.conn is None:
            raise AssertionError(f"{self.client_id}: connection closed before CONNACK "
                                 f"({self.disconnect_info})")
        if expect_success:
            assert self.conn.rc == 0, f"{self.client_id}: CONNACK refused: {self.conn.reason_code}"
        return self.conn

    def subscribe(self, topic: str, qos: int = 1, *, options: SubscribeOptions | None = None,
                  properties: Properties | None = None, timeout: float = TIMEOUT,
                  expect_granted: bool = True) -> list:
        if options is not None:
            res, mid = self.client.subscribe(topic, options=options, properties=properties)
        else:
            res, mid = self.client.subscribe(topic, qos, properties=properties)
        assert res == MQTTErrorCode.MQTT_ERR_SUCCESS, f"subscribe failed locally: {res}"
        assert self._event(mid).wait(timeout), f"no SUBACK for {topic!r} within {timeout}s"
        codes = self._suback[mid]
        if expect_granted:
            for code in codes:
                v = int(getattr(code, "value", code))
                assert v < 0x80, f"subscription to {topic!r} refused: {code}"
        return codes

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                properties: Properties | None = None, timeout: float = TIMEOUT,
                wait: bool = True):
        """Publish; with wait=True block until sent (QoS 0) or acknowledged (QoS 1/2)."""
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        if wait:
            assert self._event(info.mid).wait(timeout), (
                f"publish to {topic!r} (qos {qos}) not acknowledged within {timeout}s")
            rc = self._puback.get(info.mid)
            if rc is not None:
                v = int(getattr(rc, "value", rc))
                assert v < 0x80, f"broker rejected publish to {topic!r}: {rc}"
        return info

    def publish_rc(self, topic: str, payload: bytes | str = b"", qos: int = 1,
                   retain: bool = False, properties: Properties | None = None,
                   timeout: float = TIMEOUT) -> int:
        """QoS 1/2 publish that returns the broker's reason code instead of
        asserting success (v3.1.1 acknowledgements carry none: always 0)."""
        assert qos in (1, 2), "only QoS 1/2 publishes are acknowledged"
        info = self.client.publish(topic, payload, qos, retain, properties)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS, f"publish failed locally: {info.rc}"
        assert self._event(info.mid).wait(timeout), (
            f"publish to {topic!r} (qos {qos}) not acknowledged within {timeout}s")
        rc = self._puback.get(info.mid)
        return int(getattr(rc, "value", rc or 0))

    def ack(self, mid: int, qos: int = 1) -> None:
        self.client.ack(mid, qos)

    def disconnect(self, timeout: float = TIMEOUT, **kw) -> None:
        """Clean DISCONNECT, then wait for the connection to end."""
        if not self._started or self._disconnected.is_set():
            self._shutdown()
            return
        self.client.disconnect(**kw)
        self._disconnected.wait(timeout)
        self._shutdown()
        assert self._disconnected.is_set(), f"{self.client_id}: disconnect did not complete"

    def wait_disconnected(self, timeout: float = TIMEOUT) -> DisconnectInfo:
        assert self._disconnected.wait(timeout), (
            f"{self.client_id}: still connected after {timeout}s")
        return self.disconnect_info

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set() and not self._disconnected.is_set()

    def drop(self, timeout: float = TIMEOUT) -> None:
        """Vanish from the network without a DISCONNECT, like a crashed device."""
        sock = self.client.socket()
        if sock is not None:
            raw = getattr(sock, "_socket", sock)  # websocket wrapper keeps the real socket
            try:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # paho notices EOF, reports connection lost and its thread ends
        self._disconnected.wait(timeout)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._started:
            self.client.loop_stop()  # returns at once if called from the loop thread
            self._started = False

    def close(self) -> None:
        """Teardown: clean disconnect if still connected, then stop the thread."""
        try:
            if self.is_connected:
                self.client.disconnect()
                if not self._disconnected.wait(2.0):
                    self.drop(timeout=2.0)  # so loop_stop cannot hang on unacked messages
        except Exception:
            pass
        finally:
            self._shutdown()
            sock = self.client.socket()
            if sock is not None:
                try:
                    sock.close()
                except Exception:
                    pass


def assert_broker_healthy(broker, version: str = V311, timeout: float = TIMEOUT) -> None:
    """A normal client can still connect, subscribe, publish and receive (QoS 1)."""
    topic = unique("health")
    sub = MqttClient(broker, version=version)
    pub = MqttClient(broker, version=version)
    try:
        sub.connect(timeout=timeout)
        sub.subscribe(topic, 1, timeout=timeout)
        pub.connect(timeout=timeout)
        pub.publish(topic, b"ok", qos=1, timeout=timeout)
        msgs = sub.messages.wait_for(1, timeout)
        assert msgs[0].payload == b"ok"
    finally:
        sub.close()
        pub.close()


__all__ = [
    "V311", "V5", "VERSIONS", "TIMEOUT", "ABSENCE_WAIT", "unique", "wait_until",
    "mosquitto_pub", "MosquittoSub", "CliMessage", "Collector", "MqttClient", "ConnResult",
    "DisconnectInfo", "props", "PacketTypes", "Properties", "SubscribeOptions",
    "assert_broker_healthy",
]
