#!/usr/bin/env bash
# Identity figures behind BENCHMARKS.md: bulk import of 10,000 devices
# through the CLI/API, and new MQTT-over-TLS connections per second with
# client certificates (mTLS), Millwright versus Mosquitto, same certificates
# (made here with openssl: an EC P-256 CA, a server certificate for
# localhost/127.0.0.1, a client certificate CN=bench-dev).
#
# Environment (optional): MILLWRIGHT_BIN (default target/release/millwright),
# TLS_BENCH (default target/release/examples/tls_connect), CONNECTIONS
# (default 5000), CONCURRENCY (default 32), DEVICES (default 10000).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MILLWRIGHT_BIN=${MILLWRIGHT_BIN:-$ROOT/target/release/millwright}
TLS_BENCH=${TLS_BENCH:-$ROOT/target/release/examples/tls_connect}
CONNECTIONS=${CONNECTIONS:-5000}
CONCURRENCY=${CONCURRENCY:-32}
DEVICES=${DEVICES:-10000}
[ -x "$TLS_BENCH" ] || (cd "$ROOT" && cargo build --release -j2 -p bench --example tls_connect >&2)
[ -x "$MILLWRIGHT_BIN" ] || (cd "$ROOT" && cargo build --release -j2 -p millwright >&2)

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

cd "$WORK"
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=Bench CA" -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 -extfile server.ext -out server.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out dev.key 2>/dev/null
openssl req -new -key dev.key -subj "/CN=bench-dev" -out dev.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > dev.ext
openssl x509 -req -in dev.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -sha256 -extfile dev.ext -out dev.pem 2>/dev/null
# rustls wants PKCS#8 or SEC1; openssl's EC keys are SEC1: fine for both.

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)" >&2

# ---- Millwright
MQ=$(free_port); TLSP=$(free_port); HTTP=$(free_port)
TOKEN=bench-admin-token-0123456789
cat > mw.toml <<TOML
[mqtt]
bind = "127.0.0.1"
port = $MQ
ws_port = 0
tls_port = $TLSP
wss_port = 0
max_connections_per_device = 0
[http]
bind = "127.0.0.1"
port = $HTTP
tls_port = 0
max_body_bytes = 67108864
[tls]
ca_cert_file = "$WORK/ca.pem"
ca_key_file = "$WORK/ca.key"
cert_file = "$WORK/server.pem"
key_file = "$WORK/server.key"
[auth]
bootstrap_admin_token = "$TOKEN"
[log]
level = "warn"
TOML
"$MILLWRIGHT_BIN" serve --data-dir "$WORK/mw-data" --config mw.toml >mw.log 2>&1 &
PIDS+=($!)
wait_port "$HTTP"; wait_port "$TLSP"
export MILLWRIGHT_URL=http://127.0.0.1:$HTTP MILLWRIGHT_TOKEN=$TOKEN

python3 - "$DEVICES" > devices.csv <<'PY'
import sys
n = int(sys.argv[1])
print("id,name,type,labels,groups")
for i in range(n):
    print(f"m-{i:05d},Machine {i},press,line={i % 20};site=plant-1,presses;line-{i % 20}")
PY
echo "== import $DEVICES devices (CLI -> API, one transaction)" >&2
"$MILLWRIGHT_BIN" device import devices.csv 2>import.txt >/dev/null
IMPORT=$(cat import.txt)
echo "   $IMPORT" >&2
"$MILLWRIGHT_BIN" device add bench-dev --no-token >/dev/null
BENCH_TOKEN=$("$MILLWRIGHT_BIN" device add bench-tok | tail -1)

echo "== Millwright mTLS connections" >&2
MW=$("$TLS_BENCH" --port "$TLSP" --ca ca.pem --cert dev.pem --key dev.key --connections "$CONNECTIONS" --concurrency "$CONCURRENCY")
echo "   $MW" >&2
echo "== Millwright token-over-TLS connections (argon2 once, then the verification cache)" >&2
MWT=$("$TLS_BENCH" --port "$TLSP" --ca ca.pem --username bench-tok --password "$BENCH_TOKEN" --connections "$CONNECTIONS" --concurrency "$CONCURRENCY")
echo "   $MWT" >&2
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
PIDS=()

# ---- Mosquitto
MP=$(free_port)
cat > mosq.conf <<CONF
per_listener_settings false
persistence false
log_dest none
allow_anonymous false
require_certificate true
use_identity_as_username true
listener $MP 127.0.0.1
cafile $WORK/ca.pem
certfile $WORK/server.pem
keyfile $WORK/server.key
require_certificate true
use_identity_as_username true
CONF
[ "$(id -u)" -eq 0 ] && sed -i '1i user root' mosq.conf
mosquitto -c mosq.conf >mosq.log 2>&1 &
disown
PIDS+=($!)
wait_port "$MP"
echo "== Mosquitto mTLS connections" >&2
MO=$("$TLS_BENCH" --port "$MP" --ca ca.pem --cert dev.pem --key dev.key --connections "$CONNECTIONS" --concurrency "$CONCURRENCY")
echo "   $MO" >&2

python3 - "$MW" "$MO" "$IMPORT" "$MWT" <<'PY'
import json, sys
mw, mo, mwt = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[4])
print("| figure | Millwright | Mosquitto | ratio |")
print("|---|---|---|---|")
print(f"| new mTLS connections/s (handshake + CONNECT/CONNACK) | {mw['per_second']:.0f} ({mw['failed']} failed) | {mo['per_second']:.0f} ({mo['failed']} failed) | {mw['per_second']/mo['per_second']:.2f}x |")
print(f"| new TLS connections/s with a device token | {mwt['per_second']:.0f} ({mwt['failed']} failed) | - | - |")
print(f"| bulk import | {sys.argv[3]} | - | - |")
PY
