"""InfluxDB's own client libraries against Millwright: the 1.x `influxdb`
package (ping, `write_points` with Telegraf's `host` tag, and InfluxQL
queries through `/query`) and the 2.x `influxdb-client` (its synchronous
write API). What they wrote comes back from Millwright's query API under
the device named by the tag (`device` first, then `host`;
docs/observability.md and docs/configuration.md).
"""

from __future__ import annotations

import time

import pytest

import mwplatform
from mwplatform import _log_on_failure, platforms  # noqa: F401 (fixtures)
from helpers import unique

pytestmark = pytest.mark.millwright_only(reason="Millwright's InfluxDB-compatible API")

T0 = (int(time.time()) - 3600) * 1000


def points(p, device: str, metric: str) -> list[tuple[int, float]]:
    r = p.ok("GET", f"/api/telemetry/query?device={device}&metric={metric}"
                    f"&start={T0 - 1}&end={T0 + 100_000}")
    return sorted((pt["ts"], pt["value"]) for s in r.body["series"] for pt in s["points"])


def test_the_influxdb_1x_client_pings_and_writes_with_telegrafs_host_tag(platforms):
    import influxdb  # the test command installs it
    p = platforms()
    gw = unique("gw")
    client = influxdb.InfluxDBClient(host=p.host, port=p.http_port, username="millwright",
                                     password=mwplatform.ADMIN_TOKEN, database="plant")
    version = client.ping()
    assert version == "1.8.10", version
    assert client.write_points([
        {"measurement": "cpu", "tags": {"host": gw, "cpu": "cpu0"},
         "time": (T0 + i * 1000) * 1_000_000, "fields": {"usage": float(i)}}
        for i in range(5)
    ])
    assert points(p, gw, "cpu.usage") == [(T0 + i * 1000, float(i)) for i in range(5)]
    # `device` wins over `host`; `host` stays a label.
    m = unique("m")
    assert client.write_points([{"measurement": "cpu", "tags": {"host": gw, "device": m},
                                 "time": T0 * 1_000_000, "fields": {"usage": 9.5}}])
    r = p.ok("GET", f"/api/telemetry/query?device={m}&metric=cpu.usage&start={T0 - 1}&end={T0 + 1}")
    assert r.body["series"][0]["labels"] == {"host": gw}, r.body


def test_the_influxdb_2x_client_writes(platforms):
    import influxdb_client  # the test command installs it
    from influxdb_client.client.write_api import SYNCHRONOUS

    p = platforms()
    d = unique("v2")
    with influxdb_client.InfluxDBClient(url=p.url, token=mwplatform.ADMIN_TOKEN, org="plant") as c:
        c.write_api(write_options=SYNCHRONOUS).write(
            bucket="telemetry", record=[
                influxdb_client.Point("press").tag("device", d).field("temp", 20.5 + i)
                .time(T0 + i * 1000, write_precision="ms")
                for i in range(3)
            ])
    assert points(p, d, "press.temp") == [(T0 + i * 1000, 20.5 + i) for i in range(3)]


def test_the_influxdb_1x_client_queries_with_influxql(platforms):
    import influxdb  # the test command installs it
    p = platforms()
    d = unique("iq")
    t0 = T0 // 60_000 * 60_000  # on a minute: two whole 1-minute buckets
    client = influxdb.InfluxDBClient(host=p.host, port=p.http_port, username="millwright",
                                     password=mwplatform.ADMIN_TOKEN, database="plant")
    assert client.write_points([
        {"measurement": "press", "tags": {"device": d, "line": "a" if i % 2 else "b"},
         "time": (t0 + i * 10_000) * 1_000_000, "fields": {"temp": float(i)}}
        for i in range(12)
    ])
    start, end = t0, t0 + 120_000
    rs = client.query(f"SELECT mean(temp), max(temp), count(temp) FROM press WHERE device = '{d}' "
                      f"AND time >= {start}ms AND time < {end}ms GROUP BY time(1m)", epoch="ms")
    rows = [(r["time"], r["mean"], r["max"], r["count"]) for r in rs.get_points()]
    assert rows == [(t0, 2.5, 5, 6), (t0 + 60_000, 8.5, 11, 6)], rows
    by_line = client.query(f"SELECT last(temp) FROM press WHERE device = '{d}' "
                           f"AND time >= {start}ms AND time < {end}ms GROUP BY line", epoch="ms")
    last = {k[1]["line"]: list(v)[0]["last"] for k, v in by_line.items()}
    assert last == {"a": 11, "b": 10}, last
    measurements = {m["name"] for m in client.get_list_measurements()}
    assert "press" in measurements, measurements
    fields = list(client.query("SHOW FIELD KEYS FROM press").get_points())
    assert {"fieldKey": "temp", "fieldType": "float"} in fields, fields
    with pytest.raises(influxdb.exceptions.InfluxDBClientError):
        client.query("SELECT median(temp) FROM press WHERE time > now() - 1h")
