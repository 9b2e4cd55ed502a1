"""A full disk during MQTT ingest: the data directory is a small tmpfs;
publishers at QoS 1 write until it fills. Publishers must then get
failures (a v5 PUBACK reason code >= 0x80, or a closed v3.1.1 connection),
never a success for a message that was not stored; the server stays up;
once space returns (the tmpfs is enlarged) and the process restarts (after
SIGKILL), every message acknowledged before is still there.

Needs root (mount); skipped with the reason when mounting is not permitted.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import mwplatform

pytestmark = pytest.mark.millwright_only

SMALL = "16m"   # enough to start (stores, CA), small enough to fill in seconds
LARGE = "128m"
PAD = "x" * 4000  # a string value: each message puts ~4 KB into the WAL
FILL_TIMEOUT = 90.0


def _mount_tmpfs(path: Path, size: str) -> None:
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot run mount: {e}")
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip() or r.returncode}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


class Publisher:
    """A paho QoS 1 publisher that records, per message, whether the broker
    acknowledged it (success), refused it (v5 reason >= 0x80) or closed the
    connection before acknowledging it (v3.1.1's way to refuse)."""

    def __init__(self, plat, device: str, token: str, protocol: int):
        self.device = device
        self.protocol = protocol
        self.lock = threading.Lock()
        self.sent: dict[int, int] = {}       # mid -> ts, awaiting an answer
        self.acked: list[int] = []
        self.refused: list[int] = []
        self.disconnects = 0
        self.connected = threading.Event()
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=device,
                             protocol=protocol)
        self.c.username_pw_set(device, token)
        self.c.max_inflight_messages_set(20)
        self.c.on_publish = self._on_publish
        self.c.on_connect = lambda *_a: self.connected.set()
        self.c.on_disconnect = self._on_disconnect
        self.c.connect(plat.host, plat.mqtt_port)
        self.c.loop_start()
        assert self.connected.wait(10), f"{device} did not connect"

    def _on_publish(self, _c, _u, mid, rc, _p):
        with self.lock:
            ts = self.sent.pop(mid, None)
            if ts is None:
                return
            if rc.is_failure:
                self.refused.append(ts)
            else:
                self.acked.append(ts)

    def _on_disconnect(self, *_a):
        with self.lock:
            self.disconnects += 1
            # Whatever was waiting for an answer was not acknowledged.
            self.refused.extend(self.sent.values())
            self.sent.clear()
        self.connected.clear()

    def publish(self, ts: int) -> None:
        payload = json.dumps({"ts": ts, "values": {"v": ts % 100_000, "pad": PAD}})
        info = self.c.publish(f"devices/{self.device}/telemetry", payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return  # not connected: nothing sent
        with self.lock:
            self.sent[info.mid] = ts

    def failures(self) -> int:
        with self.lock:
            return len(self.refused) + self.disconnects

    def close(self) -> None:
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:  # noqa: BLE001 (closing a dead connection)
            pass


def _health(plat) -> int:
    try:
        with urllib.request.urlopen(f"{plat.url}/health", timeout=5) as r:
            return r.status
    except OSError:
        return 0


def _stored(plat, device: str, start: int, end: int) -> set[int]:
    r = plat.ok("GET", f"/api/telemetry/query?device={device}&metric=v&start={start}"
                       f"&end={end}&limit=100000")
    return {p["ts"] for s in r.body["series"] for p in s["points"]}


def test_full_disk_refuses_publishes_and_keeps_every_acknowledged_message(tmp_path):
    plat = mwplatform.Platform(tmp_path)
    _mount_tmpfs(plat.data, SMALL)
    pubs: list[Publisher] = []
    try:
        plat.start()
        v5_token = plat.add_device("disk-v5")
        v3_token = plat.add_device("disk-v3")
        pubs = [Publisher(plat, "disk-v5", v5_token, mqtt.MQTTv5),
                Publisher(plat, "disk-v3", v3_token, mqtt.MQTTv311)]
        base = int(time.time() * 1000) - 3_600_000
        seq = 0
        deadline = time.monotonic() + FILL_TIMEOUT
        # Publish until both publishers have seen failures for a while.
        while time.monotonic() < deadline:
            for p in pubs:
                if not p.connected.is_set():
                    continue  # paho's loop thread reconnects by itself
                with p.lock:
                    busy = len(p.sent) >= 20
                if not busy:
                    p.publish(base + seq)
                    seq += 1
            if all(p.failures() >= 5 for p in pubs):
                break
            time.sleep(0.0005)  # pacing the publish loop, not synchronisation
        for p in pubs:
            assert p.failures() > 0, (
                f"{p.device}: the disk never filled or failures were acknowledged "
                f"({len(p.acked)} acked, {seq} sent); df: "
                + subprocess.run(["df", "-h", str(plat.data)], capture_output=True,
                                 text=True).stdout)
            assert p.acked, f"{p.device}: nothing was acknowledged before the disk filled"
        assert plat.running and _health(plat) == 200, "the server must stay up on a full disk"
        for p in pubs:
            print(f"{p.device}: {len(p.acked)} acknowledged, {len(p.refused)} refused, "
                  f"{p.disconnects} disconnects")

        # v5 refusals are reason codes >= 0x80 on a live connection.
        v5 = pubs[0]
        assert v5.refused, "the v5 publisher got no failing PUBACK"

        # Space returns; the process restarts (SIGKILL: what was acknowledged
        # must already be durable).
        for p in pubs:
            p.close()
        r = subprocess.run(["mount", "-o", f"remount,size={LARGE}", str(plat.data)],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        plat.kill9()
        plat.proc = None
        plat.start()
        for p in pubs:
            with p.lock:
                acked = sorted(p.acked)
            got = _stored(plat, p.device, base - 1, base + seq + 1)
            missing = [ts for ts in acked if ts not in got]
            assert not missing, (f"{p.device}: {len(missing)} of {len(acked)} acknowledged "
                                 f"messages lost, e.g. {missing[:5]}")
        # And ingest works again.
        again = Publisher(plat, "disk-v5", v5_token, mqtt.MQTTv5)
        pubs = [again]
        again.publish(base + seq + 10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (again.acked or again.refused):
            time.sleep(0.01)  # bounded poll of the callback's result
        assert again.acked == [base + seq + 10], (again.acked, again.refused)
    finally:
        for p in pubs:
            p.close()
        plat.kill9()
        _umount(plat.data)
