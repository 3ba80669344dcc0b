#!/usr/bin/env bash
# Run the gateway with the shipped example config, on a fresh machine, without root:
#   bash scripts/run.sh
# Builds easgate, creates the data directory and a random management token (mode 0600) if missing,
# then runs `easgate gateway --config config/easgate.example.toml` in the foreground (Ctrl-C drains
# and stops it). Devices: https://127.0.0.1:8443, management API: https://127.0.0.1:9090, both on a
# generated development certificate (data/tls/dev-gateway.crt). The servers are the SOGo peer on
# 127.0.0.1:20080 (bash ../shared/peers/sogo-up.sh up); without it the gateway still starts and
# reports the server Unreachable. Knob: EASGATE_CONFIG=path to run another config.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${EASGATE_CONFIG:-config/easgate.example.toml}
log() { printf '[run] %s\n' "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
# ring and mimalloc compile C code.
if ! command -v cc >/dev/null && command -v apt-get >/dev/null; then
  # shellcheck source=scripts/apt.sh
  . scripts/apt.sh
  apt_install gcc libc6-dev
fi
log "cargo build --release -p easgate"
cargo build --release -p easgate

# The example config keeps its state in ./data (gitignored): the token and the dev certificate.
mkdir -p data
chmod 700 data
if [ ! -s data/management.token ]; then
  log "creating data/management.token (random, mode 0600)"
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > data/management.token)
fi
chmod 600 data/management.token

log "management API: curl --cacert data/tls/dev-gateway.crt -H \"Authorization: Bearer \$(cat data/management.token)\" https://localhost:9090/v1/status"
# Same malloc settings as the documented systemd unit (docs/configuration.md): without them glibc
# trims freed rewrite buffers after every response and attachment control costs ~2 ms more.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456}
exec target/release/easgate gateway --config "$CONFIG"
