#!/usr/bin/env bash
# Starts a simulated 3-node UMS cluster and a balancer with its admin API on loopback, moves the
# cluster into a rolling update (ums1 installs 12.07.100), then has headless Chromium load the
# dashboard with the token in the URL fragment: it saves a screenshot and checks the rendered page
# shows the three nodes and "1 of 3 servers updated".
#
#   scripts/dashboard-screenshot.sh [OUTPUT.png]
#
# Environment: BIN (folder with ums-balancer and ums-node-sim; default .build/debug, built if
# missing). Installs Debian's chromium if it is not there. Everything it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-${TMPDIR:-/tmp}/ums-balancer-dashboard.png}"
bin="${BIN:-.build/debug}"
if [ ! -x "$bin/ums-balancer" ] || [ ! -x "$bin/ums-node-sim" ]; then
    swift build --product ums-balancer
    swift build --product ums-node-sim
    bin=.build/debug
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
device_port=$(free_port)
console_port=$(free_port)
control_port=$(free_port)
listen_port=$(free_port)
admin_port=$(free_port)
token="dashboard-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$token" >"$work/admin.token"
chmod 600 "$work/admin.token"

mkdir -p "$work/data"
# One after the other: the nodes share productive.sqlite, and two opening it at the same instant
# can meet "database is locked" while switching it to WAL.
for i in 1 2 3; do
    "$bin/ums-node-sim" --id "ums$i" --host "127.0.0.1$i" --device-port "$device_port" \
        --console-port "$console_port" --control-port "$control_port" --data-dir "$work/data" \
        --version 12.06.100 >"$work/ums$i.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        grep -q "listening" "$work/ums$i.log" && break
        sleep 0.1
    done
done

cat >"$work/ums-balancer.yaml" <<YAML
listeners:
  - { name: devices, bind: 127.0.0.1:$listen_port, backend_port: $device_port, class: device }
nodes:
  - { id: ums1, host: 127.0.0.11 }
  - { id: ums2, host: 127.0.0.12 }
  - { id: ums3, host: 127.0.0.13 }
health: { interval: 200ms, timeout: 500ms, rise: 1, fall: 2 }
status: { url: "http://{host}:$control_port/status" }
reconnect: { url: "http://{host}:$control_port/control/reconnect" }
state: { path: state.sqlite }
admin: { bind: 127.0.0.1:$admin_port, token_file: admin.token }
shutdown_grace: 2s
YAML
"$bin/ums-balancer" run --config "$work/ums-balancer.yaml" >"$work/balancer.log" 2>&1 &
pids+=($!)

admin="http://127.0.0.1:$admin_port"
api() { curl -fsS -H "Authorization: Bearer $token" "$@"; }
wait_for() {  # wait_for DESCRIPTION COMMAND...
    local what="$1"
    shift
    for _ in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "timed out waiting for $what" >&2
    tail -n 5 "$work"/*.log >&2
    exit 1
}
wait_for "the admin API" api "$admin/status"
wait_for "all nodes up" bash -c "curl -fsS -H 'Authorization: Bearer $token' $admin/status | grep -vq '\"health\":\"down\"'"

# The admin runs the installer on ums1: installing for a second, then update mode on 12.07.100.
curl -fsS -X POST "http://127.0.0.11:$control_port/control/install?version=12.07.100&seconds=1" >/dev/null
wait_for "ums1 updated" bash -c "curl -fsS -H 'Authorization: Bearer $token' $admin/status | grep -q '\"updated\":1'"
# Some history for the events table: an operator drains ums3 and resumes it.
api -X POST "$admin/nodes/ums3/drain" >/dev/null
api -X POST "$admin/nodes/ums3/resume" >/dev/null
sleep 0.5

url="$admin/#token=$token"
chrome=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,900
    --virtual-time-budget=5000)
"${chrome[@]}" --screenshot="$out" "$url" >/dev/null 2>&1
"${chrome[@]}" --dump-dom "$url" 2>/dev/null >"$work/dom.html"

failed=0
for text in '>ums1<' '>ums2<' '>ums3<' '1 of 3 servers updated' '>update<' 'in-progress' 'active -&gt; draining'; do
    if grep -q -- "$text" "$work/dom.html"; then
        echo "ok: the dashboard shows $text"
    else
        echo "MISSING: the dashboard does not show $text" >&2
        failed=1
    fi
done
# Without the token the page asks for it and shows no data.
"${chrome[@]}" --dump-dom "$admin/" 2>/dev/null >"$work/anonymous.html"
if grep -q 'id="login"[^>]*display: block' "$work/anonymous.html" && ! grep -q '>ums1<' "$work/anonymous.html"; then
    echo "ok: without a token the dashboard asks for one and shows no data"
else
    echo "WRONG: without a token the dashboard does not ask for one, or shows data" >&2
    failed=1
fi
if grep -q "$token" "$work/dom.html"; then
    echo "LEAK: the token is in the page" >&2
    failed=1
fi
[ -s "$out" ] || { echo "no screenshot written" >&2; exit 1; }
echo "screenshot: $out"
exit "$failed"
