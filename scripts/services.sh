#!/usr/bin/env bash
# The real services of the scale-out tests, on loopback ports, for scripts/test.sh (sourced).
#
#   start_postgres DIR   Debian's PostgreSQL server (initdb into DIR, run as the postgres user)
#   start_garage DIR     Garage, a single-node S3-compatible store with one bucket and one key
#   stop_services        stops whatever was started
#
# Both export what tests/common/backends.rs reads: TESTBED_POSTGRES and
# TESTBED_S3_{ENDPOINT,REGION,BUCKET,ACCESS_KEY_ID,SECRET_ACCESS_KEY}.

pg_bin=""
pg_dir=""
garage_pid=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The PostgreSQL binaries of the newest installed major version.
find_pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

start_postgres() {
  pg_dir="$1/postgres"
  pg_bin="$(find_pg_bin)" || { echo "error: PostgreSQL server binaries not found" >&2; return 1; }
  local port
  port="$(free_port)"
  mkdir -p "$pg_dir"
  # PostgreSQL refuses to run as root; the Debian package made the postgres user.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg_dir"
    chmod 755 "$1"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 >"$pg_dir/initdb.log" 2>&1 ||
    { cat "$pg_dir/initdb.log" >&2; return 1; }
  # Loopback only; durable commits as in production (fsync and synchronous_commit stay on).
  "${run[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=400" start >/dev/null ||
    { cat "$pg_dir/server.log" >&2; return 1; }
  export TESTBED_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
  psql "$TESTBED_POSTGRES" -qtAc 'SELECT 1' >/dev/null
}

start_garage() {
  local dir="$1/garage"
  mkdir -p "$dir/meta" "$dir/data"
  local s3_port rpc_port admin_port
  s3_port="$(free_port)"; rpc_port="$(free_port)"; admin_port="$(free_port)"
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
EOF
  chmod 600 "$dir/garage.toml"
  export GARAGE_CONFIG_FILE="$dir/garage.toml"
  garage server >"$dir/server.log" 2>&1 &
  garage_pid=$!
  local node=""
  for _ in $(seq 1 100); do
    node="$(garage node id -q 2>/dev/null | cut -d@ -f1)" && [ -n "$node" ] && break
    kill -0 "$garage_pid" 2>/dev/null || break
    sleep 0.2
  done
  # The node id is readable as soon as the key file exists; the RPC port may open later.
  local up=""
  for _ in $(seq 1 150); do
    [ -n "$node" ] && garage status >/dev/null 2>&1 && { up=1; break; }
    kill -0 "$garage_pid" 2>/dev/null || break
    [ -n "$node" ] || node="$(garage node id -q 2>/dev/null | cut -d@ -f1)"
    sleep 0.2
  done
  [ -n "$up" ] || { echo "error: Garage did not start; its log:" >&2; tail -n 30 "$dir/server.log" >&2; return 1; }
  # A single-node layout, then a bucket and a key that may read and write it.
  garage layout assign -z local -c 10G "$node" >/dev/null
  garage layout apply --version 1 >/dev/null
  local key_id="GK$(openssl rand -hex 12)" secret
  secret="$(openssl rand -hex 32)"
  for _ in $(seq 1 50); do
    garage key import --yes -n portcullis-test "$key_id" "$secret" >/dev/null 2>&1 && break
    sleep 0.2
  done
  garage bucket create portcullis-test >/dev/null
  garage bucket allow --read --write --owner portcullis-test --key "$key_id" >/dev/null
  export TESTBED_S3_ENDPOINT="http://127.0.0.1:$s3_port"
  export TESTBED_S3_REGION="garage"
  export TESTBED_S3_BUCKET="portcullis-test"
  export TESTBED_S3_ACCESS_KEY_ID="$key_id"
  export TESTBED_S3_SECRET_ACCESS_KEY="$secret"
}

stop_services() {
  if [ -n "$garage_pid" ]; then
    kill "$garage_pid" 2>/dev/null || true
    wait "$garage_pid" 2>/dev/null || true
    garage_pid=""
  fi
  if [ -n "$pg_bin" ] && [ -d "$pg_dir/data" ]; then
    local run=()
    [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    pg_bin=""
  fi
}
