"""Observability: `GET /metrics` in the Prometheus text format, checked by
Prometheus' own `promtool check metrics` and scraped by a real Prometheus
server started by the test; `/health/live` and `/health/ready`.

Real tools only: Debian's `prometheus` package (the test command installs
it) brings both `promtool` and the server.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import mwplatform
from conftest import free_ports
from mwplatform import _log_on_failure, platforms  # noqa: F401 (fixtures)
from helpers import TIMEOUT, V5, MqttClient, unique, wait_until

pytestmark = pytest.mark.millwright_only(reason="Millwright's metrics and health endpoints")


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def device_traffic(p, n: int) -> str:
    """A registered device publishes `n` QoS 1 telemetry messages; returns its id."""
    d = unique("obs")
    token = p.add_device(d)
    c = MqttClient(p, d, version=V5, username=d, password=token)
    c.connect()
    for i in range(n):
        assert c.publish_rc(f"devices/{d}/telemetry", json.dumps({"v": i}), qos=1) == 0
    c.close()
    return d


def test_metrics_pass_promtool_and_count_what_happened(platforms):
    if not shutil.which("promtool"):
        pytest.fail("promtool missing: the test command installs Debian's prometheus package")
    p = platforms()
    before = samples(p.ok("GET", "/metrics").text)
    device_traffic(p, 25)
    r = p.ok("GET", "/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    check = subprocess.run(["promtool", "check", "metrics"], input=r.text, text=True,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    after = samples(r.text)
    got = lambda k: after.get(k, 0.0) - before.get(k, 0.0)  # noqa: E731
    assert got("millwright_mqtt_messages_received_total") >= 25, r.text
    assert got("millwright_telemetry_points_total") >= 25
    assert got("millwright_mqtt_connects_total") >= 1
    # The fleet records the device's disconnect as it hears of it.
    wait_until(lambda: samples(p.ok("GET", "/metrics").text)
               .get('millwright_devices{state="offline"}', 0) >= 1,
               what="the device counted offline")
    assert 'millwright_queue_dropped_total{queue="rules"}' in after
    assert after["millwright_persist_commit_seconds_count"] >= 1
    assert after["millwright_telemetry_series"] >= 1
    # Every family has help and a type (promtool would say otherwise too).
    families = set(re.findall(r"^# TYPE (\S+) ", r.text, re.M))
    for f in ("millwright_mqtt_connections", "millwright_alarms", "millwright_http_requests_total",
              "millwright_http_request_seconds"):
        assert f in families, f


def test_metrics_need_a_token(platforms):
    p = platforms()
    assert p.api("GET", "/metrics", token=None).status == 401


def test_http_requests_are_counted_by_route_and_status(platforms):
    p = platforms()
    for _ in range(3):
        p.ok("GET", "/api/devices")
    assert p.api("GET", "/api/devices/nobody-here").status == 404
    after = samples(p.ok("GET", "/metrics").text)
    ok = after.get('millwright_http_requests_total{method="GET",route="/api/devices",status="200"}')
    assert ok is not None and ok >= 3, sorted(k for k in after if "http_requests" in k)
    # A route template, not the raw path: ids never become label values.
    assert 'millwright_http_requests_total{method="GET",route="/api/devices/{id}",status="404"}' \
        in after, sorted(k for k in after if "http_requests" in k)
    assert not any("nobody-here" in k for k in after)


def test_health_live_and_ready(platforms):
    p = platforms()
    live = p.api("GET", "/health/live", token=None)
    assert live.status == 200 and live.body["status"] == "ok", live
    ready = p.api("GET", "/health/ready", token=None)
    assert ready.status == 200 and ready.body["status"] == "ready", ready
    assert ready.body["checks"] == {"mqtt": "ok"}, ready


def test_a_real_prometheus_scrapes_every_figure(platforms, tmp_path):
    if not shutil.which("prometheus"):
        pytest.fail("prometheus missing: the test command installs Debian's prometheus package")
    p = platforms()
    device_traffic(p, 10)
    (prom_port,) = free_ports(1)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: millwright\n"
        "    metrics_path: /metrics\n"
        "    authorization:\n"
        f"      credentials: {mwplatform.ADMIN_TOKEN}\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{p.http_port}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(q: str):
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    return json.loads(r.read())["data"]["result"]
            except OSError:
                return None

        def scraped():
            up = query('up{job="millwright"}')
            return bool(up) and up[0]["value"][1] == "1"

        wait_until(scraped, timeout=60, what="Prometheus scraping /metrics successfully")
        received = query("millwright_mqtt_messages_received_total")
        assert received and float(received[0]["value"][1]) >= 10, received
        # Every family the platform exposes reached Prometheus.
        ours = set(re.findall(r"^# TYPE (\S+) ", p.ok("GET", "/metrics").text, re.M))
        names = query('count by (__name__) ({job="millwright"})')
        seen = {s["metric"]["__name__"] for s in names or []}
        missing = {n for n in ours
                   if not ({n, n + "_bucket", n + "_count"} & seen)}
        assert not missing, sorted(missing)
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
        log.close()


def test_json_logs_are_one_object_per_line(platforms):
    p = platforms(sections={"log": {"format": "json"}})
    device_traffic(p, 1)
    lines = [ln for ln in p.log.read_text().splitlines()
             if ln.strip() and not ln.startswith("=====")]
    assert lines, "no log lines"
    events = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "fields"} <= e.keys() for e in events), events[:3]
    assert any("listening" in json.dumps(e).lower() for e in events), events[:10]


def test_an_unknown_log_format_is_refused_at_start(platforms):
    with pytest.raises(AssertionError, match="format"):
        platforms(sections={"log": {"format": "xml"}})
