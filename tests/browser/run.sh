#!/usr/bin/env bash
# Browser end-to-end tests of the dashboard: starts `millwright serve
# --demo` on free ports (TLS off) in a temporary directory, runs the node
# tests against it with Debian's chromium through playwright-core, saves
# screenshots to tests/browser/artifacts/, and stops the server.
#
# Env: MILLWRIGHT_BIN (default target/debug/millwright), CHROMIUM
# (default /usr/bin/chromium). Installs chromium (apt) and playwright-core
# (npm ci) when missing.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${MILLWRIGHT_BIN:-$ROOT/target/debug/millwright}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export ARTIFACTS="$HERE/artifacts"

if [ ! -x "$BIN" ]; then
  echo "run.sh: no millwright binary at $BIN (cargo build -p millwright)" >&2
  exit 2
fi

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "run.sh: installing $* with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "run.sh: $* missing and cannot be installed (need root and apt-get)" >&2
    exit 2
  fi
}
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
[ -x "$CHROMIUM" ] || apt_install chromium
if [ ! -f "$HERE/node_modules/playwright-core/package.json" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi

TMP="$(mktemp -d)"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
  fi
  if [ "${KEEP_TMP:-}" = "" ]; then rm -rf "$TMP"; else echo "run.sh: kept $TMP" >&2; fi
}
trap cleanup EXIT

# Two free ports (bound then released; the server binds them right after).
read -r MQTT_PORT HTTP_PORT < <(node -e '
  const net = require("net");
  const one = () => new Promise((ok) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); }); });
  Promise.all([one(), one()]).then((p) => console.log(p.join(" ")));')

cat > "$TMP/millwright.toml" <<TOML
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
TOML

mkdir -p "$ARTIFACTS"
"$BIN" serve --data-dir "$TMP/data" --config "$TMP/millwright.toml" --demo --demo-machines 20 \
  >"$TMP/server.log" 2>&1 &
PID=$!

# The demo login is printed once the demo fleet is set up.
PASSWORD=""
for _ in $(seq 300); do
  PASSWORD="$(sed -n 's/.*login: demo \/ \([0-9a-f]*\).*/\1/p' "$TMP/server.log" | head -1)"
  [ -n "$PASSWORD" ] && break
  if ! kill -0 "$PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$PASSWORD" ]; then
  echo "run.sh: the server printed no demo login; its log:" >&2
  tail -50 "$TMP/server.log" >&2
  exit 1
fi

export MW_URL="http://127.0.0.1:$HTTP_PORT" MW_USER=demo MW_PASSWORD="$PASSWORD"
status=0
(cd "$HERE" && timeout 110 node --test --test-concurrency=1 --test-reporter=spec dashboard.test.mjs) || status=$?
cp "$TMP/server.log" "$ARTIFACTS/server.log" 2>/dev/null || true
if [ "$status" != 0 ]; then
  echo "run.sh: browser tests failed (exit $status); screenshots and server.log in $ARTIFACTS" >&2
fi
exit "$status"
