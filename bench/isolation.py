#!/usr/bin/env python3
"""One hostile client must not slow the others.

Starts Millwright (the binary given, default target/release/millwright) on
free loopback ports with a temp data directory, registers two devices, and
measures two victims' latency with and without a hostile device:

- `telemetry`: device `victim` publishes small telemetry at QoS 1 (200 per
  second); latency = PUBLISH to PUBACK (which includes the WAL fsync);
- `pubsub`: a plain client publishes QoS 0 to a topic it subscribes to
  (200 per second); latency = PUBLISH to its return.

The hostile device `hostile` sends, back to back at QoS 1, telemetry
payloads of 1 MiB with 100,000 distinct keys. Two rounds: with the default
caps (`telemetry.max_metrics_per_message` = 1,000: the payload is refused
after its first thousand values) and with the caps lifted
(`max_metrics_per_message` = 200,000, `max_series_per_device` = 200,000:
every payload is decoded in full, outside the broker lock, then refused by
the series cap or stored).

Prints p50/p99/max per victim and round, as a markdown table. Bounded: each
phase runs `--seconds` (default 10). Loopback only.

    python3 bench/isolation.py [--bin target/release/millwright] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ADMIN = "bench-isolation-admin-token-0123"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Server:
    def __init__(self, binary: str, extra: str):
        self.dir = tempfile.mkdtemp(prefix="mw-isolation-")
        self.mqtt_port, self.http_port = free_ports(2)
        cfg = os.path.join(self.dir, "m.toml")
        with open(cfg, "w") as f:
            f.write(f'[mqtt]\nbind = "127.0.0.1"\nport = {self.mqtt_port}\nws_port = 0\n'
                    f'tls_port = 0\nwss_port = 0\nmax_packet_size = 2097152\n'
                    f'[http]\nbind = "127.0.0.1"\nport = {self.http_port}\ntls_port = 0\n'
                    f'[tls]\nenabled = false\n[auth]\nbootstrap_admin_token = "{ADMIN}"\n'
                    f'[telemetry]\n{extra}\n')
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([binary, "serve", "--data-dir",
                                      os.path.join(self.dir, "data"), "--config", cfg],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health", timeout=1)
                socket.create_connection(("127.0.0.1", self.mqtt_port), 1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("server did not start")

    def device(self, dev: str) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/devices",
            data=json.dumps({"id": dev, "token": True}).encode(), method="POST",
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())["token"]

    def stop(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def client(port: int, cid: str, user: str | None = None, token: str | None = None):
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid,
                    protocol=mqtt.MQTTv5)
    if user:
        c.username_pw_set(user, token)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not connected.wait(10):
        raise SystemExit(f"{cid}: no CONNACK")
    return c


def percentiles(xs: list[float]) -> tuple[float, float, float, int]:
    if not xs:
        return (float("nan"),) * 3 + (0,)
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return pick(0.50), pick(0.99), xs[-1], len(xs)


def hostile_payload() -> bytes:
    # 100,000 distinct keys, about 1 MiB.
    keys = {f"{i:05d}": i % 10 for i in range(100_000)}
    body = json.dumps(keys, separators=(",", ":")).encode()
    return body


def victims(server: Server, token: str, seconds: float, stop_hostile: threading.Event):
    tele = client(server.mqtt_port, "victim", "victim", token)
    plain_sub = client(server.mqtt_port, "victim-echo", "victim", token)
    lat_t: list[float] = []
    lat_p: list[float] = []
    sent_at: dict[int, float] = {}
    lock = threading.Lock()

    def on_publish(_c, _u, mid, rc, _p):
        with lock:
            t = sent_at.pop(mid, None)
        if t is not None and not rc.is_failure:
            lat_t.append((time.perf_counter() - t) * 1000)

    tele.on_publish = on_publish
    echo_topic = "devices/victim/echo"
    got = threading.Event()
    def on_message(_c, _u, msg):
        t0 = float(msg.payload.decode())
        lat_p.append((time.perf_counter() - t0) * 1000)
    plain_sub.on_message = on_message
    plain_sub.subscribe(echo_topic, 0)
    time.sleep(0.3)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        with lock:
            info = tele.publish("devices/victim/telemetry", json.dumps({"v": i}), qos=1)
            sent_at[info.mid] = time.perf_counter()
        plain_sub.publish(echo_topic, str(time.perf_counter()), qos=0)
        i += 1
        time.sleep(0.005)
    time.sleep(0.5)
    stop_hostile.set()
    tele.loop_stop(); tele.disconnect()
    plain_sub.loop_stop(); plain_sub.disconnect()
    return lat_t, lat_p


def hostile(server: Server, token: str, stop: threading.Event, counts: dict):
    c = client(server.mqtt_port, "hostile", "hostile", token)
    payload = hostile_payload()
    codes: dict[int, int] = {}
    done = threading.Semaphore(0)
    def on_publish(_c, _u, mid, rc, _p):
        codes[int(getattr(rc, "value", 0))] = codes.get(int(getattr(rc, "value", 0)), 0) + 1
        done.release()
    c.on_publish = on_publish
    while not stop.is_set():
        c.publish("devices/hostile/telemetry", payload, qos=1)
        done.acquire(timeout=30)
        counts["sent"] = counts.get("sent", 0) + 1
    counts["codes"] = codes
    c.loop_stop(); c.disconnect()


def run(binary: str, seconds: float, extra: str, with_hostile: bool):
    s = Server(binary, extra)
    try:
        tv, th = s.device("victim"), s.device("hostile")
        stop = threading.Event()
        counts: dict = {}
        h = None
        if with_hostile:
            h = threading.Thread(target=hostile, args=(s, th, stop, counts))
            h.start()
            time.sleep(1)
        lat_t, lat_p = victims(s, tv, seconds, stop)
        if h:
            h.join(60)
        return lat_t, lat_p, counts
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/millwright")
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    rounds = [
        ("no hostile client", "", False),
        ("hostile, default caps (1,000 values/message)", "", True),
        ("hostile, caps lifted (payload decoded in full)",
         "max_metrics_per_message = 200000\nmax_series_per_device = 200000", True),
    ]
    print(f"machine: {os.cpu_count()} cores; load {os.getloadavg()}; payload "
          f"{len(hostile_payload())} bytes, 100,000 keys")
    print("| round | victim | p50 ms | p99 ms | max ms | samples | hostile messages (codes) |")
    print("|---|---|---|---|---|---|---|")
    for name, extra, with_h in rounds:
        lat_t, lat_p, counts = run(a.bin, a.seconds, extra, with_h)
        for victim, lat in (("telemetry QoS 1 PUBACK", lat_t), ("pub/sub QoS 0 round trip", lat_p)):
            p50, p99, mx, n = percentiles(lat)
            print(f"| {name} | {victim} | {p50:.2f} | {p99:.2f} | {mx:.2f} | {n} | "
                  f"{counts.get('sent', '-')} {counts.get('codes', '')} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
