#!/usr/bin/env bash
# A plant's power blip: every device with a token reconnects at once.
# Millwright (device tokens in its registry) against Mosquitto 2 (the same
# user names and passwords in a `$7$` password file), the same load
# generator (bench/storm: the shared mqtt-client state machine). Per broker:
# resident memory idle, at the peak (VmHWM), with every device connected,
# and after every device has left; connections per second.
#
# Bounded: DEVICES connections (default 19000), loopback only, every step
# under a timeout; the whole run takes a few minutes. Progress on stderr,
# a markdown table and the raw JSON on stdout.
#
# Environment (optional):
#   MILLWRIGHT_BIN  default target/release/millwright (built if missing)
#   DEVICES         devices (default 19000)
#   CONCURRENCY     handshakes in flight in the generator (default 256)
#   HOLD            seconds all devices stay connected (default 5)
#   SETTLE          seconds after the last device left before reading
#                   memory again (default 10)
#   PROTOCOL        3 or 5 (default 5)
#   ROUNDS          storms per broker process, one after the other
#                   (default 2: the second shows whether memory kept after
#                   the first is reused or grows)
#   SKIP_MOSQUITTO=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
STORM_BIN=$ROOT/bench/storm/target/release/reconnect-storm
DEVICES=${DEVICES:-19000}
CONCURRENCY=${CONCURRENCY:-256}
HOLD=${HOLD:-5}
SETTLE=${SETTLE:-10}
PROTOCOL=${PROTOCOL:-5}
ROUNDS=${ROUNDS:-2}
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
ADMIN_TOKEN=bench-storm-admin-token-$RANDOM$RANDOM

log() { echo "storm: $*" >&2; }

# Each side holds one descriptor per device: raise the limit as far as the
# hard limit allows (65536 if permitted).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((DEVICES + 200)) ]; then
    log "open file limit $(ulimit -n) is too low for $DEVICES devices"
    exit 1
fi

[ -x "$MILLWRIGHT_BIN" ] || (cd "$ROOT" && cargo build --release -j2 -p millwright >&2)
[ -x "$STORM_BIN" ] || (cd "$ROOT/bench/storm" && cargo build --release -j2 >&2)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 400); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    log "port $1 never opened"
    return 1
}
kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
wait_file() { # file seconds
    for _ in $(seq $(($2 * 20))); do
        [ -e "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# storm NAME PID PORT: runs the generator, prints a JSON object with the
# generator's report and the broker's memory.
storm() {
    local name=$1 pid=$2 port=$3 out=$WORK/${1/\#/-}.storm.json
    local idle peak up left load
    rm -f "$WORK/ready" "$WORK/left"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    idle=$(kib "$pid" VmRSS)
    log "$name: idle ${idle} KiB, load $load; $DEVICES devices connecting"
    timeout $((HOLD + 600)) "$STORM_BIN" --addr "127.0.0.1:$port" \
        --credentials "$WORK/creds.csv" --concurrency "$CONCURRENCY" \
        --hold "$HOLD" --protocol "$PROTOCOL" --source-addrs "$SOURCES" \
        --ready-file "$WORK/ready" --left-file "$WORK/left" >"$out" &
    local gen=$!
    PIDS+=("$gen")
    wait_file "$WORK/ready" 600 || { log "$name: devices never all up"; }
    sleep 1
    up=$(kib "$pid" VmRSS)
    wait_file "$WORK/left" 600 || { log "$name: devices never all left"; }
    wait "$gen" || log "$name: generator reported refusals: $(cat "$out")"
    sleep "$SETTLE"
    left=$(kib "$pid" VmRSS)
    peak=$(kib "$pid" VmHWM)
    log "$name: $(cat "$out")"
    log "$name: RSS idle $(mb "$idle") MB, peak $(mb "$peak") MB, all up $(mb "$up") MB, ${SETTLE}s after all left $(mb "$left") MB"
    python3 - "$out" "$name" "$idle" "$peak" "$up" "$left" "$load" <<'EOF'
import json, sys
out, name, idle, peak, up, left, load = sys.argv[1:]
r = json.load(open(out))
r.update(broker=name, rss_idle_kib=int(idle), rss_peak_kib=int(peak),
         rss_all_up_kib=int(up), rss_after_kib=int(left), load_before=load)
print(json.dumps(r))
EOF
}

RESULTS=()

# --- Millwright: provision the fleet, then a fresh process meets the storm.
MQTT_PORT=$(free_port)
HTTP_PORT=$(free_port)
mkdir -p "$WORK/mw"
cat >"$WORK/mw/m.toml" <<EOF
[mqtt]
bind = "127.0.0.1"
port = $MQTT_PORT
ws_port = 0
tls_port = 0
wss_port = 0
[http]
bind = "127.0.0.1"
port = $HTTP_PORT
tls_port = 0
[tls]
enabled = false
[auth]
bootstrap_admin_token = "$ADMIN_TOKEN"
[log]
level = "warn"
EOF
start_millwright() {
    "$MILLWRIGHT_BIN" serve --data-dir "$WORK/mw/data" --config "$WORK/mw/m.toml" \
        >>"$WORK/mw/serve.log" 2>&1 &
    MW_PID=$!
    PIDS+=("$MW_PID")
    wait_port "$MQTT_PORT" || { tail -20 "$WORK/mw/serve.log" >&2; exit 1; }
    wait_port "$HTTP_PORT"
}
start_millwright
log "millwright pid $MW_PID: importing $DEVICES devices with tokens"
python3 - "$DEVICES" >"$WORK/devices.csv" <<'EOF'
import sys
print("id,name,type,labels,groups")
for i in range(int(sys.argv[1])):
    print(f"storm-{i:05d},storm {i},sensor,,")
EOF
timeout 300 "$MILLWRIGHT_BIN" device import --tokens --url "http://127.0.0.1:$HTTP_PORT" \
    --token "$ADMIN_TOKEN" "$WORK/devices.csv" >"$WORK/import.out"
grep -E '^storm-[0-9]+,' "$WORK/import.out" | cut -d, -f1,2 >"$WORK/creds.csv"
if [ "$(wc -l <"$WORK/creds.csv")" -ne "$DEVICES" ]; then
    log "import gave $(wc -l <"$WORK/creds.csv") tokens; its output:"
    head -5 "$WORK/import.out" >&2
    exit 1
fi
# The blip: the server restarts too, with an empty verification cache.
kill "$MW_PID"
wait "$MW_PID" 2>/dev/null || true
start_millwright
sleep 2
for round in $(seq "$ROUNDS"); do
    RESULTS+=("$(storm "millwright#$round" "$MW_PID" "$MQTT_PORT")")
done
kill "$MW_PID"
wait "$MW_PID" 2>/dev/null || true

# --- Mosquitto: the same users and passwords in a password file.
if [ "${SKIP_MOSQUITTO:-0}" != 1 ]; then
    python3 - "$WORK/creds.csv" >"$WORK/passwd" <<'EOF'
# mosquitto_passwd's format (2.0): $7$<iterations>$<salt>$<PBKDF2-SHA512>,
# 101 iterations, 12-byte salt, standard base64.
import base64, hashlib, os, sys
for line in open(sys.argv[1]):
    user, pw = line.strip().split(",", 1)
    salt = os.urandom(12)
    h = hashlib.pbkdf2_hmac("sha512", pw.encode(), salt, 101)
    print(f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(h).decode()}")
EOF
    MQ_PORT=$(free_port)
    mkdir -p "$WORK/mq"
    cat >"$WORK/mq/mosquitto.conf" <<EOF
listener $MQ_PORT 127.0.0.1
user $(id -un)
allow_anonymous false
password_file $WORK/passwd
max_connections -1
persistence false
log_dest stderr
log_type error
log_type warning
EOF
    mosquitto -c "$WORK/mq/mosquitto.conf" 2>"$WORK/mq/broker.log" &
    MQ_PID=$!
    PIDS+=("$MQ_PID")
    wait_port "$MQ_PORT" || { cat "$WORK/mq/broker.log" >&2; exit 1; }
    sleep 2
    for round in $(seq "$ROUNDS"); do
        RESULTS+=("$(storm "mosquitto#$round" "$MQ_PID" "$MQ_PORT")")
    done
fi

# --- Report.
report() {
    python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
mb = lambda k: "%.1f MB" % (k / 1024)
print("| broker | devices up | conn/s | RSS idle | RSS peak (VmHWM) | RSS all up | RSS after all left | load before |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
        r["broker"], r["connected"], r["devices"], format(round(r["connections_per_sec"]), ","),
        mb(r["rss_idle_kib"]), mb(r["rss_peak_kib"]), mb(r["rss_all_up_kib"]),
        mb(r["rss_after_kib"]), r["load_before"]))
print()
for r in rows:
    print(json.dumps(r))
'
}
printf '%s\n' "${RESULTS[@]}" | report
