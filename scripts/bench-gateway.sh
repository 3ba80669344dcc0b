#!/usr/bin/env bash
# easgate vs nginx as device-TLS reverse proxies for ActiveSync, side by side in one run, on one
# shared backend, everything on loopback (see docs/benchmarks.md, "Gateway proxy").
#
#   bash scripts/bench-gateway.sh
#
# Per proxy, each phase on a freshly started proxy process:
#   1. memory per parked Ping: RSS before/after PARK EAS Pings held at the backend (bench-parker);
#   2. memory per idle TLS keep-alive connection (after one Sync each), IDLE of them;
#   3. throughput: wrk -t$THREADS -c$CONNS -d${DURATION}s over TLS, keep-alive, 1 KiB WBXML POST
#      in, 4 KiB WBXML out; ROUNDS rounds, proxies alternating, after a WARMUP-second run. Besides
#      req/s: proxy CPU per request, and the same divided by the backend's CPU per request in that
#      round (the backend's work per request is fixed, so this cancels the machine's speed drift).
# Prints a side-by-side table and (APPEND=1) inserts a dated block into docs/benchmarks.md.
#
# Knobs (environment):
#   PROXIES="easgate nginx"  proxies to compare, first vs second ("nginx nginx" = sanity run);
#                     "haproxy nginx" measures the issue's second anchor (HAProxy, Debian package)
#   ROUNDS=4 DURATION=20 WARMUP=5 THREADS=2 CONNS=64     throughput runs
#   PARK=5000 IDLE=5000 RATE=500                          connections held (0 skips a phase)
#   BASE_PORT=18400   backend on BASE_PORT, proxy i on BASE_PORT+10*i (+1 management)
#   DEVICE_TLS=1      0: devices speak plain HTTP to both proxies (TLS offloaded in front)
#   PARK_PLAIN=1      also measure parked Pings over plain HTTP (how the 9.8 KiB nginx anchor in
#                     shared/design/decisions.md was taken; with device TLS nginx needs ~24 KiB)
#   EASGATE_BIN=path  another easgate binary (default target/release/easgate)
#   SKIP_INSTALL=1 SKIP_BUILD=1 KEEP_TMP=1 APPEND=0|1 NGINX_ACCESS_LOG=1
# Open files: the parker needs N descriptors, a proxy 2N, the backend N; the limit here is 20,000
# per process, so N = 5000 fits (nginx gets worker_rlimit_nofile 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROXIES=${PROXIES:-"easgate nginx"}
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
PARK=${PARK:-5000}
IDLE=${IDLE:-5000}
RATE=${RATE:-500}
BASE_PORT=${BASE_PORT:-18400}
SETTLE=${SETTLE:-3}
DEVICE_TLS=${DEVICE_TLS:-1}
PARK_PLAIN=${PARK_PLAIN:-$DEVICE_TLS}
set_tls() { # 1|0: how devices reach the proxies started from now on
  if [ "$1" = 1 ]; then SCHEME=https SSL=" ssl" TLSFLAG=--tls CLIENT_TLS=true; else SCHEME=http SSL="" TLSFLAG= CLIENT_TLS=false; fi
}
set_tls "$DEVICE_TLS"
BACKEND_PORT=$BASE_PORT
EAS_QUERY='Cmd=Sync&User=u&DeviceId=dev0001&DeviceType=iPhone'

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Tools (Debian, only what is missing) and the release build.
# shellcheck source=scripts/bench-common.sh
. "$ROOT/scripts/bench-common.sh"
NEED=(nginx:nginx-light wrk:wrk ps:procps openssl:openssl curl:curl)
case " ${PROXIES:-} " in *" haproxy "*) NEED+=(haproxy:haproxy) ;; esac
bench_prepare "${NEED[@]}"
for b in bench-backend bench-parker bench-payload; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing (build benchkit)"
done

# 3. Scratch dir, cleanup of everything started.
TMP=$(mktemp -d /tmp/easgate-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.3; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget_pid() { # drop a pid that was stopped already
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  forget_pid "$p"
}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((4 * (PARK > IDLE ? PARK : IDLE) / 2 + 1000)) ] ||
  log "warning: open-file limit $(ulimit -n) may be too low for PARK=$PARK/IDLE=$IDLE"

wait_port() { # port pid
  for _ in $(seq 1 100); do
    port_busy "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# 4. Certificate (ECDSA P-256, self-signed, for the device side of both proxies), payloads.
mkdir -p "$TMP/tls" "$TMP/payload"
bench_cert "$TMP/tls/key.pem" "$TMP/tls/cert.pem"
"$BIN/bench-payload" "$TMP/payload"
REQ_BODY=$TMP/payload/sync-request-1k.wbxml

{
  bench_sync_lua "$REQ_BODY" "$EAS_QUERY"
  cat <<'EOF'

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format("WRKRESULT requests=%d duration_s=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f bytes_per_req=%.0f err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, s, summary.requests / s, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.bytes / math.max(summary.requests, 1),
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
} >"$TMP/eas.lua"

# 5. Backend.
port_busy "$BACKEND_PORT" && die "port $BACKEND_PORT busy (set BASE_PORT)"
"$BIN/bench-backend" --listen "127.0.0.1:$BACKEND_PORT" --park-timeout-s 900 --lifetime-s 3600 \
  2>"$TMP/backend.log" &
BACKEND_PID=$!
PIDS+=("$BACKEND_PID")
wait_port "$BACKEND_PORT" "$BACKEND_PID" || die "backend did not start: $(cat "$TMP/backend.log")"

# ---------------------------------------------------------------------------------------------
# Proxies. Label i (1-based) is the i-th entry of PROXIES; kind is easgate or nginx.
read -r -a KINDS <<<"$PROXIES"
[ ${#KINDS[@]} -eq 2 ] || die "PROXIES must name two proxies, e.g. \"easgate nginx\""
LABELS=()
for i in 0 1; do
  case ${KINDS[$i]} in easgate | nginx | haproxy) ;; *) die "unknown proxy ${KINDS[$i]}" ;; esac
  if [ $i = 1 ] && [ "${KINDS[1]}" = "${KINDS[0]}" ]; then LABELS+=("${KINDS[1]}#2"); else LABELS+=("${KINDS[$i]}"); fi
done
port_of() { echo $((BASE_PORT + 10 * ($1 + 1))); }

write_nginx_conf() { # dir port
  local dir=$1 port=$2 access="access_log off;"
  [ "${NGINX_ACCESS_LOG:-0}" = 1 ] && access="access_log $dir/access.log;"
  mkdir -p "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
# An ActiveSync reverse proxy as commonly deployed: TLS to devices, HTTP/1.1 keep-alive to the
# server, nothing buffered (long polls, streamed attachments).
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
  $access
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  upstream eas {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$port$SSL;
    server_name localhost;
    ssl_certificate $TMP/tls/cert.pem;
    ssl_certificate_key $TMP/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_header_timeout 120s;
    client_max_body_size 64m;
    location ~* ^/(Microsoft-Server-ActiveSync|traveler|servlet/traveler) {
      proxy_pass http://eas;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3660s;
      proxy_send_timeout 60s;
    }
    location / { return 404; }
  }
}
EOF
}

write_haproxy_conf() { # dir port
  local dir=$1 port=$2 bind="127.0.0.1:$2"
  [ "$SCHEME" = https ] && bind="$bind ssl crt $dir/cert-and-key.pem alpn http/1.1"
  (umask 077 && cat "$TMP/tls/cert.pem" "$TMP/tls/key.pem" >"$dir/cert-and-key.pem")
  cat >"$dir/haproxy.cfg" <<EOF
# The same ActiveSync reverse proxy in HAProxy: TLS to devices, HTTP/1.1 keep-alive to the
# server, two threads (as nginx's two workers above), no logging.
global
  nbthread 2
  # file descriptors ~ 2 x maxconn: stays under this machine's 20,000 per process
  maxconn 9000
defaults
  mode http
  option http-keep-alive
  timeout connect 10s
  timeout client 120s
  timeout http-request 120s
  timeout http-keep-alive 120s
  timeout server 3660s
frontend devices
  bind $bind
  option forwardfor
  http-request set-header X-Forwarded-Proto $SCHEME
  acl activesync path_reg -i ^/(Microsoft-Server-ActiveSync|traveler|servlet/traveler)
  http-request deny deny_status 404 unless activesync
  default_backend eas
backend eas
  http-reuse safe
  server s1 127.0.0.1:$BACKEND_PORT
EOF
}

write_easgate_conf() { # dir port
  local dir=$1 port=$2
  mkdir -p "$dir/data"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/management.token"
  chmod 600 "$dir/management.token"
  cat >"$dir/easgate.toml" <<EOF
# Generated by scripts/bench-gateway.sh
[sentry]
host = "localhost"
port = $((port + 1))

[listen]
devices = "127.0.0.1:$port"
management = "127.0.0.1:$((port + 1))"

[management]
token_file = "$dir/management.token"

[tls]
cert = "$TMP/tls/cert.pem"
key = "$TMP/tls/key.pem"

[activesync]
client_tls = $CLIENT_TLS
server_tls = false
health_check = false

[[activesync.service]]
name = "default"
servers = "127.0.0.1:$BACKEND_PORT"

[advanced]
# idle keep-alive connections are held ~15 s by the idle phase (nginx: keepalive_timeout 120s)
device_request_timeout_ms = 120000
drain_timeout_ms = 2000

[storage]
data_dir = "$dir/data"
EOF
}

PROXY_PID=
start_proxy() { # index -> PROXY_PID; returns 1 if it does not serve
  local i=$1 kind=${KINDS[$1]} port dir
  port=$(port_of "$i")
  dir=$TMP/p$i
  mkdir -p "$dir"
  port_busy "$port" && die "port $port busy (set BASE_PORT)"
  if [ "$kind" = nginx ]; then
    write_nginx_conf "$dir" "$port"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 &
  elif [ "$kind" = haproxy ]; then
    write_haproxy_conf "$dir" "$port"
    haproxy -f "$dir/haproxy.cfg" >"$dir/stdout.log" 2>&1 &
  else
    write_easgate_conf "$dir" "$port"
    "$EASGATE_BIN" gateway --config "$dir/easgate.toml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
  fi
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  if ! wait_port "$port" "$PROXY_PID"; then
    log "${LABELS[$i]} did not start; last log lines:"
    tail -n 5 "$dir"/*.log >&2 || true
    stop_pid "$PROXY_PID"
    return 1
  fi
  # Sanity + warm-up: a Sync through the proxy must give 200 and the backend's 4096 bytes.
  local got
  got=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code} %{size_download}' \
    -H 'Content-Type: application/vnd.ms-sync.wbxml' -H 'MS-ASProtocolVersion: 14.1' \
    -H 'Authorization: Basic dTpw' --data-binary "@$REQ_BODY" \
    "$SCHEME://localhost:$port/Microsoft-Server-ActiveSync?$EAS_QUERY" --resolve "localhost:$port:127.0.0.1" || true)
  if [ "$got" != "200 4096" ]; then
    log "${LABELS[$i]}: sanity POST gave '$got' (want '200 4096')"
    tail -n 5 "$dir"/*.log >&2 || true
    stop_pid "$PROXY_PID"
    return 1
  fi
  return 0
}

tree_pids() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }
rss_kib() { # pid (+ children) -> summed VmRSS, KiB
  local s=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
cpu_ticks() { # pid (+ children) -> utime+stime, clock ticks
  local s=0 p v
  for p in $(tree_pids "$1"); do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}' || true)
    s=$((s + ${v:-0}))
  done
  echo "$s"
}
field() { { grep -o "$1=[^ ]*" <<<"$2" || true; } | head -n1 | cut -d= -f2; }
fmt() { awk -v x="$1" -v d="${2:-1}" 'BEGIN { if (x == "" || x == "n/a") print "n/a"; else printf "%.*f\n", d, x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2fx\n", a / b }'; }
CLK_TCK=$(getconf CLK_TCK)

declare -A R # results: R[label,key]

# Phase: hold N connections (mode ping|idle) and read the proxy's RSS growth.
hold_once() { # index mode count [key]
  local i=$1 mode=$2 n=$3 label=${LABELS[$1]} before after line out pp
  local key=${4:-$2}
  start_proxy "$i" || { R[$label,$key]=n/a; return 0; }
  sleep 1
  before=$(rss_kib "$PROXY_PID")
  out=$TMP/parker-$i-$mode.out
  "$BIN/bench-parker" --target "127.0.0.1:$(port_of "$i")" $TLSFLAG --mode "$mode" --count "$n" \
    --rate "$RATE" --ready-timeout-s $((n / RATE + 60)) --hold-s 300 \
    --backend "127.0.0.1:$BACKEND_PORT" >"$out" 2>"$TMP/parker-$i-$mode.err" &
  pp=$!
  PIDS+=("$pp")
  for _ in $(seq 1 $((n / RATE + 100))); do
    grep -q '^READY' "$out" 2>/dev/null && break
    kill -0 "$pp" 2>/dev/null || break
    sleep 1
  done
  line=$(grep '^READY' "$out" || echo "READY none")
  if ! kill -0 "$pp" 2>/dev/null; then
    local rc=0
    wait "$pp" || rc=$?
    log "$label $key: bench-parker ended early (exit $rc): $(tail -n 2 "$TMP/parker-$i-$mode.err" | tr '\n' ' ')"
  fi
  sleep "$SETTLE"
  after=$(rss_kib "$PROXY_PID")
  local held
  if [ "$mode" = ping ]; then held=$(field parked "$line"); else held=$(field idle "$line"); fi
  log "$label $key: $line"
  log "$label $key: RSS before ${before} KiB, after ${after} KiB"
  stop_pid "$pp"
  stop_pid "$PROXY_PID"
  R[$label,$key,before]=$before
  R[$label,$key,after]=$after
  R[$label,$key,held]=${held:-0}
  R[$label,$key,backend]=$(field backend_parked "$line")
  if [ "${held:-0}" -gt 0 ]; then
    R[$label,$key]=$(awk -v a="$after" -v b="$before" -v n="$held" 'BEGIN { printf "%.2f", (a - b) / n }')
  else
    R[$label,$key]=n/a
  fi
  # Let the backend see the closed upstream connections go before the next phase.
  sleep 2
  [ "${held:-0}" = "$n" ]
}

hold_phase() { # index mode count [key]: one retry on a fresh proxy if not all N were held
  local key=${4:-$2}
  hold_once "$@" && return 0
  log "warning: ${LABELS[$1]} $key: only ${R[${LABELS[$1]},$key,held]:-0} of $3 held; retrying once"
  hold_once "$@" || log "warning: ${LABELS[$1]} $key: only ${R[${LABELS[$1]},$key,held]:-0} of $3 held"
}

# Phase: throughput.
wrk_phase() { # index round
  local i=$1 r=$2 label=${LABELS[$1]} url t0 t1 b0 b1 line
  start_proxy "$i" || { R[$label,rps,$r]=n/a; return 0; }
  url="$SCHEME://127.0.0.1:$(port_of "$i")/Microsoft-Server-ActiveSync?$EAS_QUERY"
  wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$TMP/eas.lua" "$url" >/dev/null 2>&1 || true
  t0=$(cpu_ticks "$PROXY_PID")
  b0=$(cpu_ticks "$BACKEND_PID")
  line=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" -s "$TMP/eas.lua" "$url" 2>&1 | grep '^WRKRESULT' || echo "WRKRESULT none")
  t1=$(cpu_ticks "$PROXY_PID")
  b1=$(cpu_ticks "$BACKEND_PID")
  R[$label,rss_load,$r]=$(rss_kib "$PROXY_PID")
  stop_pid "$PROXY_PID"
  # The backend does the same work per request behind either proxy: its CPU per request is this
  # round's yardstick for the machine's speed, which drifts by up to 2x within minutes here.
  R[$label,norm,$r]=$(awk -v a="$t0" -v b="$t1" -v c="$b0" -v d="$b1" \
    'BEGIN { if (d > c) printf "%.3f", (b - a) / (d - c); else print "n/a" }')
  log "$label round $r: $line proxy_cpu_per_backend_cpu=${R[$label,norm,$r]:-?}"
  local errs bpr
  errs=$(awk -v l="$line" 'BEGIN { n = split(l, kv, " "); s = 0; ok = 0
    for (j = 1; j <= n; j++) if (kv[j] ~ /^err_/) { split(kv[j], p, "="); s += p[2]; ok = 1 }
    if (ok) print s; else print "?" }')
  bpr=$(field bytes_per_req "$line")
  if [ "$errs" != 0 ] || [ "${bpr:-0}" -lt 4096 ] 2>/dev/null; then
    log "warning: $label round $r: $errs errors, $bpr bytes/response (want 0 errors, >= 4096)"
  fi
  R[$label,rps,$r]=$(field rps "$line")
  R[$label,p50,$r]=$(field p50_ms "$line")
  R[$label,p99,$r]=$(field p99_ms "$line")
  R[$label,errs,$r]=$errs
  R[$label,cpu,$r]=$(awk -v a="$t0" -v b="$t1" -v k="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / k }')
  R[$label,rpcpu,$r]=$(awk -v n="$(field requests "$line")" -v a="$t0" -v b="$t1" -v k="$CLK_TCK" \
    'BEGIN { c = (b - a) / k; if (c > 0) printf "%.0f", n / c; else print "n/a" }')
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u '+%Y-%m-%d %H:%M UTC')
log "proxies: ${LABELS[0]} vs ${LABELS[1]}; backend 127.0.0.1:$BACKEND_PORT; load $LOAD_BEFORE"

# Direct backend rate (plain HTTP), for scale.
DIRECT=$(wrk -t"$THREADS" -c"$CONNS" -d"$((DURATION / 2 > 5 ? DURATION / 2 : 5))s" -s "$TMP/eas.lua" \
  "http://127.0.0.1:$BACKEND_PORT/Microsoft-Server-ActiveSync?$EAS_QUERY" 2>&1 | grep '^WRKRESULT' || echo none)
DIRECT_RPS=$(field rps "$DIRECT")
log "backend direct (plain): $DIRECT"

for i in 0 1; do
  if [ "$PARK" -gt 0 ]; then hold_phase "$i" ping "$PARK"; fi
  if [ "$PARK" -gt 0 ] && [ "$PARK_PLAIN" = 1 ] && [ "$DEVICE_TLS" = 1 ]; then
    set_tls 0
    hold_phase "$i" ping "$PARK" ping_plain
    set_tls 1
  fi
  if [ "$IDLE" -gt 0 ]; then hold_phase "$i" idle "$IDLE"; fi
done
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
  for i in $order; do wrk_phase "$i" "$r"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.
A=${LABELS[0]}
B=${LABELS[1]}
mean() { # label key -> mean over rounds (n/a if any round is n/a)
  local vals=() r
  for r in $(seq 1 "$ROUNDS"); do vals+=("${R[$1,$2,$r]:-n/a}"); done
  printf '%s\n' "${vals[@]}" | awk '/n\/a/ { bad = 1 } { s += $1; n++ } END { if (bad || n == 0) print "n/a"; else printf "%.3f\n", s / n }'
}
RATIOS=()
for r in $(seq 1 "$ROUNDS"); do RATIOS+=("$(ratio "${R[$A,rps,$r]:-n/a}" "${R[$B,rps,$r]:-n/a}")"); done

REPORT=$TMP/report.md
{
  echo "#### $START — ${A} vs ${B}"
  echo
  echo "\`PROXIES=\"$PROXIES\" DEVICE_TLS=$DEVICE_TLS ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS PARK=$PARK IDLE=$IDLE$( [ "${NGINX_ACCESS_LOG:-0}" = 1 ] && echo " NGINX_ACCESS_LOG=1") bash scripts/bench-gateway.sh\`"
  echo "($(nproc) cores, load average before: $LOAD_BEFORE, after: $LOAD_AFTER; $(nginx -v 2>&1 | sed 's/.*: //');$(case " $PROXIES " in *" haproxy "*) haproxy -v 2>/dev/null | head -n1 | awk '{print " haproxy/" $3 ";"}' ;; esac) $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2); easgate $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty'), binary built $(date -u -r "$EASGATE_BIN" '+%H:%M UTC' 2>/dev/null || echo '?'))"
  echo
  echo "| | $A | $B | $A / $B |"
  echo "|---|---:|---:|---:|"
  [ "$ROUNDS" -gt 0 ] && echo "| req/s, device $SCHEME, mean of $ROUNDS | $(fmt "$(mean "$A" rps)" 0) | $(fmt "$(mean "$B" rps)" 0) | $(ratio "$(mean "$A" rps)" "$(mean "$B" rps)") |"
  for r in $(seq 1 "$ROUNDS"); do
    [ "$ROUNDS" -gt 0 ] && echo "| req/s, round $r | $(fmt "${R[$A,rps,$r]:-n/a}" 0) | $(fmt "${R[$B,rps,$r]:-n/a}" 0) | ${RATIOS[$((r - 1))]} |"
  done
  [ "$ROUNDS" -gt 0 ] && echo "| latency p50 / p99, ms (mean) | $(fmt "$(mean "$A" p50)" 2) / $(fmt "$(mean "$A" p99)" 2) | $(fmt "$(mean "$B" p50)" 2) / $(fmt "$(mean "$B" p99)" 2) | |"
  [ "$ROUNDS" -gt 0 ] && echo "| requests per proxy CPU-second (mean) | $(fmt "$(mean "$A" rpcpu)" 0) | $(fmt "$(mean "$B" rpcpu)" 0) | $(ratio "$(mean "$A" rpcpu)" "$(mean "$B" rpcpu)") |"
  [ "$ROUNDS" -gt 0 ] && echo "| proxy CPU per request ÷ backend CPU per request (mean; machine-speed-normalised) | $(fmt "$(mean "$A" norm)" 2) | $(fmt "$(mean "$B" norm)" 2) | $(ratio "$(mean "$A" norm)" "$(mean "$B" norm)") |"
  [ "$ROUNDS" -gt 0 ] && echo "| proxy RSS under load, MiB | $(awk -v x="${R[$A,rss_load,1]:-0}" 'BEGIN{printf "%.1f", x/1024}') | $(awk -v x="${R[$B,rss_load,1]:-0}" 'BEGIN{printf "%.1f", x/1024}') | |"
  if [ "$PARK" -gt 0 ]; then
    echo "| KiB per parked Ping ($PARK), $SCHEME | $(fmt "${R[$A,ping]}" 2) | $(fmt "${R[$B,ping]}" 2) | $(ratio "${R[$A,ping]}" "${R[$B,ping]}") |"
    echo "| parked (parker / backend) | ${R[$A,ping,held]:-0} / ${R[$A,ping,backend]:-?} | ${R[$B,ping,held]:-0} / ${R[$B,ping,backend]:-?} | |"
    if [ "$PARK_PLAIN" = 1 ] && [ "$DEVICE_TLS" = 1 ]; then
      echo "| KiB per parked Ping ($PARK), http (TLS offloaded) | $(fmt "${R[$A,ping_plain]}" 2) | $(fmt "${R[$B,ping_plain]}" 2) | $(ratio "${R[$A,ping_plain]}" "${R[$B,ping_plain]}") |"
    fi
    echo "| RSS before → with Pings, MiB | $(awk -v a="${R[$A,ping,before]:-0}" -v b="${R[$A,ping,after]:-0}" 'BEGIN{printf "%.1f → %.1f", a/1024, b/1024}') | $(awk -v a="${R[$B,ping,before]:-0}" -v b="${R[$B,ping,after]:-0}" 'BEGIN{printf "%.1f → %.1f", a/1024, b/1024}') | |"
  fi
  if [ "$IDLE" -gt 0 ]; then
    echo "| KiB per idle keep-alive connection, $SCHEME ($IDLE) | $(fmt "${R[$A,idle]}" 2) | $(fmt "${R[$B,idle]}" 2) | $(ratio "${R[$A,idle]}" "${R[$B,idle]}") |"
  fi
  echo "| backend direct, plain HTTP, req/s | $(fmt "${DIRECT_RPS:-n/a}" 0) | | |"
  echo
  echo "Errors in the timed wrk runs: $A $(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${R[$A,errs,$r]:-n/a}"; done)/ $B $(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${R[$B,errs,$r]:-n/a}"; done)(per round)."
} >"$REPORT"

echo
cat "$REPORT"
echo

append=${APPEND:-}
if [ -z "$append" ]; then
  case " $PROXIES " in *" easgate "*" nginx "* | *" nginx "*" easgate "*) append=1 ;; *) append=0 ;; esac
fi
if [ "$append" = 1 ]; then
  DOC=$ROOT/docs/benchmarks.md
  mkdir -p "$(dirname "$DOC")"
  [ -f "$DOC" ] || printf '# Benchmarks\n' >"$DOC"
  grep -q '^## Gateway proxy' "$DOC" || printf '\n## Gateway proxy\n' >>"$DOC"
  # Insert at the end of the "## Gateway proxy" section (before the next "## " heading or EOF).
  awk -v rep="$REPORT" '
    function dump(  l) { print ""; while ((getline l < rep) > 0) print l; close(rep); print ""; done = 1 }
    /^## / { if (in_sec && !done) dump(); in_sec = ($0 ~ /^## Gateway proxy/) }
    { print }
    END { if (in_sec && !done) dump() }
  ' "$DOC" >"$TMP/doc.new"
  cat "$TMP/doc.new" >"$DOC"
  log "result block added to docs/benchmarks.md (Gateway proxy section)"
fi
