# Sourced by the scripts that install Debian packages (test, run, benchmarks); the sourcing
# script defines log().

# apt_install package ...: installs the packages given (none: nothing to do), quietly.
apt_install() {
  [ $# -gt 0 ] || return 0
  log "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
