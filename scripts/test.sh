#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: installs what the tests
# need, then runs format check, clippy, the Rust tests and the end-to-end
# suite with real clients (mosquitto_pub/sub, paho-mqtt) against Millwright.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The dashboard's browser tests: Debian's chromium driven by playwright-core.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# /metrics is checked with promtool and scraped by a real Prometheus.
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The Prometheus query API is checked against VictoriaMetrics' answers.
command -v victoria-metrics >/dev/null 2>&1 || need_apt+=(victoria-metrics)
if [ ${#need_apt[@]} -gt 0 ]; then
    step "installing ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The distribution's mosquitto and prometheus services are not wanted: tests
# start their own.
if command -v systemctl >/dev/null 2>&1; then
    systemctl stop mosquitto prometheus victoria-metrics >/dev/null 2>&1 || true
fi

if ! python3 -c 'import paho.mqtt, pytest, cryptography, influxdb, influxdb_client' >/dev/null 2>&1; then
    step "installing paho-mqtt, pytest, cryptography and the InfluxDB clients"
    python3 -m pip install -q --disable-pip-version-check 'paho-mqtt>=2,<3' 'pytest>=7' 'cryptography>=41' \
        'influxdb>=5' 'influxdb-client>=1.40' 2>&1 | grep -v "running pip as the 'root'" || true
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -j2 -- -D warnings

step "cargo test"
cargo test --workspace -j2

step "PromQL answers against VictoriaMetrics"
cargo test -p promql --test victoria_metrics -j2 -- --ignored

step "build the binary for the end-to-end suite"
cargo build -p millwright -j2

step "end-to-end suite against Millwright"
E2E_BROKER=millwright MILLWRIGHT_BIN="$PWD/target/debug/millwright" python3 -m pytest tests/e2e -q

step "dashboard in a browser (chromium + playwright-core)"
MILLWRIGHT_BIN="$PWD/target/debug/millwright" ./tests/browser/run.sh

step "end-to-end suite against Mosquitto (checks the suite itself against the reference broker)"
E2E_BROKER=mosquitto python3 -m pytest tests/e2e -q
