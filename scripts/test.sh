#!/usr/bin/env bash
# The one command that runs every Portcullis test.
#
# It installs what the tests need (Debian's docker.io, skopeo, postgresql, docker-compose, haproxy,
# jq and python3; Garage $GARAGE_VERSION with `cargo install garage --locked --version`; oras-py
# $ORAS_PY_VERSION from PyPI in a venv), starts a
# private Docker engine (vfs storage driver, its own socket, data root and exec root; no iptables,
# no bridge), a PostgreSQL server and a single-node Garage on loopback ports, and runs the whole
# cargo test suite twice: on the embedded defaults (SQLite, local disk), then with every registry
# on PostgreSQL + Garage. It validates the scale-out docker-compose.yml, runs its topology without
# containers (scripts/compose-topology.sh), and stops everything again. Under CI=true a missing
# tool is an error, never a skipped test.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash scripts/test.sh [-h|--help]

Installs the test tools if missing (apt-get; Garage with cargo install; oras-py with pip in a venv,
TESTBED_VENV, default ~/.cache/portcullis-test-venv), starts a private Docker
engine, PostgreSQL and Garage on loopback, runs `cargo test` on the embedded defaults and again
with TESTBED_BACKEND=scaleout, then the compose topology test (scripts/compose-topology.sh).
Runs as root (or with sudo). About 20 minutes the first time on 2 cores.

Environment: CI=true (install the pinned Garage over another version; fail on anything missing),
CARGO_BUILD_JOBS (default 2).
EOF
}
[ $# -le 1 ] || { echo "error: unexpected arguments: $*" >&2; usage >&2; exit 2; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# scripts/services.sh drives Garage's CLI, whose commands change between releases.
GARAGE_VERSION=2.5.0

log() { printf '==> %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# compose-topology.sh reads docker-compose.yml with it (docker-compose depends on it too).
python3 -c 'import yaml' >/dev/null 2>&1 || /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1 || missing+=(python3-yaml)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The README's attestation example (tests/attestations.rs runs it) uses jq; oras-py gets a venv.
command -v jq >/dev/null 2>&1 || missing+=(jq)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The web console's browser tests (tests/console_browser.rs) drive Debian's chromium over WebDriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH="$HOME/.cargo/bin:$PATH"
# oras-py (the ORAS project's Python client) pulls SBOMs in tests/sbom.rs, pinned, in a venv of its own.
# (Test settings are TESTBED_*: every PORTCULLIS_* variable is registry configuration, and an unknown
# one stops the registry.)
ORAS_PY_VERSION=0.2.43
venv="${TESTBED_VENV:-$HOME/.cache/portcullis-test-venv}"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('oras') != '$ORAS_PY_VERSION')" >/dev/null 2>&1; then
  log "installing oras-py $ORAS_PY_VERSION in $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "oras==$ORAS_PY_VERSION"
fi
export TESTBED_ORAS_PYTHON="$venv/bin/python"
garage_version() { garage --version 2>/dev/null | sed -n 's/^garage \(cargo:\)\{0,1\}v\{0,1\}\([0-9][0-9.]*\).*/\2/p'; }
install_garage() {
  log "installing Garage $GARAGE_VERSION (cargo install garage --locked --version $GARAGE_VERSION; takes a while on 2 cores)"
  cargo install garage --locked --version "$GARAGE_VERSION" "$@"
}
if ! command -v garage >/dev/null 2>&1; then
  install_garage
elif [ "$(garage_version)" != "$GARAGE_VERSION" ]; then
  if [ "${CI:-}" = true ]; then
    install_garage --force
    if [ "$(garage_version)" != "$GARAGE_VERSION" ]; then
      echo "error: $(command -v garage) is Garage '$(garage_version)' after installing $GARAGE_VERSION; scripts/services.sh needs $GARAGE_VERSION first on PATH" >&2
      exit 1
    fi
  else
    log "warning: Garage '$(garage_version)' is installed, the tests are made for $GARAGE_VERSION (CI=true installs it)"
  fi
fi
for tool in dockerd docker skopeo cargo garage psql docker-compose openssl python3 haproxy curl jq chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is required but not installed" >&2; exit 1; }
done
# shellcheck source=scripts/services.sh
source scripts/services.sh

work="$(mktemp -d /tmp/portcullis-test.XXXXXX)"
dockerd_pid=""
cleanup() {
  stop_services
  if [ -n "$dockerd_pid" ]; then
    log "stopping the test Docker engine"
    # The daemon's own pid (from its pidfile); it stops the containerd it started.
    local pid
    pid="$(cat "$work/docker.pid" 2>/dev/null || echo "$dockerd_pid")"
    as_root kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do as_root kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    as_root kill -9 "$pid" 2>/dev/null || true
  fi
  as_root rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

log "starting a private Docker engine in $work"
dockerd_args=(
  --storage-driver vfs
  --data-root "$work/docker-root"
  --exec-root "$work/docker-exec"
  --host "unix://$work/docker.sock"
  --pidfile "$work/docker.pid"
  --iptables=false --ip6tables=false --bridge=none
)
# Started directly (not through a shell function), so that $! is the daemon (or sudo, which relays signals).
if [ "$(id -u)" = 0 ]; then
  dockerd "${dockerd_args[@]}" >"$work/dockerd.log" 2>&1 &
else
  # The log belongs to the invoking user on purpose (shellcheck: sudo does not cover redirects).
  # shellcheck disable=SC2024
  sudo dockerd "${dockerd_args[@]}" >"$work/dockerd.log" 2>&1 &
fi
dockerd_pid=$!
export DOCKER_HOST="unix://$work/docker.sock"
for _ in $(seq 1 120); do
  docker info >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || break
  sleep 0.5
done
if ! docker info >/dev/null 2>&1; then
  echo "error: the test Docker engine did not start; its log:" >&2
  tail -n 50 "$work/dockerd.log" >&2
  exit 1
fi

log "starting PostgreSQL and Garage on loopback"
start_postgres "$work"
start_garage "$work"

log "validating the scale-out docker-compose.yml"
docker-compose -f docker-compose.yml config -q

log "running the test suite on the embedded defaults (SQLite, local disk)"
cargo test --locked --workspace --all-targets -- --test-threads=4 --include-ignored

log "running the test suite again with every registry on PostgreSQL + Garage (S3)"
# The soak ran its full three minutes above; here a shorter one proves the same on the scale-out stack.
SOAK_SECONDS=60 TESTBED_BACKEND=scaleout cargo test --locked --tests -- --test-threads=4 --include-ignored

log "running the docker-compose.yml topology without containers (scripts/compose-topology.sh)"
# The binary the test runs above built (target/debug/portcullis); nothing is rebuilt here.
[ -x target/debug/portcullis ] || { echo "error: target/debug/portcullis was not built by the tests" >&2; exit 1; }
PORTCULLIS_BIN=target/debug/portcullis bash scripts/compose-topology.sh
