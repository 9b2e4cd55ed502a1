#!/usr/bin/env bash
# Does the broker's throughput grow with cores? The same independent load
# (`mqttv5 bench`, 64-byte payloads, MQTT 5) against Millwright allowed one
# core (`taskset -c 0`) and then two (`taskset -c 0,1`); the generator is
# pinned to core 1 in both runs (on a 2-core machine it shares that core
# with the broker in the second run). Prints one markdown row per scenario:
# delivered msg/s with 1 core, with 2 cores, and the ratio.
#
# Environment: MILLWRIGHT_BIN (default target/release/millwright, built if
# missing), MQTTV5_BIN (default mqttv5 on the PATH), DURATION (10), WARMUP
# (2), SCENARIOS (default "q0-4-4 q1-4-4 fanout-50").
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
MQTTV5_BIN=${MQTTV5_BIN:-$(command -v mqttv5 || echo "$HOME/.cargo/bin/mqttv5")}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SCENARIOS=${SCENARIOS:-"q0-4-4 q1-4-4 fanout-50"}
[[ -x $MILLWRIGHT_BIN ]] || cargo build --release -p millwright -j2 --manifest-path "$ROOT/Cargo.toml" >&2
WORK=$(mktemp -d)
trap '[[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # run CPUS SCENARIO -> delivered msg/s (mqttv5 throughput_avg)
    local cpus=$1 scen=$2 port args
    port=$(free_port)
    rm -rf "$WORK/data"; mkdir -p "$WORK/data"
    printf '[mqtt]\nbind = "127.0.0.1"\nport = %s\nws_port = 0\nallow_anonymous = true\n[http]\nenabled = false\n' "$port" >"$WORK/m.toml"
    taskset -c "$cpus" "$MILLWRIGHT_BIN" serve --data-dir "$WORK/data" --config "$WORK/m.toml" >"$WORK/broker.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
    case $scen in
        q0-4-4) args="--publishers 4 --subscribers 4 --qos 0" ;;
        q1-4-4) args="--publishers 4 --subscribers 4 --qos 1" ;;
        fanout-50) args="--publishers 1 --subscribers 50 --qos 1" ;;
        *) echo "unknown scenario $scen" >&2; return 1 ;;
    esac
    # shellcheck disable=SC2086
    timeout -k 5 $((WARMUP + DURATION + 60)) taskset -c 1 "$MQTTV5_BIN" bench --mode throughput \
        --duration "$DURATION" --warmup "$WARMUP" --payload-size 64 --topic "c/$RANDOM" $args \
        --host 127.0.0.1 --port "$port" >"$WORK/out.json" 2>/dev/null || true
    kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=
    python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print(round(json.loads(t[t.index("{"):])["results"]["throughput_avg"]))' "$WORK/out.json" 2>/dev/null || echo 0
}

echo "Taken $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -srm), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at the start."
echo
echo "| scenario (mqttv5 bench, generator on core 1) | broker on 1 core | broker on 2 cores | ratio |"
echo "|---|---|---|---|"
for s in $SCENARIOS; do
    one=$(run 0 "$s")
    two=$(run 0,1 "$s")
    ratio=$(python3 -c "print(f'{$two/$one:.2f}x' if $one else 'n/a')")
    echo "| $s | $one | $two | $ratio |"
done
