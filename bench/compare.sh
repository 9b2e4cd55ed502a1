#!/usr/bin/env bash
# Millwright against Mosquitto: two load generators, two placements, and
# the messages acknowledged but not delivered counted in every run.
#
# For each scenario x generator x placement x broker it starts a fresh
# broker (loopback, free port, temporary config and data directory), runs
# one bounded load, keeps the generator's JSON, stops the broker, and at the
# end prints a table (text on stdout, markdown into a file) with delivered
# messages per second, the ratio Millwright/Mosquitto, the acknowledged-
# but-not-delivered count of each broker, p99 latency where the generator
# reports it, and a verdict: "met" only when the ratio is at least 2 and,
# for QoS >= 1, Millwright lost no acknowledged message.
#
# Generators:
#   millwright  `millwright bench` (crates/bench): counts per message which
#               acknowledged QoS 1/2 messages never reached a matching
#               subscriber that stayed connected (field
#               load.acked_not_delivered).
#   mqttv5      `mqttv5 bench` from crates.io (`cargo install mqttv5-cli`,
#               without --locked). It reports totals only: `published`
#               (QoS 1: PUBACKed without error), `received` (deliveries
#               summed over subscribers) counted from the end of the warm-up
#               until deliveries stop for 100 ms (at most 2 s after
#               publishing stops). The loss here is derived:
#               max(0, published x subscribers - received); every mqttv5
#               subscriber subscribes to every publisher's topic.
#
# Placements:
#   unpinned    broker and generator share both cores as the kernel likes.
#   pinned      broker under `taskset -c 0`, generator under `taskset -c 1`
#               (the broker is started pinned, so its runtime sizes itself
#               for one core, as it would on a one-core device).
#
# Scenarios (64-byte payloads, MQTT 5):
#   q0-1-1        QoS 0, 1 publisher, 1 subscriber
#   q0-4-4        QoS 0, 4 publishers on their own topics, 4 subscribers to
#                 all of them (each message delivered 4 times: the shape of
#                 `mqttv5 bench --publishers 4 --subscribers 4`)
#   q1-4-4        the same at QoS 1
#   fanin-1000    1000 publishers, 1 subscriber (QoS from --fan-qos)
#   fanout-50     1 publisher, 50 subscribers (QoS from --fan-qos)
#   fanout-1000   1 publisher, 1000 subscribers (QoS from --fan-qos)
#   persist-q1-4-4  q1-4-4 with persistent sessions (clean start off,
#                 session expiry 3600 s); target: at least half of
#                 Millwright's clean-session q1-4-4 in the same cell
#   latency-q0-1-1  QoS 0 1:1 paced at half of Millwright's q0-1-1 rate
#                 measured with the same generator and placement (for
#                 mqttv5 at most MQTTV5_LATENCY_CAP, default 60000 msg/s:
#                 above that its latency pump measures its own backlog);
#                 target: Millwright's p99 under 5 ms
#
# Usage:
#   bench/compare.sh [--duration S] [--warmup S] [--out FILE]
#                    [--scenarios a,b,...] [--generators millwright,mqttv5]
#                    [--placements unpinned,pinned] [--fan-qos 0|1]
#                    [--inflight N] [--payload BYTES]
#
# Environment: MILLWRIGHT_BIN (default target/release/millwright), BENCH_BIN
# (the `millwright bench` generator; default "$MILLWRIGHT_BIN bench", or e.g.
# target/release/examples/bench, the same crate without the server), MQTTV5_BIN
# (default: mqttv5 on the PATH, else ~/.cargo/bin/mqttv5), RESULTS_DIR
# (default /tmp/millwright-compare-<timestamp>). Progress goes to stderr.
# Every run is bounded by `timeout`; brokers are killed on exit.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
MQTTV5_LATENCY_CAP=${MQTTV5_LATENCY_CAP:-60000}
if [[ -z "${MQTTV5_BIN:-}" ]]; then
    MQTTV5_BIN=$(command -v mqttv5 || echo "$HOME/.cargo/bin/mqttv5")
fi
RESULTS_DIR=${RESULTS_DIR:-/tmp/millwright-compare-$(date +%Y%m%d-%H%M%S)}
DURATION=10
WARMUP=2
OUT=""
SCENARIOS=q0-1-1,q0-4-4,q1-4-4,fanin-1000,fanout-50,fanout-1000,persist-q1-4-4,latency-q0-1-1
GENERATORS=millwright,mqttv5
PLACEMENTS=unpinned,pinned
FAN_QOS=1
INFLIGHT=32
PAYLOAD=64
# The longest wait for deliveries after publishing stops. `millwright bench`
# stops waiting as soon as every acknowledged message has arrived (or after
# a second without any), so a long cap costs nothing when nothing is
# missing; a short one counted a backlog still being delivered (fan-out
# 1:1000 holds millions of queued deliveries when publishing stops) as loss.
DRAIN=30

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//; /^set -euo/d' >&2; }
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --generators) GENERATORS=$2; shift 2 ;;
        --placements) PLACEMENTS=$2; shift 2 ;;
        --fan-qos) FAN_QOS=$2; shift 2 ;;
        --inflight) INFLIGHT=$2; shift 2 ;;
        --payload) PAYLOAD=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "compare: unknown argument $1" >&2; usage; exit 2 ;;
    esac
done
# mqttv5 takes whole seconds.
for v in DURATION WARMUP INFLIGHT PAYLOAD; do
    if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} == 0 && v != WARMUP)); then
        echo "compare: --${v,,} must be a whole positive number" >&2
        exit 2
    fi
done
[[ $FAN_QOS == 0 || $FAN_QOS == 1 ]] || { echo "compare: --fan-qos must be 0 or 1" >&2; exit 2; }
mkdir -p "$RESULTS_DIR"
OUT=${OUT:-$RESULTS_DIR/table.md}

log() { echo "compare: $*" >&2; }

for tool in mosquitto python3 timeout taskset; do
    command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done
[[ -x "$MILLWRIGHT_BIN" ]] || { log "$MILLWRIGHT_BIN is missing: cargo build --release -p millwright -j2"; exit 1; }
IFS=, read -r -a GEN_LIST <<<"$GENERATORS"
IFS=, read -r -a PLACE_LIST <<<"$PLACEMENTS"
IFS=, read -r -a SCEN_LIST <<<"$SCENARIOS"
for g in "${GEN_LIST[@]}"; do
    if [[ $g == mqttv5 && ! -x "$MQTTV5_BIN" ]]; then
        log "mqttv5 not found ($MQTTV5_BIN): cargo install mqttv5-cli (without --locked)"
        exit 1
    fi
done
if [[ " ${PLACE_LIST[*]} " == *" pinned "* ]] && (($(nproc) < 2)); then
    log "the pinned placement needs 2 cores"
    exit 1
fi

# Fan-out to 1000 subscribers: each side holds over 1000 sockets.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d)
BROKER_PID=""
cleanup() {
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill "$BROKER_PID" 2>/dev/null || true
        sleep 0.5
        kill -9 "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Below the kernel's ephemeral range (32768-60999 by default), so that no
# client connection of an earlier run holds the port as its source.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((10000 + RANDOM % 22000))
        port_in_use "$port" || { echo "$port"; return 0; }
    done
    log "no free port found"
    return 1
}
wait_for_port() { # port seconds
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        port_in_use "$1" && return 0
        kill -0 "$BROKER_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_broker NAME PLACEMENT: sets PORT and BROKER_PID (three tries, each
# on a new port).
start_broker() {
    local try
    for try in 1 2 3; do
        start_broker_once "$@" && return 0
        log "$1: start $try of 3 failed"
    done
    return 1
}

start_broker_once() {
    local name=$1 placement=$2 dir=$WORK/broker pin=()
    [[ $placement == pinned ]] && pin=(taskset -c 0)
    rm -rf "$dir"
    mkdir -p "$dir/data"
    PORT=$(free_port)
    case $name in
        mosquitto)
            # Started as root, Mosquitto drops to user `mosquitto` unless
            # told `user root`; the data directory is ours either way.
            cat >"$dir/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
max_connections -1
user root
persistence true
persistence_location $dir/data/
log_dest stderr
log_type error
log_type warning
EOF
            "${pin[@]}" mosquitto -c "$dir/mosquitto.conf" >"$dir/broker.log" 2>&1 &
            ;;
        millwright)
            cat >"$dir/m.toml" <<EOF
[mqtt]
bind = "127.0.0.1"
port = $PORT
ws_port = 0
allow_anonymous = true
[http]
enabled = false
EOF
            "${pin[@]}" "$MILLWRIGHT_BIN" serve --data-dir "$dir/data" --config "$dir/m.toml" \
                >"$dir/broker.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    if ! wait_for_port "$PORT" 20; then
        log "$name did not start; the end of its log:"
        tail -20 "$dir/broker.log" >&2 || true
        stop_broker
        return 1
    fi
}

stop_broker() {
    if [[ -n "$BROKER_PID" ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while kill -0 "$BROKER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -9 "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}

# scenario_args SCENARIO GENERATOR RATE: sets ARGS to the generator's
# arguments (without host and port), or NA_REASON when the generator cannot
# express the scenario.
scenario_args() {
    local scen=$1 gen=$2 rate=$3 topic="mwb/$RANDOM$RANDOM"
    NA_REASON=""
    ARGS=""
    local mw_common="--json --quiet --duration $DURATION --warmup $WARMUP --drain $DRAIN --payload $PAYLOAD --protocol 5 --inflight $INFLIGHT"
    local mq_common="--duration $DURATION --warmup $WARMUP --payload-size $PAYLOAD --inflight $INFLIGHT --topic $topic"
    case $gen:$scen in
        millwright:q0-1-1) ARGS="$mw_common --mode pairs --publishers 1 --qos 0" ;;
        millwright:q0-4-4) ARGS="$mw_common --mode fan-in --publishers 4 --subscribers 4 --qos 0" ;;
        millwright:q1-4-4) ARGS="$mw_common --mode fan-in --publishers 4 --subscribers 4 --qos 1" ;;
        millwright:fanin-1000) ARGS="$mw_common --mode fan-in --publishers 1000 --subscribers 1 --qos $FAN_QOS" ;;
        millwright:fanout-50) ARGS="$mw_common --mode fan-out --publishers 1 --subscribers 50 --qos $FAN_QOS" ;;
        millwright:fanout-1000) ARGS="$mw_common --mode fan-out --publishers 1 --subscribers 1000 --qos $FAN_QOS" ;;
        millwright:persist-q1-4-4) ARGS="$mw_common --mode fan-in --publishers 4 --subscribers 4 --qos 1 --clean-session false --session-expiry 3600" ;;
        millwright:latency-q0-1-1) ARGS="$mw_common --mode pairs --publishers 1 --qos 0 --rate $rate" ;;
        mqttv5:q0-1-1) ARGS="bench --mode throughput $mq_common --publishers 1 --subscribers 1 --qos 0" ;;
        mqttv5:q0-4-4) ARGS="bench --mode throughput $mq_common --publishers 4 --subscribers 4 --qos 0" ;;
        mqttv5:q1-4-4) ARGS="bench --mode throughput $mq_common --publishers 4 --subscribers 4 --qos 1" ;;
        mqttv5:fanin-1000) ARGS="bench --mode throughput $mq_common --publishers 1000 --subscribers 1 --qos $FAN_QOS" ;;
        mqttv5:fanout-50) ARGS="bench --mode throughput $mq_common --publishers 1 --subscribers 50 --qos $FAN_QOS" ;;
        mqttv5:fanout-1000) ARGS="bench --mode throughput $mq_common --publishers 1 --subscribers 1000 --qos $FAN_QOS" ;;
        mqttv5:persist-q1-4-4) NA_REASON="mqttv5 bench always connects with clean start and no session expiry" ;;
        mqttv5:latency-q0-1-1) ARGS="bench --mode latency $mq_common --qos 0 --rate $rate" ;;
        *) NA_REASON="unknown scenario" ;;
    esac
}

# The paced rate for the latency scenario: half of Millwright's q0-1-1
# delivered rate with the same generator and placement (10,000 if that run
# is missing).
latency_rate() {
    local gen=$1 place=$2
    python3 - "$RESULTS_DIR/$place/q0-1-1/$gen-millwright.json" "$gen" "$MQTTV5_LATENCY_CAP" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    v = d["load"]["received_per_sec"] if sys.argv[2] == "millwright" else d["results"]["throughput_avg"]
    rate = int(v / 2)
    if sys.argv[2] == "mqttv5":
        # Its latency pump (one spawned task per publish) falls behind
        # above about 60,000 msg/s here: past that its p99 is its own
        # backlog, whatever the broker.
        rate = min(rate, int(sys.argv[3]))
    print(max(100, rate))
except Exception:
    print(10000)
EOF
}

# run_one SCENARIO GENERATOR PLACEMENT BROKER
run_one() {
    local scen=$1 gen=$2 place=$3 broker=$4
    local dir=$RESULTS_DIR/$place/$scen out rate=0 args gen_cmd=() pin=()
    mkdir -p "$dir"
    out=$dir/$gen-$broker.json
    [[ $scen == latency-* ]] && rate=$(latency_rate "$gen" "$place")
    scenario_args "$scen" "$gen" "$rate"
    args=$ARGS
    if [[ -n "$NA_REASON" ]]; then
        echo "$NA_REASON" >"$dir/$gen.na"
        return 0
    fi
    [[ $place == pinned ]] && pin=(taskset -c 1)
    case $gen in
        millwright) read -r -a gen_cmd <<<"${BENCH_BIN:-$MILLWRIGHT_BIN bench}" ;;
        mqttv5) gen_cmd=("$MQTTV5_BIN") ;;
    esac
    start_broker "$broker" "$place" || { echo '{}' >"$out"; return 0; }
    read -r load1 _ </proc/loadavg
    log "$place $scen $gen -> $broker (port $PORT, load $load1)"
    # shellcheck disable=SC2086
    printf '%s\n' "${pin[*]} ${gen_cmd[*]##*/} $args --host 127.0.0.1 --port PORT" >"$out.cmd"
    echo "$load1" >"$out.load"
    local limit=$((WARMUP + DURATION + DRAIN + 90))
    # shellcheck disable=SC2086
    if ! timeout -k 5 "$limit" "${pin[@]}" "${gen_cmd[@]}" $args --host 127.0.0.1 --port "$PORT" \
        >"$out" 2>"$out.stderr"; then
        log "$place $scen $gen -> $broker failed (see $out.stderr)"
        python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out" 2>/dev/null || echo '{}' >"$out"
    fi
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        log "$broker exited during the run; the end of its log:"
        tail -5 "$WORK/broker/broker.log" >&2 || true
        echo "broker exited during the run" >"$out.crashed"
    fi
    stop_broker
    sleep 1
}

log "results in $RESULTS_DIR; ${DURATION}s measured after ${WARMUP}s warm-up per run"
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for place in "${PLACE_LIST[@]}"; do
    for scen in "${SCEN_LIST[@]}"; do
        for gen in "${GEN_LIST[@]}"; do
            # Back to back, so that both brokers of a cell see the same
            # machine.
            for broker in millwright mosquitto; do
                run_one "$scen" "$gen" "$place" "$broker"
            done
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 "$ROOT/bench/compare_table.py" "$RESULTS_DIR" \
    --scenarios "$SCENARIOS" --generators "$GENERATORS" --placements "$PLACEMENTS" \
    --fan-qos "$FAN_QOS" --markdown "$OUT" \
    --header "Taken $STARTED on $(uname -srm), $(nproc) cores; load average $LOAD_START at the start, $LOAD_END at the end; ${DURATION} s measured after ${WARMUP} s warm-up per run, $PAYLOAD-byte payloads, MQTT 5, in-flight window $INFLIGHT; Millwright $("$MILLWRIGHT_BIN" --version 2>/dev/null | head -1 || echo '?'), $(mosquitto -h 2>/dev/null | head -1 | sed 's/ is an MQTT.*//'), $("$MQTTV5_BIN" --version 2>/dev/null | head -1 || echo 'mqttv5 ?')."
log "markdown table in $OUT; raw results in $RESULTS_DIR (whole run: $SECONDS s)"
