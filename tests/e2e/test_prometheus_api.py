"""Grafana's Prometheus data source against Millwright: the Prometheus HTTP
API (`/api/v1/query`, `query_range`, `series`, `labels`, `label/.../values`,
`status/buildinfo`) over the telemetry store, checked against a real
VictoriaMetrics (whose MetricsQL accepts PromQL) holding the same data:
the same line protocol goes to both, the same queries go to both HTTP APIs,
and the answers must be equal (within float rounding).

Intended differences, left out of the comparison and documented in
docs/observability.md: VictoriaMetrics keeps the metric name on
`*_over_time` results (Prometheus drops it, as Millwright does), and does
not extrapolate `rate`/`increase` (Prometheus does, as Millwright does).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import mwplatform
from conftest import free_ports
from mwplatform import _log_on_failure, platforms  # noqa: F401 (fixtures)
from helpers import wait_until

pytestmark = pytest.mark.millwright_only(reason="Millwright's Prometheus API")

NOW_S = (int(time.time()) // 3600 - 2) * 3600  # two full hours back: stored, not recent
T0_MS = NOW_S * 1000
DEVICES = ["truck-1", "truck-2", "truck-3", "truck-4"]


def line_protocol() -> str:
    """An hour of readings, one every 10 s per truck, two fleets."""
    lines = []
    for i in range(360):
        ts = T0_MS + i * 10_000
        for n, d in enumerate(DEVICES):
            fleet = "north" if n % 2 == 0 else "south"
            v = 40 + 10 * math.sin(i / 20 + n) + n
            load = (i * (n + 1)) % 17
            lines.append(f"readings,device={d},fleet={fleet} velocity={v:.3f},load={load}i {ts * 1_000_000}")
    return "\n".join(lines) + "\n"


def http(url: str, *, data: bytes | None = None, token: str | None = None,
         form: dict | None = None) -> tuple[int, dict | str]:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if form is not None:
        data = urllib.parse.urlencode(form, doseq=True).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    text = body.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def normalise(data: dict, drop_name: bool) -> list:
    """A result as comparable data: sorted by labels, values as floats."""
    out = []
    for r in data["result"]:
        metric = {k: v for k, v in r["metric"].items() if not (drop_name and k == "__name__")}
        if "value" in r:
            pts = [r["value"]]
        else:
            pts = r["values"]
        out.append((sorted(metric.items()), [(float(t), float(v)) for t, v in pts]))
    return sorted(out)


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for (la, pa), (lb, pb) in zip(a, b):
        if la != lb or len(pa) != len(pb):
            return False
        for (ta, va), (tb, vb) in zip(pa, pb):
            if ta != tb or not math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-9):
                return False
    return True


@pytest.fixture
def both(platforms, tmp_path):
    if not shutil.which("victoria-metrics"):
        pytest.fail("victoria-metrics missing: the test command installs Debian's victoria-metrics")
    p = platforms()
    (vm_port,) = free_ports(1)
    log = open(tmp_path / "vm.log", "wb")
    vm = subprocess.Popen(
        ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}", f"-storageDataPath={tmp_path / 'vm'}",
         "-retentionPeriod=100y", "-search.disableCache"],
        stdout=log, stderr=subprocess.STDOUT)
    vm_url = f"http://127.0.0.1:{vm_port}"
    try:
        wait_until(lambda: http(f"{vm_url}/health")[0] == 200 if _up(vm_url) else False,
                   timeout=30, what="VictoriaMetrics up")
        lp = line_protocol().encode()
        st, body = http(f"{p.url}/write?precision=ns", data=lp, token=mwplatform.ADMIN_TOKEN)
        assert st == 204, body
        st, body = http(f"{vm_url}/write?precision=ns", data=lp)
        assert st == 204, body
        http(f"{vm_url}/internal/force_flush")
        wait_until(lambda: _count(vm_url) == len(DEVICES) * 2, timeout=30,
                   what="VictoriaMetrics has every series")
        yield p, vm_url
    finally:
        vm.terminate()
        try:
            vm.wait(10)
        except subprocess.TimeoutExpired:
            vm.kill()
        log.close()


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1):
            return True
    except OSError:
        return False


# VictoriaMetrics' metadata routes default to the current UTC day: the
# data's hours are given explicitly (they may lie on the day before).
SPAN = {"start": str(NOW_S - 60), "end": str(NOW_S + 7200)}


def _count(vm_url: str) -> int:
    st, body = http(f"{vm_url}/api/v1/series?"
                    + urllib.parse.urlencode({"match[]": '{__name__=~"readings_.*"}', **SPAN}))
    return len(body["data"]) if st == 200 else -1


INSTANT = [
    ("readings_velocity", False),
    ('readings_velocity{device="truck-2"}', False),
    ('readings_velocity{device=~"truck-[12]"}', False),
    ('readings_velocity{device!~"truck-1", fleet!="south"}', False),
    ("readings_load", False),
    ("avg_over_time(readings_velocity[10m])", True),
    ("min_over_time(readings_velocity[10m])", True),
    ("max_over_time(readings_velocity[30m])", True),
    ("sum_over_time(readings_load[10m])", True),
    ("count_over_time(readings_velocity[15m])", True),
    ("last_over_time(readings_velocity[10m])", True),
    ("sum by (fleet) (readings_velocity)", False),
    ("avg by (fleet) (readings_velocity)", False),
    ("max(readings_velocity)", False),
    ("min without (device) (readings_velocity)", False),
    ("count(readings_velocity)", False),
    ("readings_velocity * 2", True),
    ("readings_velocity / 3.6 + 1", True),
    ("sum by (fleet) (avg_over_time(readings_velocity[10m]))", False),
]


def test_instant_queries_answer_as_victoriametrics_does(both):
    p, vm = both
    t = NOW_S + 1800
    differ = []
    for q, drop_name in INSTANT:
        form = {"query": q, "time": str(t)}
        st, ours = http(f"{p.url}/api/v1/query", form=form, token=mwplatform.ADMIN_TOKEN)  # POST, as Grafana
        assert st == 200 and ours["status"] == "success", (q, ours)
        st, theirs = http(f"{vm}/api/v1/query?" + urllib.parse.urlencode(form))
        assert st == 200, (q, theirs)
        assert ours["data"]["resultType"] == theirs["data"]["resultType"], q
        a, b = normalise(ours["data"], drop_name), normalise(theirs["data"], drop_name)
        if not a or not same(a, b):
            differ.append((q, a[:2], b[:2]))
    assert not differ, differ


def test_range_queries_answer_as_victoriametrics_does(both):
    p, vm = both
    differ = []
    for q, drop_name in [("readings_velocity", False),
                         ("avg_over_time(readings_velocity[5m])", True),
                         ("sum by (fleet) (readings_load)", False)]:
        form = {"query": q, "start": str(NOW_S + 600), "end": str(NOW_S + 3000), "step": "60"}
        st, ours = http(f"{p.url}/api/v1/query_range?" + urllib.parse.urlencode(form),
                        token=mwplatform.ADMIN_TOKEN)  # GET
        assert st == 200 and ours["status"] == "success", (q, ours)
        st, theirs = http(f"{vm}/api/v1/query_range?" + urllib.parse.urlencode(form))
        assert st == 200, (q, theirs)
        a, b = normalise(ours["data"], drop_name), normalise(theirs["data"], drop_name)
        if not a or not same(a, b):
            differ.append((q, a[:1], b[:1]))
    assert not differ, differ


def test_metadata_answers_as_victoriametrics_does(both):
    p, vm = both
    tok = mwplatform.ADMIN_TOKEN
    sel = {"match[]": 'readings_velocity{fleet="north"}'}
    st, ours = http(f"{p.url}/api/v1/series?" + urllib.parse.urlencode(sel), token=tok)
    _, theirs = http(f"{vm}/api/v1/series?" + urllib.parse.urlencode({**sel, **SPAN}))
    assert st == 200
    assert sorted(map(json.dumps, ours["data"])) == sorted(map(json.dumps, theirs["data"]))
    st, ours = http(f"{p.url}/api/v1/label/device/values", token=tok)
    assert st == 200 and ours["data"] == DEVICES, ours
    st, ours = http(f"{p.url}/api/v1/label/__name__/values", token=tok)
    assert {"readings_velocity", "readings_load"} <= set(ours["data"]), ours
    st, ours = http(f"{p.url}/api/v1/labels", token=tok)
    assert {"__name__", "device", "fleet"} <= set(ours["data"]), ours
    st, ours = http(f"{p.url}/api/v1/status/buildinfo", token=tok)
    assert st == 200 and ours["data"]["application"] == "millwright", ours


def test_unsupported_and_bad_queries_get_prometheus_error_shapes(platforms):
    p = platforms()
    tok = mwplatform.ADMIN_TOKEN
    st, body = http(f"{p.url}/api/v1/query?" + urllib.parse.urlencode({"query": "histogram_quantile(0.9, x)"}),
                    token=tok)
    assert st == 400 and body["status"] == "error" and body["errorType"] == "bad_data", body
    assert "histogram_quantile" in body["error"], body
    st, body = http(f"{p.url}/api/v1/query?" + urllib.parse.urlencode({"query": "sum(("}), token=tok)
    assert st == 400 and body["errorType"] == "bad_data", body
    st, body = http(f"{p.url}/api/v1/query_range?" + urllib.parse.urlencode({"query": "x"}), token=tok)
    assert st == 400 and "start" in body["error"], body
    st, _ = http(f"{p.url}/api/v1/query?query=x")
    assert st == 401
