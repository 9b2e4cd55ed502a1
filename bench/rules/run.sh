#!/usr/bin/env bash
# The rules engine's cost: broker throughput (millwright bench, QoS 0 pairs)
# with no rules, with 100 simple filter rules (no actions: may be sampled),
# with the same 100 rules raising an alarm (never skipped: back-pressure)
# and with 10 windowed rules matching every message; the evaluations the
# engine made, the messages it dropped (queue full) and held past its bound;
# and the pure engine's evaluation rate (crates/rules/examples/rules_bench.rs).
#
# Environment (optional): MILLWRIGHT_BIN (default target/release/millwright),
# DURATION (default 8), PUBLISHERS (default 10), RATE (total msg/s offered,
# default 0 = flat out), WORKERS (rules.workers, default 0 = CPUs),
# ENGINE (default 1; 0 skips rules_bench).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
DURATION=${DURATION:-8}
PUBLISHERS=${PUBLISHERS:-10}
RATE=${RATE:-0}
WORKERS=${WORKERS:-0}
ENGINE=${ENGINE:-1}
[ -x "$MILLWRIGHT_BIN" ] || (cd "$ROOT" && cargo build --release -j2 -p millwright >&2)
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
MQ=$(free_port); HTTP=$(free_port); TOKEN=bench-rules-token-0123456789
cat > "$WORK/c.toml" <<TOML
[mqtt]
bind = "127.0.0.1"
port = $MQ
ws_port = 0
allow_anonymous = true
[http]
bind = "127.0.0.1"
port = $HTTP
tls_port = 0
[tls]
enabled = false
[auth]
bootstrap_admin_token = "$TOKEN"
[log]
level = "warn"
[rules]
workers = $WORKERS
TOML
"$MILLWRIGHT_BIN" serve --data-dir "$WORK/d" --config "$WORK/c.toml" >"$WORK/log" 2>&1 &
PID=$!
wait_port "$HTTP"; wait_port "$MQ"
api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }
bench() {
    local extra=()
    [ "$RATE" != 0 ] && extra=(--rate "$RATE")
    "$MILLWRIGHT_BIN" bench --port "$MQ" --mode pairs --publishers "$PUBLISHERS" --qos 0 \
        --payload 64 --duration "$DURATION" --warmup 2 --json --quiet "${extra[@]}" \
        | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["load"]["received_per_sec"]))'
}
evaluations() {
    api "http://127.0.0.1:$HTTP/api/rules" | python3 -c '
import json,sys
d=json.load(sys.stdin)
q=d.get("queues", [])
print(sum(r["metrics"]["evaluations"] for r in d["items"]), d.get("dropped", 0),
      sum(x["held"] for x in q), sum(x["queued"] for x in q))'
}
# Waits until the engine's queues are empty (what was queued is evaluated).
drained() {
    for _ in $(seq 600); do
        read -r _ _ _ Q < <(evaluations)
        [ "$Q" = 0 ] && return 0
        sleep 0.1
    done
}
echo "machine: $(nproc) cores, $(uname -r), rules.workers=$WORKERS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== no rules" >&2
BASE=$(bench); echo "   $BASE msg/s" >&2
for i in $(seq 1 100); do
    api -XPOST "http://127.0.0.1:$HTTP/api/rules" \
        -d "{\"name\":\"f$i\",\"sql\":\"SELECT v FROM 'mwbench/#' WHERE v > $((1000000 + i))\",\"actions\":[]}" >/dev/null
done
echo "== 100 simple filter rules (no actions: may be sampled)" >&2
read -r E0 D0 H0 _ < <(evaluations)
T0=$(date +%s.%N)
SIMPLE=$(bench)
drained
T1=$(date +%s.%N)
read -r E1 D1 H1 _ < <(evaluations)
echo "   $SIMPLE msg/s; $((E1 - E0)) evaluations, $((D1 - D0)) messages not evaluated (dropped, queue full), $((H1 - H0)) held" >&2
SIMPLE_EVALS=$(python3 -c "print(round(($E1-$E0)/($T1-$T0)))")
SIMPLE_DROPPED=$((D1 - D0))
echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for i in $(seq 1 100); do api -XDELETE "http://127.0.0.1:$HTTP/api/rules/f$i" >/dev/null; done
for i in $(seq 1 100); do
    api -XPOST "http://127.0.0.1:$HTTP/api/rules" \
        -d "{\"name\":\"a$i\",\"sql\":\"SELECT v FROM 'mwbench/#' WHERE v > $((1000000 + i))\",\"actions\":[{\"type\":\"alarm\",\"alarm_type\":\"never\",\"severity\":\"minor\"}]}" >/dev/null
done
echo "== the same 100 rules with an alarm action (never skipped)" >&2
read -r E0 D0 H0 _ < <(evaluations)
T0=$(date +%s.%N)
STRICT=$(bench)
drained
T1=$(date +%s.%N)
read -r E1 D1 H1 _ < <(evaluations)
echo "   $STRICT msg/s; $((E1 - E0)) evaluations, $((D1 - D0)) dropped, $((H1 - H0)) held past the bound (publishers waited)" >&2
STRICT_EVALS=$(python3 -c "print(round(($E1-$E0)/($T1-$T0)))")
STRICT_DROPPED=$((D1 - D0))
echo "   load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for i in $(seq 1 100); do api -XDELETE "http://127.0.0.1:$HTTP/api/rules/a$i" >/dev/null; done
for i in $(seq 1 10); do
    api -XPOST "http://127.0.0.1:$HTTP/api/rules" \
        -d "{\"name\":\"w$i\",\"sql\":\"SELECT avg(v) OVER 1m AS a FROM 'mwbench/#' WHERE avg(v) OVER 1m > $((1000000 + i))\",\"actions\":[]}" >/dev/null
done
echo "== 10 windowed rules" >&2
read -r E0 D0 _ _ < <(evaluations)
WINDOWED=$(bench)
read -r E1 D1 _ _ < <(evaluations)
echo "   $WINDOWED msg/s; $((E1 - E0)) evaluations, $((D1 - D0)) not evaluated" >&2
ENGINE_OUT=""
[ "$ENGINE" = 1 ] && ENGINE_OUT=$(cd "$ROOT" && cargo run --release -q -j2 -p rules --example rules_bench 2>/dev/null | tail -5 || true)
python3 - "$BASE" "$SIMPLE" "$WINDOWED" "$SIMPLE_EVALS" "$STRICT" "$STRICT_EVALS" "$SIMPLE_DROPPED" "$STRICT_DROPPED" <<'PY'
import sys
b, s, w, e, st, se, sd, std = map(float, sys.argv[1:9])
print("| load (QoS 0 pairs) | msg/s | vs no rules | rule evaluations/s | dropped |")
print("|---|---|---|---|---|")
print(f"| no rules | {b:.0f} | 1.00 | | |")
print(f"| 100 simple filter rules, no actions (sampled) | {s:.0f} | {s/b:.2f} | {e:.0f} | {sd:.0f} |")
print(f"| the same with an alarm action (never skipped) | {st:.0f} | {st/b:.2f} | {se:.0f} | {std:.0f} |")
print(f"| 10 windowed rules | {w:.0f} | {w/b:.2f} | | |")
print("\n(evaluations/s over the whole run incl. warm-up and drain)")
PY
echo "$ENGINE_OUT"
