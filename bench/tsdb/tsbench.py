#!/usr/bin/env python3
"""Helpers of bench/tsdb/run.sh (standard library only).

  tsbench.py facts                      machine facts as JSON
  tsbench.py query --system S --base URL --meta META --out FILE [...]
                                        the four queries, timed, with answers
  tsbench.py report --results DIR       the markdown table (stdout) and
                                        DIR/summary.json

Query timing: one warm-up run, then RUNS runs of each query, one at a time
on a keep-alive connection; a run is the wall time from sending the request
to having read the whole response body (parsing the answer is not timed).
"""

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.parse

SYSTEMS = ["millwright", "victoriametrics", "influxdb"]
NAMES = {"millwright": "Millwright", "victoriametrics": "VictoriaMetrics", "influxdb": "InfluxDB"}
TEN_MIN = 600_000


# --- machine facts -------------------------------------------------------------

def facts():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception as e:  # noqa: BLE001 - facts are best effort
            return f"unknown ({e})"

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "nproc_cmd": sh("nproc"),
        "cpu_model": cpu or sh("lscpu | grep 'Model name'"),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "loadavg_at_start": sh("cat /proc/loadavg"),
        "victoria_metrics_version": "VictoriaMetrics " + (sh("victoria-metrics -version 2>&1 | head -1")
                                                          or "(Debian package " + sh("dpkg-query -W -f='${Version}' victoria-metrics") + ")"),
        "influxdb_version": sh("influxd version 2>&1 | head -1"),
        "loadavg_note": "other processes on this machine (e.g. compilers) add noise; see loadavg_at_start",
        "rustc": sh("rustc --version"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# --- queries -------------------------------------------------------------------

class Client:
    def __init__(self, base, headers):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.headers = headers
        self.conn = None

    def get(self, path):
        """(seconds, status, body): the time covers the whole body."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                t0 = time.perf_counter()
                self.conn.request("GET", path, headers=self.headers)
                r = self.conn.getresponse()
                body = r.read()
                dt = time.perf_counter() - t0
                return dt, r.status, body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def q(params):
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def plan_queries(system, meta, last_n, below):
    """Per query: (name, description, path, parse(body) -> normalized answer)."""
    s, e = meta["start_ms"], meta["end_ms"]
    day_end = min(e, s + 86_400_000)
    w = meta["truth"]["stationary_window"]["start"]
    trucks = [f"truck_{i}" for i in range(last_n)]
    out = []
    if system == "millwright":
        def agg(params):
            return "/api/telemetry/query?" + q(params)

        def p_latest(b):
            ans = {}
            for it in json.loads(b)["latest"]:
                ans.setdefault(it["device"], {})[it["metric"].split(".")[-1]] = it["value"]
            return ans

        def p_buckets(b):
            d = json.loads(b)
            return [(sr["group"].get("device"), pt["ts"], pt["value"]) for sr in d["series"] for pt in sr["points"]]

        def p_fleet(b):
            d = json.loads(b)
            return {sr["group"]["label.fleet"]: max(pt["value"] for pt in sr["points"]) for sr in d["series"] if sr["points"]}

        def p_buckets_columnar(b):
            # format=columnar: t0 and one value per bucket (null: empty), or ts and values.
            d = json.loads(b)
            out = []
            for sr in d["series"]:
                dev = sr["group"].get("device")
                ts = sr.get("ts") or [sr["t0"] + i * d["bucket_ms"] for i in range(len(sr["values"]))]
                out.extend((dev, t, v) for t, v in zip(ts, sr["values"]) if v is not None)
            return out

        def p_below(b):
            return sorted(dev for dev, _, v in p_buckets(b) if v < below)

        out = [
            ("last_location", f"latest latitude, longitude of {last_n} trucks",
             "/api/telemetry/latest?" + q({"device": ",".join(trucks), "metric": "readings.latitude,readings.longitude"}),
             p_latest),
            ("avg_velocity_10m_day", "avg velocity per truck in 10-minute buckets over one day",
             agg({"device": "*", "metric": "readings.velocity", "agg": "avg", "bucket": "10m", "group_by": "device", "start": s, "end": day_end}),
             p_buckets),
            ("avg_velocity_10m_day_columnar", "avg velocity per truck in 10-minute buckets over one day, Millwright answering in columnar JSON (peers: their usual answer)",
             agg({"device": "*", "metric": "readings.velocity", "agg": "avg", "bucket": "10m", "group_by": "device", "start": s, "end": day_end, "format": "columnar"}),
             p_buckets_columnar),
            ("max_fuel_per_fleet", "max fuel_consumption per fleet over the whole range",
             # One bucket over everything: 36500 days from the epoch (a multiple of
             # the rollup widths, so the engine may answer from its rollups).
             agg({"device": "*", "metric": "readings.fuel_consumption", "agg": "max", "bucket": "36500d", "group_by": "label:fleet", "start": s, "end": e}),
             p_fleet),
            ("stationary_trucks", f"trucks whose avg velocity < {below} in one 10-minute window (filter applied by the client)",
             agg({"device": "*", "metric": "readings.velocity", "agg": "avg", "bucket": "10m", "group_by": "device", "start": w, "end": w + TEN_MIN}),
             p_below),
        ]
    elif system == "victoriametrics":
        def inst(query, t_ms):
            return "/api/v1/query?" + q({"query": query, "time": f"{t_ms / 1000:.3f}"})

        def p_latest(b):
            ans = {}
            for r in json.loads(b)["data"]["result"]:
                m = r["metric"]
                ans.setdefault(m["device"], {})[m["__name__"].split("_", 1)[1]] = float(r["value"][1])
            return ans

        def p_range(b):
            # Value at t covers [t-10m, t): report it at the bucket start.
            return [(r["metric"].get("device"), int(round(ts * 1000)) - TEN_MIN, float(v))
                    for r in json.loads(b)["data"]["result"] for ts, v in r["values"]]

        def p_fleet(b):
            return {r["metric"]["fleet"]: float(r["value"][1]) for r in json.loads(b)["data"]["result"]}

        def p_below(b):
            return sorted(r["metric"]["device"] for r in json.loads(b)["data"]["result"])

        dev_re = "|".join(trucks)
        whole = (e - s) // 1000 + 1
        out = [
            ("last_location", f"latest latitude, longitude of {last_n} trucks",
             # keep_metric_names: VictoriaMetrics drops __name__ after a rollup function otherwise.
             inst(f'last_over_time({{__name__=~"readings_(latitude|longitude)",device=~"{dev_re}"}}[1h]) keep_metric_names', e),
             p_latest),
            ("avg_velocity_10m_day", "avg velocity per truck in 10-minute buckets over one day",
             "/api/v1/query_range?" + q({"query": "avg_over_time(readings_velocity[10m] offset 1ms)",
                                         "start": f"{(s + TEN_MIN) / 1000:.3f}", "end": f"{day_end / 1000:.3f}", "step": "600"}),
             p_range),
            ("max_fuel_per_fleet", "max fuel_consumption per fleet over the whole range",
             inst(f"max by (fleet) (max_over_time(readings_fuel_consumption[{whole}s]))", e),
             p_fleet),
            ("stationary_trucks", f"trucks whose avg velocity < {below} in one 10-minute window",
             inst(f"avg_over_time(readings_velocity[10m] offset 1ms) < {below}", w + TEN_MIN),
             p_below),
        ]
    elif system == "influxdb":
        def iq(sql):
            return "/query?" + q({"db": "bench", "epoch": "ms", "q": sql})

        def rows(b):
            d = json.loads(b)
            res = d["results"][0]
            if "error" in res:
                raise RuntimeError(res["error"])
            for sr in res.get("series", []):
                cols = sr["columns"]
                for v in sr["values"]:
                    yield sr.get("tags", {}), dict(zip(cols, v))

        def p_latest(b):
            return {t["device"]: {"latitude": r["last"], "longitude": r["last_1"]} for t, r in rows(b)}

        def p_buckets(b):
            return [(t["device"], r["time"], r["mean"]) for t, r in rows(b) if r["mean"] is not None]

        def p_fleet(b):
            return {t["fleet"]: r["max"] for t, r in rows(b)}

        def p_below(b):
            return sorted({t["device"] for t, r in rows(b)})

        dev_re = "|".join(trucks)
        out = [
            ("last_location", f"latest latitude, longitude of {last_n} trucks",
             iq(f'SELECT last("latitude"), last("longitude") FROM "readings" WHERE "device" =~ /^({dev_re})$/ GROUP BY "device"'),
             p_latest),
            ("avg_velocity_10m_day", "avg velocity per truck in 10-minute buckets over one day",
             iq(f'SELECT mean("velocity") FROM "readings" WHERE time >= {s}ms AND time < {day_end}ms GROUP BY time(10m), "device"'),
             p_buckets),
            ("max_fuel_per_fleet", "max fuel_consumption per fleet over the whole range",
             iq(f'SELECT max("fuel_consumption") FROM "readings" WHERE time >= {s}ms AND time < {e}ms GROUP BY "fleet"'),
             p_fleet),
            ("stationary_trucks", f"trucks whose avg velocity < {below} in one 10-minute window",
             iq(f'SELECT "mv" FROM (SELECT mean("velocity") AS "mv" FROM "readings" WHERE time >= {w}ms AND time < {w + TEN_MIN}ms GROUP BY time(10m), "device") WHERE "mv" < {below} GROUP BY "device"'),
             p_below),
        ]
    return out


def summarize(name, ans):
    """A small, comparable digest of an answer."""
    name = name.removesuffix("_columnar")
    if name == "last_location":
        return {d: [round(v.get("latitude", float("nan")), 5), round(v.get("longitude", float("nan")), 5)] for d, v in sorted(ans.items())}
    if name == "avg_velocity_10m_day":
        return {"buckets": len(ans), "sum_of_averages": round(sum(v for _, _, v in ans), 3),
                "devices": len({d for d, _, _ in ans})}
    if name == "max_fuel_per_fleet":
        return {k: ans[k] for k in sorted(ans)}
    if name == "stationary_trucks":
        return {"count": len(ans), "trucks": ans[:20]}
    return ans


def truth_digest(name, meta):
    t = meta["truth"]
    name = name.removesuffix("_columnar")
    if name == "last_location":
        return None  # filled per device below
    if name == "avg_velocity_10m_day":
        a = t["avg_velocity_10m_day"]
        return {"buckets": a["buckets"], "sum_of_averages": round(a["sum_of_averages"], 3)}
    if name == "max_fuel_per_fleet":
        return t["max_fuel_consumption_per_fleet"]
    if name == "stationary_trucks":
        return {"count": len(t["stationary_window"]["trucks"]), "trucks": t["stationary_window"]["trucks"][:20]}
    return None


def check(name, digest, meta, last_n, below):
    """(ok, note) against the generator's ground truth."""
    t = meta["truth"]
    name = name.removesuffix("_columnar")
    if name == "last_location":
        bad = []
        for i in range(last_n):
            d = f"truck_{i}"
            want = t["last_location"].get(d, {})
            got = digest.get(d)
            if got is None or abs(got[0] - want.get("latitude", 0)) > 1e-6 or abs(got[1] - want.get("longitude", 0)) > 1e-6:
                bad.append(d)
        return (not bad, "all match" if not bad else f"differ: {bad[:5]}")
    if name == "avg_velocity_10m_day":
        want = t["avg_velocity_10m_day"]
        ok = digest["buckets"] == want["buckets"] and abs(digest["sum_of_averages"] - want["sum_of_averages"]) <= 1e-6 * max(1.0, want["sum_of_averages"])
        return ok, f"{digest['buckets']} buckets (truth {want['buckets']}), sum of averages {digest['sum_of_averages']} (truth {round(want['sum_of_averages'], 3)})"
    if name == "max_fuel_per_fleet":
        want = t["max_fuel_consumption_per_fleet"]
        ok = set(digest) == set(want) and all(abs(digest[k] - want[k]) < 1e-9 for k in want)
        return ok, json.dumps(digest)
    if name == "stationary_trucks":
        sw = t["stationary_window"]
        if abs(sw.get("below", below) - below) > 1e-12:
            return True, f"{digest['count']} trucks (truth computed for < {sw.get('below')}, not checked)"
        ok = digest["count"] == len(sw["trucks"]) and digest["trucks"] == sw["trucks"][:20]
        return ok, f"{digest['count']} trucks (truth {len(sw['trucks'])})"
    return True, ""


def run_queries(a):
    with open(a.meta) as f:
        meta = json.load(f)
    headers = {}
    if a.token:
        headers["Authorization"] = f"Bearer {a.token}"
    c = Client(a.base, headers)
    results = []
    def work():
        # Millwright's engine counters (rollups read, chunk series decoded):
        # tells how each query was answered.
        if a.system != "millwright":
            return None
        try:
            _, st, body = c.get("/api/telemetry/stats")
            return json.loads(body).get("query_work") if st == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            return None

    for name, desc, path, parse in plan_queries(a.system, meta, a.last_n, a.below):
        entry = {"query": name, "description": desc, "request": f"GET {a.base}{path}"}
        w0 = work()
        try:
            dt, st, body = c.get(path)  # warm-up
            if st != 200:
                raise RuntimeError(f"HTTP {st}: {body[:300]!r}")
            times = []
            for _ in range(a.runs):
                dt, st, body = c.get(path)
                if st != 200:
                    raise RuntimeError(f"HTTP {st}: {body[:300]!r}")
                times.append(dt * 1000)
            w1 = work()
            if w0 and w1:
                entry["engine_work_per_run"] = {k: (w1[k] - w0.get(k, 0)) / (a.runs + 1) for k in w1}
            ans = parse(body)
            digest = summarize(name, ans)
            ok, note = check(name, digest, meta, a.last_n, a.below)
            entry.update({
                "runs": a.runs, "median_ms": statistics.median(times), "min_ms": min(times),
                "max_ms": max(times), "times_ms": times, "response_bytes": len(body),
                "answer": digest, "matches_truth": ok, "check": note,
            })
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            entry["error"] = str(e)
        results.append(entry)
        status = f"{entry['median_ms']:.1f} ms" if "median_ms" in entry else f"ERROR {entry['error'][:200]}"
        print(f"query {a.system} {name}: {status}", file=sys.stderr)
    doc = {"system": a.system, "base": a.base, "runs": a.runs, "last_n": a.last_n, "below": a.below, "queries": results}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)


# --- report --------------------------------------------------------------------

def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_num(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if v >= 100_000:
        s = f"{v:,.0f}"
    elif v >= 100:
        s = f"{v:.0f}"
    elif v >= 10:
        s = f"{v:.1f}"
    elif v >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3f}"
    return s + unit


def ratio(mw, peers, higher_is_better):
    vals = [p for p in peers if isinstance(p, (int, float)) and p]
    if not isinstance(mw, (int, float)) or not mw or not vals:
        return "n/a"
    best = max(vals) if higher_is_better else min(vals)
    r = mw / best if higher_is_better else best / mw
    return f"{r:.2f}x"


def report(a):
    d = a.results
    facts_ = load(d, "facts.json") or {}
    meta = load(d, "meta.json") or {}
    values = meta.get("values")
    rows = []
    cmds = {}
    try:
        with open(os.path.join(d, "commands.txt")) as f:
            for line in f:
                if "\t" in line:
                    k, v = line.rstrip("\n").split("\t", 1)
                    cmds.setdefault(k, []).append(v)
    except OSError:
        pass

    def cmd(key):
        return f"[{key}](#commands)" if key in cmds else ""

    # 1. ingest through line protocol.
    ing = {s: load(d, f"ingest-{s}.json") for s in SYSTEMS}

    def rate(x):
        if not x or x.get("failed_requests") or x.get("deadline_hit"):
            return None if not x else (f"{x['values_per_s']:,.0f} (incomplete: {x.get('failed_values', 0)} values failed)"
                                       if x.get("failed_values") or x.get("deadline_hit") else None)
        return x["values_per_s"]

    r = {s: rate(ing[s]) for s in SYSTEMS}
    rows.append(("Line protocol ingest over HTTP, values/s (Millwright and InfluxDB ack after WAL fsync; VictoriaMetrics acks before data is durable)",
                 [fmt_num(r[s]) for s in SYSTEMS], ratio(r["millwright"], [r["victoriametrics"], r["influxdb"]], True),
                 cmd("ingest")))
    # 2. MQTT.
    mq = load(d, "mqtt-millwright.json")
    mrate = None
    if mq:
        if mq.get("refused", mq.get("failed_messages")):
            first = mq.get("first_refused") or {}
            mrate = f"invalid: {mq.get('refused', mq.get('failed_messages')):,} messages refused (first reason {first.get('reason', '?')})"
        elif mq.get("errors") or mq.get("deadline_hit") or mq.get("unacknowledged"):
            mrate = f"{mq['values_per_s']:,.0f} (incomplete)"
        else:
            mrate = mq["values_per_s"]
    rows.append(("MQTT JSON ingest, QoS 1, PUBACK after WAL fsync, values/s",
                 [fmt_num(mrate), "n/a", "n/a"], "n/a", cmd("mqtt")))
    # 3. disk.
    disk = {s: load(d, f"disk-{s}.json") for s in SYSTEMS}
    bpv = {s: (disk[s] or {}).get("bytes_per_value") for s in SYSTEMS}
    rows.append(("Bytes per value on disk (allocated; Millwright: tsdb/chunks after the shutdown flush; VictoriaMetrics: data dir after force_flush and merges; InfluxDB: data dir after full compaction)",
                 [fmt_num(bpv[s]) for s in SYSTEMS], ratio(bpv["millwright"], [bpv["victoriametrics"], bpv["influxdb"]], False),
                 cmd("disk")))
    mwd = disk["millwright"] or {}
    peer_bpv = [bpv["victoriametrics"], bpv["influxdb"]]
    if mwd.get("raw_bytes_per_value") is not None:
        rows.append(("Bytes per value, Millwright raw chunks only (without rollups)",
                     [fmt_num(mwd["raw_bytes_per_value"]), "", ""], ratio(mwd["raw_bytes_per_value"], peer_bpv, False), cmd("disk")))
    if mwd.get("compacted_bytes_per_value") is not None:
        rows.append(("Bytes per value, Millwright after an offline compact() (the server does not compact by itself yet): whole chunks dir / raw only",
                     [fmt_num(mwd["compacted_bytes_per_value"]) + " / " + fmt_num(mwd["compacted_raw_bytes_per_value"]), "", ""],
                     ratio(mwd["compacted_bytes_per_value"], peer_bpv, False) + " / " + ratio(mwd["compacted_raw_bytes_per_value"], peer_bpv, False),
                     cmd("compact")))
    # 4. queries.
    qs = {s: load(d, f"queries-{s}.json") for s in SYSTEMS}
    names = []
    for s in SYSTEMS:
        for e in (qs[s] or {}).get("queries", []):
            if e["query"] not in names:
                names.append(e["query"])
    for n in names:
        cells, desc, med = [], "", {}
        for s in SYSTEMS:
            e = next((e for e in (qs[s] or {}).get("queries", []) if e["query"] == n), None)
            if e is None and n.endswith("_columnar"):
                # Peers have one answer format: compare with their plain query.
                base = n.removesuffix("_columnar")
                e = next((e for e in (qs[s] or {}).get("queries", []) if e["query"] == base), None)
            if e is None:
                cells.append("n/a")
                continue
            desc = desc or e["description"]
            if "error" in e:
                cells.append("error")
                continue
            med[s] = e["median_ms"]
            cells.append(fmt_num(e["median_ms"], " ms") + ("" if e.get("matches_truth") else " (answer differs)"))
        rows.append((f"Query: {desc}, median of {a.runs} runs", cells,
                     ratio(med.get("millwright"), [med.get("victoriametrics"), med.get("influxdb")], False), cmd("query")))

    out = []
    out.append(f"## Telemetry benchmark ({meta.get('trucks')} trucks x {meta.get('hours')} h every {meta.get('interval_ms', 0) // 1000} s, seed {meta.get('seed')}: {values:,} values, {meta.get('lines', 0):,} lines, {meta.get('lp_bytes', 0) / 1e6:.0f} MB of line protocol)" if values else "## Telemetry benchmark")
    out.append("")
    out.append(f"Machine: {facts_.get('nproc')} cores ({facts_.get('cpu_model')}), {facts_.get('memory_gib')} GiB, kernel {facts_.get('kernel')}, {facts_.get('os')}; load average at start {facts_.get('loadavg_at_start')}.")
    out.append(f"Peers: {facts_.get('victoria_metrics_version')}; {facts_.get('influxdb_version')}.")
    out.append("")
    out.append("| figure | Millwright | VictoriaMetrics | InfluxDB | ratio | command |")
    out.append("|---|---|---|---|---|---|")
    for fig, cells, rt, c in rows:
        out.append(f"| {fig} | " + " | ".join(cells) + f" | {rt} | {c} |")
    out.append("")
    out.append("Ratio: Millwright against the best peer, >1 means Millwright is better (rate: Millwright/best; bytes and latency: best/Millwright).")
    notes = load(d, "notes.json") or []
    for n in notes:
        out.append(f"- {n}")
    # Query details and checks.
    out.append("")
    out.append("Query answers checked against the generator's ground truth (meta.json):")
    for s in SYSTEMS:
        for e in (qs[s] or {}).get("queries", []):
            st = "error: " + e["error"][:200] if "error" in e else ("ok" if e.get("matches_truth") else "DIFFERS") + f": {e.get('check', '')}"
            if "response_bytes" in e:
                st += f"; response {e['response_bytes']:,} bytes"
            if e.get("engine_work_per_run"):
                st += "; engine work per run " + ", ".join(f"{k} {v:g}" for k, v in e["engine_work_per_run"].items())
            out.append(f"- {NAMES[s]} {e['query']}: {st}")
    for s in SYSTEMS:
        x = ing[s]
        if x:
            out.append(f"- {NAMES[s]} ingest: {x['ok_values']:,} values in {x['seconds']:.1f} s, {x['clients']} clients x {x['batch_lines']} lines per request, request p50 {x.get('request_ms_p50', 0):.0f} ms p99 {x.get('request_ms_p99', 0):.0f} ms; failed requests {x['failed_requests']}" + (f"; errors {x['errors'][:2]}" if x.get("errors") else ""))
    if mq:
        stored = mq.get("stored_points_after_restart")
        out.append(f"- Millwright MQTT: {mq['ok_messages']:,} messages ({mq['ok_values']:,} values) acknowledged with success, {mq.get('refused', 'n/a')} refused, in {mq['seconds']:.1f} s over {mq['connections']} connections (one per device, authenticated with its own token), window {mq.get('window_per_connection', mq['window'])} per connection ({mq['window']} in total; broker Receive Maximum {mq.get('receive_maximum')}); PUBACK reasons {mq.get('puback_reasons')}; points found in the store after the shutdown: {f'{stored:,}' if isinstance(stored, int) else 'n/a'}" + (f"; errors {mq['errors'][:2]}" if mq.get("errors") else ""))
    for s in SYSTEMS:
        x = disk[s]
        if x:
            out.append(f"- {NAMES[s]} disk: " + ", ".join(f"{k} {v}" for k, v in x.items() if k not in ("system",)))
    for s in ("null-http", "null-mqtt"):
        x = load(d, f"{s}.json")
        if x:
            out.append(f"- Loader ceiling against a null endpoint ({s}): {x['values_per_s']:,.0f} values/s")
    out.append("")
    out.append("### Commands")
    out.append("")
    out.append("Configuration files (millwright*.toml, influxdb.conf) are in the results directory; $TOKEN is the random API token of the run.")
    out.append("")
    titles = {"generate": "data set", "loader": "loader ceilings (null endpoints)", "server": "servers",
              "ingest": "ingest", "register": "MQTT devices registered (their tokens are the MQTT credentials)",
              "mqtt": "MQTT ingest", "disk": "disk", "compact": "Millwright offline compaction",
              "query": "queries (each request is listed in queries-*.json)"}
    for k in ["generate", "server", "loader", "ingest", "register", "mqtt", "disk", "compact", "query"]:
        if k in cmds:
            out.append(f"- {k} ({titles[k]}):")
            for c in cmds[k]:
                out.append(f"  - `{c}`")
    qreq = []
    for s in SYSTEMS:
        for e in (qs[s] or {}).get("queries", []):
            qreq.append(f"  - {NAMES[s]} {e['query']}: `{e['request']}`")
    if qreq:
        out.append("- query requests:")
        out.extend(qreq)
    text = "\n".join(out)
    print(text)
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump({"rows": [{"figure": fig, "millwright": c[0], "victoriametrics": c[1], "influxdb": c[2], "ratio": rt, "command": cm}
                            for fig, c, rt, cm in rows], "facts": facts_}, f, indent=1)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("facts")
    qa = sub.add_parser("query")
    qa.add_argument("--system", required=True, choices=SYSTEMS)
    qa.add_argument("--base", required=True)
    qa.add_argument("--meta", required=True)
    qa.add_argument("--out", required=True)
    qa.add_argument("--token", default="")
    qa.add_argument("--runs", type=int, default=10)
    qa.add_argument("--last-n", type=int, default=10)
    qa.add_argument("--below", type=float, default=1.0)
    ra = sub.add_parser("report")
    ra.add_argument("--results", required=True)
    ra.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    if a.cmd == "facts":
        print(json.dumps(facts(), indent=1))
    elif a.cmd == "query":
        run_queries(a)
    else:
        report(a)


if __name__ == "__main__":
    main()
