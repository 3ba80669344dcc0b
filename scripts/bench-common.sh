# Shared by the benchmark scripts (sourced, not run): tools, build, certificate, ports.
# The sourcing script defines log() and sets ROOT.

# shellcheck source=scripts/apt.sh
. "$ROOT/scripts/apt.sh"

# bench_prepare command:package ...: installs (Debian) the packages of missing commands unless
# SKIP_INSTALL=1, builds easgate and benchkit in release unless SKIP_BUILD=1, sets BIN and
# EASGATE_BIN.
bench_prepare() {
  if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    local need=() spec
    for spec in "$@"; do
      command -v "${spec%%:*}" >/dev/null 2>&1 || need+=("${spec#*:}")
    done
    apt_install ${need[@]+"${need[@]}"}
  fi
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p easgate -p benchkit"
    cargo build --release -p easgate -p benchkit >&2
  fi
  BIN=$ROOT/target/release
  EASGATE_BIN=${EASGATE_BIN:-$BIN/easgate}
}

# bench_cert key cert: a self-signed ECDSA P-256 certificate for localhost / 127.0.0.1.
bench_cert() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  openssl req -x509 -new -key "$1" -out "$2" -days 7 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
  chmod 600 "$1"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# bench_sync_lua body query: the wrk Lua lines of the benchmarks' request (an EAS Sync POST as an
# iPhone on protocol 14.1 sends it); the caller appends its own done().
bench_sync_lua() {
  cat <<LUA
-- EAS Sync POST, 1 KiB WBXML, as an iPhone on protocol 14.1 sends it.
local f = assert(io.open("$1", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.path = "/Microsoft-Server-ActiveSync?$2"
wrk.headers["Host"] = "localhost"
wrk.headers["Content-Type"] = "application/vnd.ms-sync.wbxml"
wrk.headers["MS-ASProtocolVersion"] = "14.1"
wrk.headers["Authorization"] = "Basic dTpw"
wrk.headers["User-Agent"] = "Apple-iPhone9C1/1402.72"
wrk.headers["X-MS-PolicyKey"] = "3915816436"
LUA
}
