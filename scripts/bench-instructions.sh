#!/usr/bin/env bash
# CPU instructions per proxied request, counted by valgrind's callgrind: a figure that does not
# move with the machine's load (req/s here swings ±30 % between runs), so a change to the request
# path can be judged in one run. Same request as scripts/bench-gateway.sh (device TLS, 1 KiB WBXML
# Sync POST in, 4 KiB out, keep-alive, audit lines to a file), at low rate under valgrind.
#
#   bash scripts/bench-instructions.sh          # prints instructions/request and the top functions
#
# Knobs: DURATION=15 (s counted), CONNS=8, TOP=25 (functions listed), BASE_PORT=18600,
# EASGATE_BIN=path, SKIP_INSTALL=1, SKIP_BUILD=1, KEEP_TMP=1.
# Crypto is over-counted: valgrind runs ring's AES-NI code path, not the VAES one used natively.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-15}
CONNS=${CONNS:-8}
TOP=${TOP:-25}
BASE_PORT=${BASE_PORT:-18600}
log() { printf '[instructions] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"
bench_prepare valgrind:valgrind callgrind_control:valgrind wrk:wrk openssl:openssl

TMP=$(mktemp -d /tmp/easgate-instr.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
wait_port() { # port pid seconds
  for _ in $(seq 1 $(($3 * 5))); do
    port_busy "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

BACKEND=$BASE_PORT
PROXY=$((BASE_PORT + 10))
port_busy "$BACKEND" && die "port $BACKEND busy (set BASE_PORT)"
mkdir -p "$TMP/payload" "$TMP/data"
bench_cert "$TMP/key.pem" "$TMP/cert.pem"
"$BIN/bench-payload" "$TMP/payload"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TMP/token"
chmod 600 "$TMP/token"
cat >"$TMP/easgate.toml" <<EOF
[sentry]
host = "localhost"
port = $((PROXY + 1))
[listen]
devices = "127.0.0.1:$PROXY"
management = "127.0.0.1:$((PROXY + 1))"
[management]
token_file = "$TMP/token"
[tls]
cert = "$TMP/cert.pem"
key = "$TMP/key.pem"
[activesync]
client_tls = true
server_tls = false
health_check = false
[[activesync.service]]
name = "default"
servers = "127.0.0.1:$BACKEND"
[advanced]
device_request_timeout_ms = 120000
drain_timeout_ms = 2000
[storage]
data_dir = "$TMP/data"
EOF
{
  bench_sync_lua "$TMP/payload/sync-request-1k.wbxml" "Cmd=Sync&User=u&DeviceId=dev0001&DeviceType=iPhone"
  cat <<'EOF'
function done(summary, latency, requests)
  io.write(string.format("WRKREQUESTS %d\n", summary.requests))
end
EOF
} >"$TMP/eas.lua"

"$BIN/bench-backend" --listen "127.0.0.1:$BACKEND" --park-timeout-s 900 --lifetime-s 3600 \
  2>"$TMP/backend.log" &
PIDS+=($!)
wait_port "$BACKEND" "${PIDS[0]}" 20 || die "backend did not start"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/callgrind.out" \
  "$EASGATE_BIN" gateway --config "$TMP/easgate.toml" >"$TMP/audit.log" 2>"$TMP/gateway.log" &
GW=$!
PIDS+=("$GW")
wait_port "$PROXY" "$GW" 60 || die "easgate did not start under valgrind: $(tail -5 "$TMP/gateway.log")"
URL="https://127.0.0.1:$PROXY/"
log "warm-up (TLS handshakes and pools are not counted)"
wrk -t1 -c"$CONNS" -d5s -s "$TMP/eas.lua" "$URL" >/dev/null
callgrind_control -i on "$GW" >/dev/null
N=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$TMP/eas.lua" "$URL" | awk '/^WRKREQUESTS/ {print $2}')
callgrind_control -i off "$GW" >/dev/null
kill -TERM "$GW"
for _ in $(seq 1 50); do kill -0 "$GW" 2>/dev/null || break; sleep 0.2; done
[ "${N:-0}" -gt 0 ] || die "no requests counted"
IR=$(callgrind_annotate "$TMP/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
LABEL="easgate $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
[ "$EASGATE_BIN" = "$BIN/easgate" ] || LABEL=$EASGATE_BIN
echo "$LABEL: $N requests counted, $((IR / N)) instructions per request"
echo "top functions, instructions per request, inclusive of callees:"
callgrind_annotate --inclusive=yes "$TMP/callgrind.out" 2>/dev/null | sed -n '/file:function/,$p' |
  grep -E '(gateway|eas|wbxml)::' | grep '\[/' | head -n "$TOP" |
  awk -v n="$N" '{x = $1; gsub(",", "", x); $1 = ""; $2 = ""; sub(/^ *[^:]*:/, ""); sub(/ \[.*$/, ""); printf "%8d  %s\n", x / n, $0}'
