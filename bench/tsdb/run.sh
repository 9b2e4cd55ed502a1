#!/usr/bin/env bash
# Millwright's telemetry store against VictoriaMetrics and InfluxDB 1.x on
# the same generated data: the figures behind BENCHMARKS.md (telemetry).
#
# What it measures, each system alone on the machine in turn:
#   1. durable ingest rate through HTTP line protocol (values/s): the same
#      file, in batches of BATCH_LINES lines, from CLIENTS keep-alive clients
#      (crates/bench/examples/lp_load.rs, bench::ingest::http);
#   2. Millwright ingest through MQTT JSON, QoS 1, as the devices
#      themselves: the data set's devices are registered first through the
#      HTTP API (POST /api/devices/import?tokens=true, the admin token), then
#      each publishes its own lines to devices/{id}/telemetry over its own
#      pipelined connection (client id = user name = its id, password = its
#      token; crates/bench/examples/mqtt_load.rs, bench::ingest::mqtt over
#      mqtt-client); a run with any refused message is reported as invalid;
#   3. bytes per value on disk after flush/compaction;
#   4. query latency, median of QUERY_RUNS runs, answers checked against the
#      generator's ground truth (bench/tsdb/tsbench.py).
# The data set comes from crates/tsdb/examples/tsbs_gen.rs (tsdb::gen, a
# TSBS-IoT-like fleet of trucks), time-stamped over the last full day(s) so
# that no retention setting gets in the way.
#
# Prints a markdown table (figure, Millwright, VictoriaMetrics, InfluxDB,
# ratio, command) and the machine facts on stdout; raw results are JSON
# files in RESULTS_DIR. Progress goes to stderr. Runs on a fresh machine:
# installs victoria-metrics and influxdb from Debian if missing, builds the
# examples (and the millwright binary) with -j2, starts every server itself
# on free loopback ports with temporary data directories and stops them at
# the end. Bounded: each load stops at LOAD_DEADLINE seconds, every wait is
# bounded, and a phase is skipped when the TOTAL_BUDGET would be exceeded.
#
# Environment (all optional):
#   RESULTS_DIR       where JSON results go (default: a new temp dir)
#   MILLWRIGHT_BIN    the binary (default target/release/millwright, or under
#                     CARGO_TARGET_DIR when set; built)
#   BUILD=0           do not run cargo (use the binaries as they are)
#   SYSTEMS           subset of "millwright victoriametrics influxdb"
#   SKIP_MQTT=1       skip the MQTT ingest figure
#   TRUCKS HOURS SEED data set (default 200 trucks x 24 h, seed 1: 17.1M values)
#   BATCH_LINES CLIENTS           HTTP load (default 5000 lines, 8 clients)
#   MQTT_WINDOW       MQTT load: unacknowledged messages in total, shared by
#                     the devices' connections (default 8000)
#   QUERY_RUNS LAST_N STATIONARY_BELOW  queries (default 10 runs, 10 trucks, 1)
#   LOAD_DEADLINE     seconds per load (default 120)
#   TOTAL_BUDGET      seconds for the whole run (default 840)
#   KEEP_WORK=1       keep the generated data and the servers' data dirs
#   VM_CACHE=1        run VictoriaMetrics with its result cache on (as users
#                     run it; repeated identical queries then hit the cache)

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/tsdb
RESULTS_DIR=${RESULTS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mw-tsdb-bench.XXXXXX")}
# Where cargo puts the release builds (CARGO_TARGET_DIR when set).
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$TARGET/release/millwright}
BUILD=${BUILD:-1}
SYSTEMS=${SYSTEMS:-"millwright victoriametrics influxdb"}
SKIP_MQTT=${SKIP_MQTT:-0}
TRUCKS=${TRUCKS:-200}
HOURS=${HOURS:-24}
SEED=${SEED:-1}
BATCH_LINES=${BATCH_LINES:-5000}
CLIENTS=${CLIENTS:-8}
MQTT_WINDOW=${MQTT_WINDOW:-8000}
DEVICE_COUNT=0
QUERY_RUNS=${QUERY_RUNS:-10}
LAST_N=${LAST_N:-10}
STATIONARY_BELOW=${STATIONARY_BELOW:-1}
LOAD_DEADLINE=${LOAD_DEADLINE:-120}
TOTAL_BUDGET=${TOTAL_BUDGET:-840}
KEEP_WORK=${KEEP_WORK:-0}
VM_CACHE=${VM_CACHE:-0}

EX=$TARGET/release/examples
START_SECONDS=$SECONDS
log() { printf 'tsdb-bench [%4ds]: %s\n' "$((SECONDS - START_SECONDS))" "$*" >&2; }

mkdir -p "$RESULTS_DIR"
RESULTS_DIR=$(cd "$RESULTS_DIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mw-tsdb-work.XXXXXX")
: >"$RESULTS_DIR/commands.txt"
NOTES=()
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    if [[ "$KEEP_WORK" == 1 ]]; then
        log "work files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

note() { NOTES+=("$*"); log "note: $*"; }
# rec KEY COMMAND...: records the exact command for the report, then runs it.
rec() {
    local key=$1 line
    shift
    line=$(printf '%q ' "$@")
    [[ -n "${TOKEN:-}" ]] && line=${line//$TOKEN/\$TOKEN}
    printf '%s\t%s\n' "$key" "${line% }" >>"$RESULTS_DIR/commands.txt"
    "$@"
}
budget_left() { echo $((TOTAL_BUDGET - (SECONDS - START_SECONDS))); }

# free_port: a loopback port below the ephemeral range (so that no client
# socket of this run can take it) that can be bound right now.
free_port() {
    local port
    port=$(python3 - <<'EOF'
import random, socket
lo, hi = 10000, 32000
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        hi = min(hi, int(f.read().split()[0]) - 1)
except (OSError, ValueError):
    pass
for _ in range(500):
    p = random.randint(lo, hi)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
EOF
    )
    if [[ -z "$port" ]]; then
        log "no free port found"
        return 1
    fi
    echo "$port"
}
# wait_url URL SECONDS PID: until URL answers 2xx (and PID is alive).
wait_url() {
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; then
            return 0
        fi
        kill -0 "$3" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
# start_server NAME LOG URL CMD...: runs CMD in the background (its pid in
# the caller's $pid, stopped at exit) and waits for URL to answer; if it
# does not, shows the end of LOG, notes NAME as skipped and fails.
start_server() {
    local name=$1 out=$2 url=$3
    shift 3
    "$@" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_url "$url" 60 "$pid"; then
        tail -20 "$out" >&2
        note "$name did not start: skipped"
        return 1
    fi
}
# stop_pid PID: SIGTERM, wait up to 90 s, then SIGKILL.
stop_pid() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 1 900); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
        log "pid $p did not stop in 90 s: killing it"
        kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
}
alloc_bytes() { du -s -B1 "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
apparent_bytes() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
now_s() { date +%s.%N; }
# json_merge FILE KEY=VALUE...: adds numeric or string fields to a JSON file.
json_merge() {
    python3 - "$@" <<'EOF'
import json, sys
path, pairs = sys.argv[1], sys.argv[2:]
try:
    doc = json.load(open(path))
except (OSError, ValueError):
    doc = {}
for p in pairs:
    k, v = p.split("=", 1)
    try:
        doc[k] = json.loads(v)
    except ValueError:
        doc[k] = v
json.dump(doc, open(path, "w"), indent=1)
EOF
}

# --- tools -------------------------------------------------------------------------
for tool in python3 curl du; do
    command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

want_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }
install_peers() {
    local pkgs=()
    want_system victoriametrics && ! command -v victoria-metrics >/dev/null && pkgs+=(victoria-metrics)
    want_system influxdb && ! command -v influxd >/dev/null && pkgs+=(influxdb)
    ((${#pkgs[@]})) || return 0
    if [[ $(id -u) != 0 ]]; then
        log "cannot install ${pkgs[*]} (not root)"
        return 0
    fi
    log "installing ${pkgs[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${pkgs[@]}" >"$WORK/apt.log" 2>&1; then
        apt-get update >>"$WORK/apt.log" 2>&1 || true
        apt-get install -y "${pkgs[@]}" >>"$WORK/apt.log" 2>&1 || { tail -5 "$WORK/apt.log" >&2; }
    fi
    # Where systemd runs, the packages start their own services on the
    # default ports: stop the ones this run installed, so they take no CPU.
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        local p
        for p in "${pkgs[@]}"; do
            systemctl disable --now "$p" >/dev/null 2>&1 || true
        done
    fi
}
install_peers
if want_system victoriametrics && ! command -v victoria-metrics >/dev/null; then
    note "victoria-metrics is not available: VictoriaMetrics skipped"
    SYSTEMS=${SYSTEMS//victoriametrics/}
fi
if want_system influxdb && ! command -v influxd >/dev/null; then
    note "influxd is not available: InfluxDB skipped"
    SYSTEMS=${SYSTEMS//influxdb/}
fi

# --- builds ------------------------------------------------------------------------
if [[ "$BUILD" == 1 ]]; then
    log "building the benchmark examples (release, -j2)"
    (cd "$ROOT" && cargo build --release -p tsdb --example tsbs_gen --example tsdb_compact -j2 >&2)
    (cd "$ROOT" && cargo build --release -p bench --example lp_load --example mqtt_load -j2 >&2)
    if want_system millwright || [[ "$SKIP_MQTT" != 1 ]]; then
        log "building millwright (release, -j2)"
        if ! (cd "$ROOT" && cargo build --release -p millwright -j2 >&2); then
            if [[ -x "$MILLWRIGHT_BIN" ]]; then
                note "cargo build -p millwright failed; the existing $MILLWRIGHT_BIN was used"
            fi
        fi
    fi
fi
for ex in tsbs_gen lp_load mqtt_load tsdb_compact; do
    [[ -x "$EX/$ex" ]] || { log "$EX/$ex is missing (run with BUILD=1)"; exit 1; }
done
HAVE_MW=0
if [[ -x "$MILLWRIGHT_BIN" ]]; then
    # A private copy: a concurrent rebuild cannot swap the binary mid-run.
    cp "$MILLWRIGHT_BIN" "$WORK/millwright"
    MW=$WORK/millwright
    HAVE_MW=1
else
    note "no millwright binary at $MILLWRIGHT_BIN: Millwright skipped"
fi

# --- machine facts and data ----------------------------------------------------------
python3 "$HERE/tsbench.py" facts >"$RESULTS_DIR/facts.json"
DAY_MS=86400000
DAYS=$(((HOURS + 23) / 24))
START_MS=$((($(date +%s) / 86400 - DAYS) * DAY_MS))
DATA=$WORK/data
log "generating $TRUCKS trucks x $HOURS h (seed $SEED) from $(date -u -d @$((START_MS / 1000)) +%FT%TZ)"
rec generate "$EX/tsbs_gen" --out "$DATA" --trucks "$TRUCKS" --hours "$HOURS" --seed "$SEED" \
    --start-ms "$START_MS" --stationary-below "$STATIONARY_BELOW" >&2
cp "$DATA/meta.json" "$RESULTS_DIR/meta.json"
VALUES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["values"])' "$DATA/meta.json")
log "$VALUES values"
# The devices of the MQTT file (its first column), registered before the
# MQTT phase; the null server takes any credentials.
if [[ "$SKIP_MQTT" != 1 ]]; then
    cut -f1 "$DATA/data.mqtt" | sort -u >"$WORK/devices.txt"
    DEVICE_COUNT=$(wc -l <"$WORK/devices.txt")
    awk '{print $1, "null-server-accepts-any-token"}' "$WORK/devices.txt" >"$WORK/null-credentials.txt"
    log "$DEVICE_COUNT devices in data.mqtt"
fi

# --- loader ceilings (null endpoints) -----------------------------------------------
null_ceiling() { # name server-cmd load-cmd-prefix...
    local name=$1 out=$WORK/$1.out pid addr
    "$EX/$2" --null-server 127.0.0.1:0 >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 1 50); do
        addr=$(awk '/^listening/ {print $2}' "$out")
        [[ -n "$addr" ]] && break
        sleep 0.1
    done
    if [[ -z "$addr" ]]; then
        log "$name null server did not start"
        kill "$pid" 2>/dev/null || true
        return 0
    fi
    if [[ $2 == lp_load ]]; then
        rec loader "$EX/lp_load" --url "http://$addr/write?db=bench&precision=ms" --file "$DATA/data.lp" \
            --batch-lines "$BATCH_LINES" --clients "$CLIENTS" --label "$name" >"$RESULTS_DIR/$name.json" || true
    else
        rec loader "$EX/mqtt_load" --addr "$addr" --file "$DATA/data.mqtt" \
            --credentials "$WORK/null-credentials.txt" --window "$MQTT_WINDOW" --label "$name" \
            >"$RESULTS_DIR/$name.json" || true
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
log "loader ceilings against null endpoints"
null_ceiling null-http lp_load
[[ "$SKIP_MQTT" == 1 ]] || null_ceiling null-mqtt mqtt_load

ingest() { # system url [header]
    local sys=$1 url=$2
    shift 2
    local hdr=()
    (($#)) && hdr=(--header "$1")
    log "$sys: loading $VALUES values over HTTP ($CLIENTS clients x $BATCH_LINES lines)"
    local load_before
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    rec ingest "$EX/lp_load" --url "$url" --file "$DATA/data.lp" --batch-lines "$BATCH_LINES" \
        --clients "$CLIENTS" --deadline-secs "$LOAD_DEADLINE" --label "$sys" "${hdr[@]}" \
        >"$RESULTS_DIR/ingest-$sys.json"
    json_merge "$RESULTS_DIR/ingest-$sys.json" "loadavg_before=$load_before" "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("{}: {:,.0f} values/s in {:.1f} s, {} failed requests {}".format(sys.argv[2], d["values_per_s"], d["seconds"], d["failed_requests"], d["errors"][:2]))' \
        "$RESULTS_DIR/ingest-$sys.json" "$sys" >&2
}
queries() { # system base [token]
    log "$1: queries ($QUERY_RUNS runs each)"
    rec query python3 "$HERE/tsbench.py" query --system "$1" --base "$2" --meta "$DATA/meta.json" \
        --out "$RESULTS_DIR/queries-$1.json" --runs "$QUERY_RUNS" --last-n "$LAST_N" \
        --below "$STATIONARY_BELOW" ${3:+--token "$3"}
}

# --- Millwright ----------------------------------------------------------------------
TOKEN=bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
# mw_start NAME DATA_DIR: sets MW_PID, MW_HTTP, MW_MQTT
mw_start() {
    local name=$1 dir=$2
    mkdir -p "$dir"
    MW_HTTP=$(free_port)
    MW_MQTT=$(free_port)
    while [[ "$MW_MQTT" == "$MW_HTTP" ]]; do MW_MQTT=$(free_port); done
    cat >"$WORK/$name.toml" <<EOF
[mqtt]
bind = "127.0.0.1"
port = $MW_MQTT
ws_port = 0
allow_anonymous = false

[http]
enabled = true
bind = "127.0.0.1"
port = $MW_HTTP

[tls]
enabled = false

[auth]
bootstrap_admin_token = "$TOKEN"

[log]
level = "warn"
EOF
    sed "s/$TOKEN/\$TOKEN/" "$WORK/$name.toml" >"$RESULTS_DIR/$name.toml"
    printf '%s\t%s\n' "server" "$MW serve --data-dir $dir --config $name.toml" >>"$RESULTS_DIR/commands.txt"
    RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 "$MW" serve --data-dir "$dir" --config "$WORK/$name.toml" >>"$WORK/$name.log" 2>&1 &
    MW_PID=$!
    PIDS+=("$MW_PID")
    if ! wait_url "http://127.0.0.1:$MW_HTTP/health" 60 "$MW_PID"; then
        log "millwright ($name) did not serve HTTP; its log:"
        grep -v '^ *at \|^ *[0-9]*: ' "$WORK/$name.log" | tail -20 >&2
        kill "$MW_PID" 2>/dev/null || true
        return 1
    fi
}

run_millwright() {
    local dir=$WORK/mw-lp t0 t1
    mw_start millwright "$dir" || { note "Millwright did not start: skipped"; return 0; }
    ingest millwright "http://127.0.0.1:$MW_HTTP/write?db=bench&precision=ms" "Authorization: Bearer $TOKEN"
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$MW_HTTP/api/telemetry/stats" \
        >"$RESULTS_DIR/millwright-stats-after-load.json" || true
    log "millwright: SIGTERM (the shutdown flushes the head to chunks)"
    t0=$(now_s)
    stop_pid "$MW_PID"
    t1=$(now_s)
    local chunks=$dir/tsdb/chunks
    printf '%s\t%s\n' disk "du -s -B1 $chunks  # Millwright, after the shutdown flush" >>"$RESULTS_DIR/commands.txt"
    local alloc app
    alloc=$(alloc_bytes "$chunks")
    app=$(apparent_bytes "$chunks")
    "$EX/tsdb_compact" --dir "$dir/tsdb" --stats-only >"$WORK/mw-stats.json"
    python3 - "$WORK/mw-stats.json" "$RESULTS_DIR/disk-millwright.json" "$VALUES" "$alloc" "$app" \
        "$(python3 -c "print($t1 - $t0)")" "$(apparent_bytes "$dir/tsdb/wal")" <<'EOF'
import json, sys
st = json.load(open(sys.argv[1]))["before"]
values, alloc, app = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
json.dump({
    "system": "millwright",
    "measured": "tsdb/chunks after the shutdown flush (raw and rollup chunks)",
    "values": values,
    "stored_points": st["raw_chunk_points"] + st["head_points"],
    "chunks_bytes_allocated": alloc,
    "chunks_bytes_apparent": app,
    "bytes_per_value": alloc / values,
    "raw_chunk_bytes": st["raw_chunk_bytes"],
    "raw_bytes_per_value": st["raw_chunk_bytes"] / values,
    "rollup_chunk_bytes": st["rollup_chunk_bytes"],
    "raw_chunks": st["raw_chunks"], "rollup_chunks": st["rollup_chunks"],
    "wal_bytes_after_stop": int(sys.argv[7]),
    "shutdown_seconds": round(float(sys.argv[6]), 2),
}, open(sys.argv[2], "w"), indent=1)
EOF
    log "millwright: restart and queries"
    t0=$(now_s)
    mw_start millwright "$dir" || { note "Millwright did not restart: no queries"; return 0; }
    t1=$(now_s)
    json_merge "$RESULTS_DIR/disk-millwright.json" "restart_to_healthy_seconds=$(python3 -c "print(round($t1 - $t0, 2))")"
    queries millwright "http://127.0.0.1:$MW_HTTP" "$TOKEN" || true
    stop_pid "$MW_PID"
    log "millwright: offline compact() of the stopped store"
    rec compact "$EX/tsdb_compact" --dir "$dir/tsdb" >"$WORK/mw-compact.json"
    python3 - "$WORK/mw-compact.json" "$RESULTS_DIR/disk-millwright.json" "$VALUES" "$(alloc_bytes "$chunks")" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
d = json.load(open(sys.argv[2]))
values = int(sys.argv[3])
d["compacted_chunks_bytes_allocated"] = int(sys.argv[4])
d["compacted_bytes_per_value"] = int(sys.argv[4]) / values
d["compacted_raw_bytes_per_value"] = c["after"]["raw_chunk_bytes"] / values
d["compacted_rollup_chunk_bytes"] = c["after"]["rollup_chunk_bytes"]
d["compact_seconds"] = round(c["compact_seconds"], 2)
json.dump(d, open(sys.argv[2], "w"), indent=1)
EOF
}

run_millwright_mqtt() {
    local dir=$WORK/mw-mqtt creds=$WORK/mqtt-credentials.json
    mw_start millwright-mqtt "$dir" || { note "Millwright (MQTT) did not start: skipped"; return 0; }
    # Register the data set's devices (all or nothing), a token each; the
    # answer {"created": N, "tokens": [{"id", "token"}, ...]} is the
    # driver's credentials file as is (kept out of RESULTS_DIR).
    log "millwright: registering $DEVICE_COUNT devices (POST /api/devices/import?tokens=true)"
    python3 -c 'import json,sys; print(json.dumps([{"id": l.strip()} for l in open(sys.argv[1]) if l.strip()]))' \
        "$WORK/devices.txt" >"$WORK/devices.json"
    if ! rec register curl -fsS --max-time 60 -X POST -H "Authorization: Bearer $TOKEN" \
        -H "Content-Type: application/json" --data-binary "@$WORK/devices.json" \
        -o "$creds" "http://127.0.0.1:$MW_HTTP/api/devices/import?tokens=true"; then
        note "Millwright (MQTT): registering the devices failed: skipped"
        stop_pid "$MW_PID"
        return 0
    fi
    log "millwright: publishing $VALUES values as MQTT JSON ($DEVICE_COUNT device connections, window $MQTT_WINDOW in total)"
    if ! rec mqtt "$EX/mqtt_load" --addr "127.0.0.1:$MW_MQTT" --file "$DATA/data.mqtt" \
        --credentials "$creds" --window "$MQTT_WINDOW" --deadline-secs "$LOAD_DEADLINE" \
        --label millwright-mqtt >"$RESULTS_DIR/mqtt-millwright.json" 2>"$WORK/mqtt_load.err"; then
        cat "$WORK/mqtt_load.err" >&2
        note "Millwright (MQTT): the run is not valid: $(tail -1 "$WORK/mqtt_load.err")"
    fi
    stop_pid "$MW_PID"
    "$EX/tsdb_compact" --dir "$dir/tsdb" --stats-only >"$WORK/mw-mqtt-stats.json" || true
    python3 - "$WORK/mw-mqtt-stats.json" "$RESULTS_DIR/mqtt-millwright.json" <<'EOF'
import json, sys
try:
    st = json.load(open(sys.argv[1]))["before"]
    d = json.load(open(sys.argv[2]))
    d["stored_points_after_restart"] = st["raw_chunk_points"] + st["head_points"]
    json.dump(d, open(sys.argv[2], "w"), indent=1)
    print(f"{d['values_per_s']:,.0f} values/s, {d['ok_messages']:,} messages acknowledged with success, {d['refused']:,} refused, {d['stored_points_after_restart']:,} points stored", file=sys.stderr)
except (OSError, ValueError, KeyError) as e:
    print(f"MQTT result incomplete: {e}", file=sys.stderr)
EOF
}

# --- VictoriaMetrics -------------------------------------------------------------------
run_victoriametrics() {
    local dir=$WORK/vm port pid
    mkdir -p "$dir"
    port=$(free_port)
    # -search.disableCache: repeated identical queries would otherwise be
    # answered from the rollup result cache.
    local cmd=(victoria-metrics -storageDataPath="$dir" -httpListenAddr="127.0.0.1:$port"
        -retentionPeriod=100y -loggerLevel=ERROR)
    if [[ "$VM_CACHE" != 1 ]]; then cmd+=(-search.disableCache); fi
    printf '%s\t%s\n' server "${cmd[*]}" >>"$RESULTS_DIR/commands.txt"
    start_server VictoriaMetrics "$WORK/vm.log" "http://127.0.0.1:$port/health" "${cmd[@]}" || return 0
    ingest victoriametrics "http://127.0.0.1:$port/write?db=bench&precision=ms"
    log "victoriametrics: force_flush, then wait until the data dir stops changing (merges)"
    rec disk curl -fsS "http://127.0.0.1:$port/internal/force_flush" || true
    local last=-1 same=0 cur deadline=$((SECONDS + 60))
    while ((SECONDS < deadline && same < 3)); do
        sleep 3
        cur=$(apparent_bytes "$dir")
        if [[ "$cur" == "$last" ]]; then same=$((same + 1)); else same=0; fi
        last=$cur
    done
    printf '%s\t%s\n' disk "du -s -B1 $dir  # VictoriaMetrics" >>"$RESULTS_DIR/commands.txt"
    local rows
    rows=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^vm_rows\{type="storage\/(small|big)"\}/ {s += $2} END {print s + 0}')
    local alloc
    alloc=$(alloc_bytes "$dir")
    python3 - "$RESULTS_DIR/disk-victoriametrics.json" "$VALUES" "$alloc" "$(apparent_bytes "$dir")" \
        "$(alloc_bytes "$dir/data")" "$(alloc_bytes "$dir/indexdb")" "$rows" "$((same >= 3))" <<'EOF'
import json, sys
values = int(sys.argv[2])
json.dump({
    "system": "victoriametrics",
    "measured": "whole -storageDataPath after /internal/force_flush and background merges",
    "values": values,
    "stored_rows": int(float(sys.argv[7])),
    "dir_bytes_allocated": int(sys.argv[3]),
    "dir_bytes_apparent": int(sys.argv[4]),
    "bytes_per_value": int(sys.argv[3]) / values,
    "data_bytes_allocated": int(sys.argv[5]),
    "indexdb_bytes_allocated": int(sys.argv[6]),
    "size_settled": sys.argv[8] == "1",
}, open(sys.argv[1], "w"), indent=1)
EOF
    queries victoriametrics "http://127.0.0.1:$port" || true
    stop_pid "$pid"
}

# --- InfluxDB 1.x ------------------------------------------------------------------------
run_influxdb() {
    local dir=$WORK/influx port rpc pid
    mkdir -p "$dir"
    port=$(free_port)
    rpc=$(free_port)
    while [[ "$rpc" == "$port" ]]; do rpc=$(free_port); done
    # Defaults but for: loopback ports, no self-monitoring, and short cold
    # durations so that the full compaction happens within the run
    # (defaults: 10m and 4h). wal-fsync-delay 0s (the default): each write
    # is fsynced before its 204.
    cat >"$dir/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$dir/meta"
  logging-enabled = false
[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  wal-fsync-delay = "0s"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "2s"
  compact-full-write-cold-duration = "5s"
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[logging]
  level = "warn"
EOF
    cp "$dir/influxdb.conf" "$RESULTS_DIR/influxdb.conf"
    printf '%s\t%s\n' server "influxd run -config influxdb.conf" >>"$RESULTS_DIR/commands.txt"
    start_server InfluxDB "$WORK/influx.log" "http://127.0.0.1:$port/ping" \
        influxd run -config "$dir/influxdb.conf" || return 0
    rec ingest curl -fsS -XPOST "http://127.0.0.1:$port/query" --data-urlencode "q=CREATE DATABASE bench" >/dev/null
    ingest influxdb "http://127.0.0.1:$port/write?db=bench&precision=ms"
    log "influxdb: waiting for the snapshot and the full compaction"
    local last="" same=0 cur deadline=$((SECONDS + 120))
    while ((SECONDS < deadline && same < 3)); do
        sleep 3
        cur="$(find "$dir/data" -name '*.tsm' | sort | tr '\n' ' ')|$(find "$dir/data" -name '*.tmp' | wc -l)|$(apparent_bytes "$dir/wal")"
        if [[ "$cur" == "$last" && "$cur" == *"|0|"* ]]; then same=$((same + 1)); else same=0; fi
        last=$cur
    done
    printf '%s\t%s\n' disk "du -s -B1 $dir/data $dir/wal  # InfluxDB, after full compaction" >>"$RESULTS_DIR/commands.txt"
    local tsm=0 f
    while IFS= read -r f; do tsm=$((tsm + $(stat -c %s "$f"))); done < <(find "$dir/data" -name '*.tsm')
    python3 - "$RESULTS_DIR/disk-influxdb.json" "$VALUES" "$(alloc_bytes "$dir/data" "$dir/wal")" \
        "$(apparent_bytes "$dir/data" "$dir/wal")" "$tsm" "$(find "$dir/data" -name '*.tsm' | wc -l)" "$((same >= 3))" <<'EOF'
import json, sys
values = int(sys.argv[2])
json.dump({
    "system": "influxdb",
    "measured": "data and wal dirs after the full compaction",
    "values": values,
    "dir_bytes_allocated": int(sys.argv[3]),
    "dir_bytes_apparent": int(sys.argv[4]),
    "bytes_per_value": int(sys.argv[3]) / values,
    "tsm_bytes": int(sys.argv[5]),
    "tsm_bytes_per_value": int(sys.argv[5]) / values,
    "tsm_files": int(sys.argv[6]),
    "compaction_settled": sys.argv[7] == "1",
}, open(sys.argv[1], "w"), indent=1)
EOF
    queries influxdb "http://127.0.0.1:$port" || true
    stop_pid "$pid"
}

# --- run ---------------------------------------------------------------------------------
# Each phase needs about: a load (LOAD_DEADLINE at most), settling, queries.
phase() { # name function
    local need=$((LOAD_DEADLINE + 90))
    if (($(budget_left) < need)); then
        note "$1 skipped: the time budget ($TOTAL_BUDGET s) would be exceeded"
        return 0
    fi
    "$2" || note "$1 failed (see stderr)"
}
if want_system millwright; then
    if ((HAVE_MW)); then phase "Millwright (HTTP)" run_millwright; fi
fi
want_system victoriametrics && phase VictoriaMetrics run_victoriametrics
want_system influxdb && phase InfluxDB run_influxdb
if [[ "$SKIP_MQTT" != 1 ]] && ((HAVE_MW)); then
    phase "Millwright (MQTT)" run_millwright_mqtt
fi

# --- report ------------------------------------------------------------------------------
NOTES+=(
    "Durability of an acknowledged write: Millwright answers 204 (HTTP) and PUBACK (MQTT) only after the write-ahead log is fsynced; InfluxDB 1.x fsyncs its WAL before 204 (wal-fsync-delay 0s); VictoriaMetrics answers 204 before the rows are on disk (it buffers them in memory and flushes about every second), so its rate is not a durable rate."
    "Same file for every system: $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("{:,} lines, {:,} values, {:.0f} MB, millisecond timestamps from {} to {}".format(m["lines"], m["values"], m["lp_bytes"] / 1e6, m["start_ms"], m["end_ms"]))' "$DATA/meta.json"); tag device=truck_N plus fleet, driver, model, device_version; each system ran alone."
    "Millwright's bytes per value count its whole tsdb/chunks directory: raw chunks plus the 1-minute and 1-hour rollups it keeps for aggregate queries (see the disk line below for the split)."
    "Queries: VictoriaMetrics runs $([[ "$VM_CACHE" == 1 ]] && echo "with its result cache on (VM_CACHE=1: repeated queries are answered from it)" || echo "with -search.disableCache (else repeated queries hit its result cache)"); its last-location query looks back 1 h (last_over_time), InfluxDB's and Millwright's have no bound. Window alignment: VictoriaMetrics windows are shifted by 'offset 1ms' so that they are [t, t+10m) like the others'. The stationary-trucks threshold is applied by the client for Millwright (its API has no filter on aggregates), server-side for the peers."
    "Loads send $BATCH_LINES lines per request from $CLIENTS keep-alive connections; the MQTT load sends each truck's readings and diagnostics of one tick as one message {\"ts\":..,\"values\":{..}} to devices/{truck}/telemetry, QoS 1, MQTT 5, from the trucks themselves: each truck registered through the API first, then one connection per truck authenticated with its own token ($DEVICE_COUNT connections, $MQTT_WINDOW unacknowledged messages in total, shared evenly)."
)
if python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["truth"]["stationary_window"]["trucks"] else 1)' "$DATA/meta.json"; then :; else
    NOTES+=("No truck averages under $STATIONARY_BELOW in any 10-minute window of this data (the lowest 10-minute average velocity is $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["truth"]["avg_velocity_10m_day"]["min_average"])' "$DATA/meta.json")), so the stationary-trucks answer is empty everywhere; STATIONARY_BELOW=5 gives a non-empty one.")
fi
python3 -c 'import json,sys; json.dump(sys.argv[2:], open(sys.argv[1], "w"), indent=1)' "$RESULTS_DIR/notes.json" "${NOTES[@]}"
log "done in $((SECONDS - START_SECONDS)) s; raw results in $RESULTS_DIR"
python3 "$HERE/tsbench.py" report --results "$RESULTS_DIR" --runs "$QUERY_RUNS"
echo
echo "Raw results: $RESULTS_DIR (facts.json, meta.json, ingest-*.json, mqtt-millwright.json, disk-*.json, queries-*.json, commands.txt, summary.md)"
