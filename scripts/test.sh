#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need, brings up the
# real ActiveSync peer (SOGo), then runs format, lint, supply-chain (cargo deny), unit, property,
# end-to-end and interop tests.
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

# 2. Rust toolchain components (rust-toolchain.toml pins the version), and cargo-deny (built with
#    that toolchain from crates.io; skipped when this version is already on PATH).
rustup component add rustfmt clippy >/dev/null 2>&1 || true
CARGO_DENY_VERSION=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  log "cargo install cargo-deny $CARGO_DENY_VERSION (a few minutes)"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked --quiet
fi

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
# Supply chain (deny.toml, docs/supply-chain.md): advisories against the offline RustSec snapshot
# in shared/ (no network fetch), licences, bans (duplicate versions, wildcards), sources.
log "cargo deny (advisory snapshot of $(sed -n 's/^date: //p' "$SHARED/advisory-db/SNAPSHOT" 2>/dev/null || echo '?'))"
[ -f "$SHARED/tools/advisory-db.sh" ] || { echo "no $SHARED/tools/advisory-db.sh: cargo deny needs the offline advisory snapshot" >&2; exit 1; }
advisory_db=$(DB_PATH="$ROOT/target/advisory-dbs" bash "$SHARED/tools/advisory-db.sh")
cargo fetch --locked --quiet   # every platform's crates: cargo deny reads the whole graph offline
EASGATE_ADVISORY_DB=$advisory_db cargo deny --frozen check
log "cargo test"
cargo test --workspace --all-targets --locked --no-fail-fast
log "doc tests"
cargo test --workspace --doc --locked
log "all tests passed"
