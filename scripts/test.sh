#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need, brings up the
# real ActiveSync peer (SOGo), then runs format, lint, unit, property, end-to-end and interop tests.
#   bash scripts/test.sh
# Knobs: EASGATE_SKIP_INSTALL=1 (packages already there), EASGATE_SKIP_SOGO=1 (no interop peer;
# the interop tests then fail unless EASGATE_INTEROP=skip).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${EASGATE_SHARED:-$ROOT/../shared}
START=$(date +%s)
log() { printf '[test +%ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }

# 1. System packages (Debian). libwbxml2-utils: the reference codec the WBXML tests compare with;
#    openssl: the attachment tests decrypt CMS with the real `openssl cms -decrypt`; gcc and
#    libc6-dev: ring and mimalloc compile C code.
if [ "${EASGATE_SKIP_INSTALL:-0}" != 1 ]; then
  need=()
  for p in libwbxml2-utils openssl pkg-config ca-certificates curl gcc libc6-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  # shellcheck source=scripts/apt.sh
  . "$ROOT/scripts/apt.sh"
  apt_install ${need[@]+"${need[@]}"}
fi

# 2. Rust toolchain components (rust-toolchain.toml pins the version).
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# 3. The real ActiveSync server for the interop tests.
if [ "${EASGATE_SKIP_SOGO:-0}" != 1 ]; then
  if [ -x "$SHARED/peers/sogo-up.sh" ] || [ -f "$SHARED/peers/sogo-up.sh" ]; then
    log "bringing up SOGo (real ActiveSync peer)"
    bash "$SHARED/peers/sogo-up.sh" up >/tmp/easgate-sogo-up.log 2>&1 || { tail -30 /tmp/easgate-sogo-up.log; exit 1; }
    export EASGATE_SOGO=127.0.0.1:20080
  else
    log "no $SHARED/peers/sogo-up.sh: interop tests will report it"
  fi
fi

export CARGO_TERM_COLOR=never
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --all-targets --locked --no-fail-fast
log "doc tests"
cargo test --workspace --doc --locked
log "all tests passed"
