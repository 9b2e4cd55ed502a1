#!/usr/bin/env bash
# Instructions per delivered message, Millwright against Mosquitto, counted
# by callgrind (repeatable on a busy machine, unlike wall-clock rates; it
# counts user-space instructions only, not the kernel's work).
#
# Each broker runs under `valgrind --tool=callgrind`; once it listens its
# counters are zeroed, `mqttv5 bench` runs one throughput load, the
# counters are dumped, and the total is divided by the deliveries the
# generator counted (`received`).
#
# Usage: bench/callgrind.sh [QOS PUBLISHERS SUBSCRIBERS]   (default 0 1 1)
# Environment: MILLWRIGHT_BIN (default target/release/millwright),
# MQTTV5_BIN (default mqttv5 on the PATH), DURATION (10), BROKERS
# ("millwright mosquitto"). Needs valgrind (apt install valgrind).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
MQTTV5_BIN=${MQTTV5_BIN:-$(command -v mqttv5 || echo "$HOME/.cargo/bin/mqttv5")}
DURATION=${DURATION:-10}
BROKERS=${BROKERS:-"millwright mosquitto"}
QOS=${1:-0} PUBS=${2:-1} SUBS=${3:-1}
command -v valgrind >/dev/null || { echo "valgrind is missing (apt install valgrind)" >&2; exit 1; }
WORK=$(mktemp -d)
trap '[[ -n ${VP:-} ]] && kill "$VP" 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for broker in $BROKERS; do
    port=$(free_port)
    mkdir -p "$WORK/$broker/data"
    case $broker in
        millwright)
            printf '[mqtt]\nbind = "127.0.0.1"\nport = %s\nws_port = 0\nallow_anonymous = true\n[http]\nenabled = false\n' "$port" >"$WORK/m.toml"
            cmd=("$MILLWRIGHT_BIN" serve --data-dir "$WORK/$broker/data" --config "$WORK/m.toml") ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nuser root\n' "$port" >"$WORK/mosquitto.conf"
            cmd=(mosquitto -c "$WORK/mosquitto.conf") ;;
        *) echo "unknown broker $broker" >&2; exit 1 ;;
    esac
    valgrind --tool=callgrind --callgrind-out-file="$WORK/$broker/cg.out" "${cmd[@]}" >"$WORK/$broker/log" 2>&1 &
    VP=$!
    for _ in $(seq 1 120); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.5; done
    callgrind_control -z "$VP" >/dev/null
    timeout -k 5 $((DURATION + 60)) "$MQTTV5_BIN" bench --mode throughput --duration "$DURATION" --warmup 2 \
        --payload-size 64 --topic "cg/$RANDOM" --publishers "$PUBS" --subscribers "$SUBS" --qos "$QOS" \
        --host 127.0.0.1 --port "$port" >"$WORK/$broker/out.json" 2>/dev/null || true
    callgrind_control -d "$VP" >/dev/null
    kill "$VP" 2>/dev/null || true; wait "$VP" 2>/dev/null || true; VP=
    python3 - "$broker" "$WORK/$broker" "$QOS" "$PUBS" "$SUBS" <<'PY'
import glob, json, sys
broker, d, qos, pubs, subs = sys.argv[1:]
t = open(f"{d}/out.json").read()
r = json.loads(t[t.index("{"):])["results"]
dump = sorted(glob.glob(f"{d}/cg.out.*[0-9]"))[-1]
total = next(int(l.split()[1]) for l in open(dump) if l.startswith(("summary:", "totals:")))
print(f"| QoS {qos} {pubs}:{subs} | {broker} | {r['received']:,} | {total:,} | {total / max(r['received'], 1):,.0f} |")
PY
done
