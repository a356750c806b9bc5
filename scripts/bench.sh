#!/usr/bin/env bash
# Side-by-side benchmark: Portcullis vs CNCF distribution 2.8 (Debian's docker-registry), same TLS
# certificate, same disk, alternating runs. Prints the table; writes bench-results/results.json,
# table.md and chart.png. Extra arguments go to `portcullis-bench compare` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v rsvg-convert >/dev/null 2>&1 || missing+=(librsvg2-bin)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --locked -p portcullis -p portcullis-bench
exec ./target/release/portcullis-bench compare --out bench-results "$@"
