#!/usr/bin/env bash
# Millwright versus Mosquitto with one load generator (`millwright bench`),
# unpinned: the earlier script behind BENCHMARKS.md.
#
# Its throughput rows are superseded by bench/compare.sh (two generators,
# two placements, acknowledged-but-not-delivered counted per message);
# this script is kept for the idle-connection memory and connection-rate
# figures, which compare.sh does not measure.
#
# Starts each broker on a free port with its own temporary configuration,
# runs the same `millwright bench` loads against it, prints a markdown table
# (figure, Millwright, Mosquitto, ratio, command) on stdout and keeps the raw
# JSON reports in a results directory. Progress goes to stderr.
#
# Brokers:
#   millwright         $MILLWRIGHT_BIN serve (skipped if the binary is missing)
#   mosquitto          persistence off
#   mosquitto-persist  persistence on (used for the persistent-session figure)
#
# Environment (all optional):
#   MILLWRIGHT_BIN  the Millwright binary (default target/release/millwright)
#   BENCH_BIN       the load generator; default: "$MILLWRIGHT_BIN bench" if the
#                   binary has that subcommand, else the bench example
#                   (target/release/examples/bench, built if missing)
#   RESULTS_DIR     where JSON reports go (default bench/results/<timestamp>)
#   DURATION WARMUP measured and warm-up seconds per load (default 6 and 2)
#   PAIRS FAN       clients for pairs and fan-in/fan-out (default 10 and 1000)
#   CONNS_SMALL CONNS_LARGE  idle connection counts (default 10000, 19000)
#   PAYLOAD         payload bytes (default 64)
#   PROTOCOL        3 or 5 (default 5)
#   SKIP_MOSQUITTO_PERSIST=1  skip the persistence-on Mosquitto run
#
# The whole script stays well under 15 minutes with the defaults: every
# bench run is bounded by its duration plus a drain and a hard timeout.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
PAIRS=${PAIRS:-10}
FAN=${FAN:-1000}
CONNS_SMALL=${CONNS_SMALL:-10000}
CONNS_LARGE=${CONNS_LARGE:-19000}
PAYLOAD=${PAYLOAD:-64}
PROTOCOL=${PROTOCOL:-5}
# Source addresses for many connections: each gives its own ~28k ports.
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8

log() { echo "compare: $*" >&2; }

for tool in mosquitto python3 timeout; do
    if ! command -v "$tool" >/dev/null; then
        log "$tool is required"
        exit 1
    fi
done

# One process may hold 20,000 open files here; brokers started below
# inherit the raised limit.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

mkdir -p "$RESULTS_DIR"
WORK=$(mktemp -d)
BROKER_PID=""

cleanup() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- the load generator -------------------------------------------------------
if [[ -n "${BENCH_BIN:-}" ]]; then
    read -r -a BENCH <<<"$BENCH_BIN"
elif [[ -x "$MILLWRIGHT_BIN" ]] && "$MILLWRIGHT_BIN" bench --help >/dev/null 2>&1; then
    BENCH=("$MILLWRIGHT_BIN" bench)
else
    EXAMPLE=$ROOT/target/release/examples/bench
    if [[ ! -x "$EXAMPLE" ]]; then
        log "building the bench example (release)"
        (cd "$ROOT" && cargo build --release -p bench --example bench -j2 >&2)
    fi
    BENCH=("$EXAMPLE")
fi
log "load generator: ${BENCH[*]}"

# --- helpers --------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 20000))
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    log "no free port found"
    return 1
}

wait_for_port() { # port seconds
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if port_in_use "$1"; then
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

stop_broker() {
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
    # Let closed connections leave the kernel tables before the next broker.
    sleep 1
}

# wait_broker_idle: until the broker uses under 10% of a core over half a
# second (20 s at most), so that one run's leftovers do not slow the next.
wait_broker_idle() {
    local stat=/proc/$BROKER_PID/stat before after
    local deadline=$((SECONDS + 20))
    sleep 1
    while ((SECONDS < deadline)) && [[ -r "$stat" ]]; do
        before=$(awk '{print $14 + $15}' "$stat")
        sleep 0.5
        after=$(awk '{print $14 + $15}' "$stat" 2>/dev/null || echo "$before")
        # Clock ticks are 1/100 s: 5 ticks in 0.5 s is 10% of a core.
        if ((after - before < 5)); then
            return 0
        fi
    done
}

# start_mosquitto NAME PERSIST(true|false): sets PORT and BROKER_PID
start_mosquitto() {
    local dir=$WORK/$1
    mkdir -p "$dir/data"
    PORT=$(free_port)
    cat >"$dir/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
max_connections -1
user root
persistence $2
persistence_location $dir/data/
log_dest stderr
log_type error
log_type warning
EOF
    cp "$dir/mosquitto.conf" "$RESULTS_DIR/$1.conf"
    mosquitto -c "$dir/mosquitto.conf" 2>"$dir/broker.log" &
    BROKER_PID=$!
    if ! wait_for_port "$PORT" 10; then
        log "mosquitto ($1) did not start; its log:"
        cat "$dir/broker.log" >&2
        return 1
    fi
    log "started $1 (pid $BROKER_PID, port $PORT)"
}

# start_millwright: sets PORT and BROKER_PID, or fails. The WebSocket
# listener is turned off (ws_port = 0) so that its default port cannot clash
# with another instance on this machine; if this build does not know that
# key, the plain configuration is used.
start_millwright() {
    local dir=$WORK/millwright extra
    for extra in 'ws_port = 0' ''; do
        rm -rf "$dir"
        mkdir -p "$dir/data"
        PORT=$(free_port)
        cat >"$dir/m.toml" <<EOF
[mqtt]
bind = "127.0.0.1"
port = $PORT
allow_anonymous = true
$extra
[http]
enabled = false
EOF
        "$MILLWRIGHT_BIN" serve --data-dir "$dir/data" --config "$dir/m.toml" \
            >"$dir/broker.log" 2>&1 &
        BROKER_PID=$!
        if wait_for_port "$PORT" 20; then
            cp "$dir/m.toml" "$RESULTS_DIR/millwright.toml"
            log "started millwright (pid $BROKER_PID, port $PORT)"
            return 0
        fi
        log "millwright did not start listening; the last lines of its log:"
        tail -20 "$dir/broker.log" >&2 || true
        stop_broker
    done
    return 1
}

# jget FILE EXPR: a value from a JSON report (EXPR is a Python expression
# over `d`), or "n/a".
jget() {
    python3 - "$1" "$2" <<'EOF' 2>/dev/null || echo "n/a"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    v = eval(sys.argv[2], {}, {"d": d})
except Exception:
    print("n/a")
    sys.exit(0)
print("n/a" if v is None else v)
EOF
}

# Commands per figure, for the table (the port is added at run time).
declare -A CMD
common="--duration $DURATION --warmup $WARMUP --drain 3 --payload $PAYLOAD --protocol $PROTOCOL"
CMD[q0-pairs]="--mode pairs --publishers $PAIRS --qos 0 $common"
CMD[q1-pairs]="--mode pairs --publishers $PAIRS --qos 1 $common"
CMD[q0-fan-in]="--mode fan-in --publishers $FAN --subscribers 1 --qos 0 $common"
CMD[q1-fan-in]="--mode fan-in --publishers $FAN --subscribers 1 --qos 1 $common"
CMD[q0-fan-out]="--mode fan-out --publishers 1 --subscribers $FAN --qos 0 $common"
CMD[q1-fan-out]="--mode fan-out --publishers 1 --subscribers $FAN --qos 1 $common"
CMD[persistent-q1]="--mode pairs --publishers $PAIRS --qos 1 --clean-session false --session-expiry 3600 $common"
CMD[conns-small]="--mode connections --connections $CONNS_SMALL --hold 3 --source-addrs $SOURCES"

# bench BROKER LABEL ARGS...: one run, JSON kept as BROKER-LABEL.json
bench() {
    local broker=$1 label=$2
    shift 2
    local out=$RESULTS_DIR/$broker-$label.json
    local limit=$((WARMUP + DURATION + 90))
    # Let the previous run's connections and queues go (a broker may keep
    # working off a flood for seconds), and note how busy the (shared)
    # machine is.
    wait_broker_idle
    log "$broker: $label (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "$broker $label $(cat /proc/loadavg)" >>"$RESULTS_DIR/loadavg.txt"
    local started=$SECONDS
    if ! timeout "$limit" "${BENCH[@]}" --port "$PORT" --json --quiet "$@" >"$out" 2>"$out.stderr"; then
        log "$broker: $label failed (see $out.stderr)"
        echo '{}' >"$out"
    fi
    log "$broker: $label took $((SECONDS - started)) s"
}

# The large idle-connection figure: several bench processes (each under the
# per-process file limit) over disjoint source addresses; the broker's
# memory is read here while all of them hold their connections.
conns_large() {
    local broker=$1 procs=2
    local per=$(((CONNS_LARGE + procs - 1) / procs))
    local before after pids=() i
    before=$(awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$BROKER_PID/status")
    local srcs=("127.0.0.9,127.0.0.10,127.0.0.11,127.0.0.12" "127.0.0.13,127.0.0.14,127.0.0.15,127.0.0.16")
    log "$broker: conns-large ($procs x $per)"
    for ((i = 0; i < procs; i++)); do
        rm -f "$WORK/ready-$i"
        timeout 120 "${BENCH[@]}" --port "$PORT" --json --quiet --mode connections \
            --connections "$per" --hold 10 --source-addrs "${srcs[$i]}" \
            --ready-file "$WORK/ready-$i" >"$RESULTS_DIR/$broker-conns-large-$i.json" \
            2>"$RESULTS_DIR/$broker-conns-large-$i.json.stderr" &
        pids+=($!)
    done
    local deadline=$((SECONDS + 90))
    while ((SECONDS < deadline)); do
        local ready=0
        for ((i = 0; i < procs; i++)); do
            [[ -f "$WORK/ready-$i" ]] && ready=$((ready + 1))
        done
        ((ready == procs)) && break
        sleep 0.2
    done
    sleep 1
    after=$(awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$BROKER_PID/status" 2>/dev/null || echo 0)
    for pid in "${pids[@]}"; do
        wait "$pid" || log "$broker: a conns-large process failed"
    done
    python3 - "$RESULTS_DIR" "$broker" "$procs" "$before" "$after" >"$RESULTS_DIR/$broker-conns-large.json" <<'EOF'
import json, sys
results, broker, procs, before, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
parts = []
for i in range(procs):
    try:
        parts.append(json.load(open(f"{results}/{broker}-conns-large-{i}.json"))["connections"])
    except Exception:
        pass
opened = sum(p["opened"] for p in parts)
out = {"processes": len(parts), "opened": opened, "failed": sum(p["failed"] for p in parts)}
if parts:
    span = (max(p["finished_unix_ms"] for p in parts) - min(p["started_unix_ms"] for p in parts)) / 1000
    out["elapsed_s"] = span
    out["connections_per_sec"] = opened / span if span > 0 else None
out["broker_rss_before"] = before
out["broker_rss_after"] = after
out["broker_bytes_per_connection"] = (after - before) / opened if opened and after else None
print(json.dumps({"connections": out}, indent=2))
EOF
}

# run_suite BROKER START...: every load against the running broker. START
# (a command) restarts it: memory per connection is measured on a fresh
# process, whose heap holds nothing left over from earlier loads.
run_suite() {
    local broker=$1
    shift
    for label in q0-pairs q1-pairs; do
        # shellcheck disable=SC2086
        bench "$broker" "$label" ${CMD[$label]}
    done
    # Latency at half of Millwright's saturation (QoS 0 and QoS 1 pairs).
    for q in 0 1; do
        local rate=${LAT_RATE[$q]:-}
        if [[ -z "$rate" || "$rate" == "n/a" ]]; then
            rate=$(jget "$RESULTS_DIR/$broker-q$q-pairs.json" "int(d['load']['received_per_sec'] / 2)")
            if [[ "$rate" == "n/a" || "$rate" -le 0 ]]; then
                rate=1000
            fi
            LAT_RATE[$q]=$rate
            LAT_FROM[$q]=$broker
        fi
        CMD[latency-q$q]="--mode pairs --publishers $PAIRS --qos $q --rate ${LAT_RATE[$q]} $common"
        # shellcheck disable=SC2086
        bench "$broker" "latency-q$q" ${CMD[latency-q$q]}
    done
    for label in q0-fan-in q1-fan-in q0-fan-out q1-fan-out; do
        # shellcheck disable=SC2086
        bench "$broker" "$label" ${CMD[$label]}
    done
    stop_broker
    "$@" || return 1
    # shellcheck disable=SC2086
    bench "$broker" conns-small ${CMD[conns-small]} --pid "$BROKER_PID"
    stop_broker
    "$@" || return 1
    wait_broker_idle
    conns_large "$broker"
    # shellcheck disable=SC2086
    bench "$broker" persistent-q1 ${CMD[persistent-q1]}
}

declare -A LAT_RATE LAT_FROM
BROKERS=()

if [[ -x "$MILLWRIGHT_BIN" ]]; then
    if start_millwright; then
        run_suite millwright start_millwright || log "millwright: the suite stopped early"
        stop_broker
        BROKERS+=(millwright)
    else
        log "skipping millwright: it did not start"
    fi
else
    log "skipping millwright: $MILLWRIGHT_BIN does not exist yet"
fi

start_mosquitto mosquitto false
run_suite mosquitto start_mosquitto mosquitto false
stop_broker
BROKERS+=(mosquitto)

if [[ "${SKIP_MOSQUITTO_PERSIST:-0}" != 1 ]]; then
    start_mosquitto mosquitto-persist true
    # shellcheck disable=SC2086
    bench mosquitto-persist persistent-q1 ${CMD[persistent-q1]}
    # shellcheck disable=SC2086
    bench mosquitto-persist q1-pairs ${CMD[q1-pairs]}
    stop_broker
    BROKERS+=(mosquitto-persist)
fi

# --- the table --------------------------------------------------------------------
python3 - "$RESULTS_DIR" "$(uname -srm)" "$(nproc)" "$NOFILE" "${LAT_FROM[0]:-n/a}" <<EOF | tee "$RESULTS_DIR/summary.md"
import json, os, sys
results, machine, cores, nofile, lat_from = sys.argv[1:6]
bench_cmd = "millwright bench"
cmds = {
    "q0-pairs": "${CMD[q0-pairs]}",
    "q1-pairs": "${CMD[q1-pairs]}",
    "q0-fan-in": "${CMD[q0-fan-in]}",
    "q1-fan-in": "${CMD[q1-fan-in]}",
    "q0-fan-out": "${CMD[q0-fan-out]}",
    "q1-fan-out": "${CMD[q1-fan-out]}",
    "latency-q0": "${CMD[latency-q0]:-}",
    "latency-q1": "${CMD[latency-q1]:-}",
    "conns-small": "${CMD[conns-small]} --pid BROKER_PID",
    "conns-large": "2 processes x $(((CONNS_LARGE + 1) / 2)) --mode connections over 8 source addresses",
    "persistent-q1": "${CMD[persistent-q1]}",
}

def load(broker, label):
    try:
        with open(os.path.join(results, f"{broker}-{label}.json")) as f:
            return json.load(f)
    except Exception:
        return {}

def get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d

def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "ms":
        return f"{v / 1000:.2f}"
    return f"{v:,.0f}"

rows = [
    ("QoS 0 throughput, {} pairs (msg/s received)".format($PAIRS), "q0-pairs", ("load", "received_per_sec"), "", "mosquitto"),
    ("QoS 1 throughput, {} pairs (msg/s received)".format($PAIRS), "q1-pairs", ("load", "received_per_sec"), "", "mosquitto"),
    ("QoS 0 fan-in {}:1 (msg/s received)".format($FAN), "q0-fan-in", ("load", "received_per_sec"), "", "mosquitto"),
    ("QoS 1 fan-in {}:1 (msg/s received)".format($FAN), "q1-fan-in", ("load", "received_per_sec"), "", "mosquitto"),
    ("QoS 0 fan-out 1:{} (deliveries/s)".format($FAN), "q0-fan-out", ("load", "received_per_sec"), "", "mosquitto"),
    ("QoS 1 fan-out 1:{} (deliveries/s)".format($FAN), "q1-fan-out", ("load", "received_per_sec"), "", "mosquitto"),
    ("p99 latency QoS 0 at half saturation (ms, lower is better)", "latency-q0", ("load", "latency", "p99_us"), "ms", "mosquitto"),
    ("p99 latency QoS 1 at half saturation (ms, lower is better)", "latency-q1", ("load", "latency", "p99_us"), "ms", "mosquitto"),
    ("memory per idle connection at {} (bytes, lower is better)".format($CONNS_SMALL), "conns-small", ("connections", "broker_bytes_per_connection"), "", "mosquitto"),
    ("connection rate at {} (conn/s)".format($CONNS_SMALL), "conns-small", ("connections", "connections_per_sec"), "", "mosquitto"),
    ("memory per idle connection at {} (bytes, lower is better)".format($CONNS_LARGE), "conns-large", ("connections", "broker_bytes_per_connection"), "", "mosquitto"),
    ("connection rate at {} (conn/s)".format($CONNS_LARGE), "conns-large", ("connections", "connections_per_sec"), "", "mosquitto"),
    ("persistent-session QoS 1, {} pairs (msg/s; Mosquitto with persistence on)".format($PAIRS), "persistent-q1", ("load", "received_per_sec"), "", "mosquitto-persist"),
]

print(f"Machine: {machine}, {cores} cores (shared), open-file limit {nofile}; "
      f"latency rate = half of {lat_from}'s QoS 0/1 pairs saturation.")
print()
print("| figure | Millwright | Mosquitto | ratio | command |")
print("|---|---|---|---|---|")
for title, label, path, unit, peer in rows:
    mw = get(load("millwright", label), *path)
    mq = get(load(peer, label), *path)
    ratio = f"{mw / mq:.2f}" if isinstance(mw, (int, float)) and isinstance(mq, (int, float)) and mq else "n/a"
    cmd = cmds.get(label, "")
    print(f"| {title} | {fmt(mw, unit)} | {fmt(mq, unit)} | {ratio} | \`{bench_cmd} {cmd}\` |")

mw_p = get(load("millwright", "persistent-q1"), "load", "received_per_sec")
mw_c = get(load("millwright", "q1-pairs"), "load", "received_per_sec")
mq_p = get(load("mosquitto-persist", "persistent-q1"), "load", "received_per_sec")
mq_c = get(load("mosquitto-persist", "q1-pairs"), "load", "received_per_sec")
def r(a, b):
    return f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "n/a"
print(f"| persistent / clean-session QoS 1 throughput | {r(mw_p, mw_c)} | {r(mq_p, mq_c)} | | persistent-q1 / q1-pairs |")
print()
print("Missing deliveries (sent x subscribers - received) per run, where any:")
for name in sorted(os.listdir(results)):
    if not name.endswith(".json"):
        continue
    try:
        with open(os.path.join(results, name)) as f:
            d = json.load(f)
    except Exception:
        continue
    missing = get(d, "load", "missing")
    expected = get(d, "load", "expected_total")
    errors = d.get("errors")
    if missing or errors:
        print(f"- {name[:-5]}: missing {missing or 0} of {expected or 0}, errors {errors or 0}")
EOF
log "raw results in $RESULTS_DIR (whole run: $SECONDS s)"
