#!/usr/bin/env bash
# The docker-compose.yml topology, run without containers (images cannot be pulled on CI machines):
# two registry replicas with the compose file's own x-portcullis environment, behind HAProxy with
# config/haproxy.cfg itself, on the PostgreSQL and Garage that scripts/services.sh started.
#
#   bash scripts/compose-topology.sh        (scripts/test.sh runs it after the cargo tests)
#
# It validates docker-compose.yml, runs scripts/compose-secrets.sh as a non-root user and checks the
# mode and owner of every file it makes (and as root, the hand-over to uid 10001), rewrites only
# the compose values that name hosts, ports and paths (and the S3 key, which Garage made) and prints
# them, then asserts: both replicas answer /readyz (with a PROXY v2 header, TLS verified against
# ca.crt); HAProxy's /readyz check (L7) marks both UP; /readyz through the balancer is 200; skopeo
# pushes an image through the balancer and pulls it back intact, and its scan passes; after
# `kill -9` of a replica, HAProxy marks it DOWN within 10 s and the image still pulls. Anything else
# is a failure (exit 1, with the replicas' last log lines). Everything it started is stopped, and
# its database dropped, on the way out.
#
# Environment: TESTBED_POSTGRES and TESTBED_S3_{ENDPOINT,REGION,BUCKET,ACCESS_KEY_ID,SECRET_ACCESS_KEY}
# (scripts/services.sh); PORTCULLIS_BIN (default target/debug/portcullis); TOPOLOGY_USER, the non-root
# user that makes the secrets and runs the replicas and HAProxy when this runs as root (default nobody).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bash scripts/compose-topology.sh   (needs TESTBED_POSTGRES and TESTBED_S3_*; see the header)"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

log() { printf '==> topology: %s\n' "$*" >&2; }
pass() { printf '    ok: %s\n' "$*" >&2; summary+=("$*"); }
fail() {
  printf 'FAILED: compose topology: %s\n' "$*" >&2
  exit 1
}
summary=()

for v in TESTBED_POSTGRES TESTBED_S3_ENDPOINT TESTBED_S3_REGION TESTBED_S3_BUCKET TESTBED_S3_ACCESS_KEY_ID TESTBED_S3_SECRET_ACCESS_KEY; do
  [ -n "${!v:-}" ] || fail "$v is not set (start the services with scripts/services.sh first)"
done
# Debian installs haproxy in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
for tool in docker-compose python3 haproxy skopeo curl openssl psql setpriv; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is required but not installed"
done
# A python3 with yaml: the one on PATH, or Debian's (python3-yaml comes with docker-compose).
py=python3
"$py" -c 'import yaml' 2>/dev/null || py=/usr/bin/python3
"$py" -c 'import yaml' 2>/dev/null || fail "python3's yaml module is required (Debian: python3-yaml)"
bin="${PORTCULLIS_BIN:-target/debug/portcullis}"
[ -x "$bin" ] || fail "no registry binary at $bin (cargo build --locked --bin portcullis, or set PORTCULLIS_BIN)"

# Who makes the secrets and runs the processes: a non-root user, as the compose file documents.
if [ "$(id -u)" = 0 ]; then
  run_user="${TOPOLOGY_USER:-nobody}"
  run_uid="$(id -u "$run_user")" || fail "no user $run_user (set TOPOLOGY_USER)"
  run_gid="$(id -g "$run_user")"
  [ "$run_uid" != 0 ] || fail "TOPOLOGY_USER must not be root"
  # setpriv execs the command, so $! of a background start is the process itself.
  as_user=(setpriv --reuid="$run_uid" --regid="$run_gid" --clear-groups --)
else
  run_user="$(id -un)" run_uid="$(id -u)" run_gid="$(id -g)"
  as_user=()
fi

work="$(mktemp -d /tmp/portcullis-topology.XXXXXX)"
chmod 755 "$work"
pids=()
haproxy_pid=""
db=""
cleanup() {
  local status=$?
  local pid
  for pid in "${pids[@]}" $haproxy_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" $haproxy_pid; do
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "$db" ]; then
    psql "$TESTBED_POSTGRES" -qtAc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ "$status" != 0 ]; then
    for f in "$work"/replica-*.log; do
      [ -f "$f" ] || continue
      echo "--- last lines of $(basename "$f"):" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The helpers that shell does badly: YAML, PROXY headers, the stats socket, an OCI layout.
cat >"$work/topo.py" <<'PY'
import csv, gzip, hashlib, io, json, os, socket, ssl, struct, sys, tarfile, urllib.parse
import yaml

def compose_env(compose, out_dir, secrets_dir, s3_secret_file, replicas, lb_port, data_root, db_url):
    """The x-portcullis environment, with hosts, ports and paths rewritten; one env file per replica."""
    doc = yaml.safe_load(open(compose))
    env = {k: str(v) for k, v in doc["x-portcullis"]["environment"].items()}
    secret_files = {name: os.path.join(secrets_dir, os.path.basename(spec["file"]))
                    for name, spec in doc["secrets"].items()}
    rules = {
        "PORTCULLIS_DATABASE_URL": lambda v, i: db_url,
        "PORTCULLIS_STORAGE_S3_ENDPOINT": lambda v, i: os.environ["TESTBED_S3_ENDPOINT"],
        "PORTCULLIS_STORAGE_S3_REGION": lambda v, i: os.environ["TESTBED_S3_REGION"],
        "PORTCULLIS_STORAGE_S3_BUCKET": lambda v, i: os.environ["TESTBED_S3_BUCKET"],
        "PORTCULLIS_STORAGE_S3_ACCESS_KEY_ID": lambda v, i: os.environ["TESTBED_S3_ACCESS_KEY_ID"],
        "PORTCULLIS_PUBLIC_URL": lambda v, i: v.replace(":5000", f":{lb_port}"),
        # Each replica's own (a tmpfs each in compose).
        "PORTCULLIS_LISTEN": lambda v, i: f"127.0.0.1:{replicas[i]}",
        "PORTCULLIS_DATA_DIR": lambda v, i: os.path.join(data_root, f"data-{i + 1}"),
    }
    def secret(v, i):
        name = v[len("/run/secrets/"):]
        return s3_secret_file if name == "s3_secret_key" else secret_files[name]
    report, kept = [], []
    for key, value in env.items():
        rule = rules.get(key) or (secret if value.startswith("/run/secrets/") else None)
        if rule is None:
            for needle in ("minio", "postgres", "/run/secrets", "/var/lib/portcullis", ":5000", "localhost"):
                if needle in value:
                    sys.exit(f"compose value {key}={value} names a host, port or path this test does not rewrite")
            kept.append(f"{key}={value}")
            continue
        news = list(dict.fromkeys(rule(value, i) for i in range(len(replicas))))
        report.append(f"  {key}: {value} -> {' | '.join(news)}")
    for i in range(len(replicas)):
        e = {k: (rules.get(k) or (secret if v.startswith("/run/secrets/") else (lambda v, i: v)))(v, i) for k, v in env.items()}
        # The test bucket is shared: this run's objects go under a prefix of their own.
        e["PORTCULLIS_STORAGE_S3_PREFIX"] = urllib.parse.urlsplit(db_url).path.strip("/") + "/"
        with open(os.path.join(out_dir, f"replica-{i + 1}.env"), "w") as f:
            f.write("".join(f"{k}={v}\n" for k, v in e.items()))
    print("compose values rewritten for this host (replica 1 | replica 2 where they differ):")
    print("\n".join(report))
    print(f"  added: PORTCULLIS_STORAGE_S3_PREFIX={e['PORTCULLIS_STORAGE_S3_PREFIX']} (the test bucket is shared)")
    print("compose values used as they are:\n  " + "\n  ".join(kept))

def compose_user(config_yaml, uid, gid):
    """`docker-compose config` output: every replica runs as uid:gid with its tmpfs owned by it."""
    doc = yaml.safe_load(open(config_yaml))
    for name, svc in doc["services"].items():
        if not name.startswith("portcullis-"):
            continue
        if svc.get("user") != f"{uid}:{gid}":
            sys.exit(f"{name} runs as {svc.get('user')}, not {uid}:{gid}")
        tmpfs = [t for t in svc.get("tmpfs", []) if t.startswith("/var/lib/portcullis:")]
        if not tmpfs or f"uid={uid}" not in tmpfs[0] or f"gid={gid}" not in tmpfs[0]:
            sys.exit(f"{name}'s data tmpfs is not owned by {uid}:{gid}: {tmpfs}")
        if not any(t.startswith("/tmp:") for t in svc.get("tmpfs", [])):
            sys.exit(f"{name} has no tmpfs /tmp")

def probe(port, ca, path="/readyz"):
    """GET path with a PROXY v2 header first, then TLS verified against ca for `localhost`."""
    header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(
        "!H4s4sHH", 12, socket.inet_aton("192.0.2.7"), socket.inet_aton("127.0.0.1"), 40000, port)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(header)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except ssl.SSLError:
                pass
    status = data.split(b"\r\n", 1)[0].decode()
    print(status)
    sys.exit(0 if " 200 " in status + " " else 1)

def stat(sock):
    """HAProxy's `show stat` for the replicas backend: one line `server status check_status` each."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    for r in rows:
        if r["pxname"] == "replicas" and r["svname"] not in ("FRONTEND", "BACKEND"):
            print(*[(r.get(k) or "-").replace(" ", "_") for k in ("svname", "status", "check_status", "check_desc")])

def layout(out):
    """A one-layer OCI image (a text file, user 1000) in an OCI layout directory, tag 1."""
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    def put(data):
        d = hashlib.sha256(data).hexdigest()
        open(os.path.join(blobs, d), "wb").write(data)
        return {"digest": "sha256:" + d, "size": len(data)}
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as t:
        body = b"hello from scripts/compose-topology.sh\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mode, info.uid, info.gid, info.mtime = len(body), 0o644, 1000, 1000, 0
        t.addfile(info, io.BytesIO(body))
    raw = tar.getvalue()
    layer = put(gzip.compress(raw, mtime=0))
    config = put(json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"User": "1000:1000", "Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created_by": "scripts/compose-topology.sh"}],
    }).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode())
    json.dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]}, open(os.path.join(out, "index.json"), "w"))
    json.dump({"imageLayoutVersion": "1.0.0"}, open(os.path.join(out, "oci-layout"), "w"))
    print(manifest["digest"], layer["digest"])

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "compose-env":
        compose_env(args[0], args[1], args[2], args[3], [int(p) for p in args[4].split(",")], int(args[5]), args[6], args[7])
    elif cmd == "compose-user":
        compose_user(args[0], args[1], args[2])
    elif cmd == "probe":
        probe(int(args[0]), args[1])
    elif cmd == "stat":
        stat(args[0])
    elif cmd == "layout":
        layout(args[0])
    elif cmd == "free-port":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
topo() { "$py" "$work/topo.py" "$@"; }

# 1. The compose file.
log "validating docker-compose.yml (docker-compose $(docker-compose version --short 2>/dev/null || echo '?'))"
docker-compose -f docker-compose.yml config -q || fail "docker-compose.yml does not validate"
pass "docker-compose config -q accepts docker-compose.yml"

# 2. The secrets, made by a non-root user: private files 0600, certificates 0644, the directory
#    0700, all the user's; the .env names the user, and compose then runs the replicas as it.
log "making the secrets as $run_user (uid $run_uid)"
project="$work/project"
mkdir -p "$project"
cp docker-compose.yml "$project/"
chown "$run_uid:$run_gid" "$project" 2>/dev/null || true
secrets="$project/secrets"
"${as_user[@]}" bash scripts/compose-secrets.sh "$secrets" >"$work/secrets.log" 2>&1 ||
  { cat "$work/secrets.log" >&2; fail "compose-secrets.sh failed as $run_user"; }
check_file() { # path mode uid
  local got
  got="$(stat -c '%a %u' "$1")"
  [ "$got" = "$2 $3" ] || fail "$1 has mode/owner $got, expected $2 $3"
}
check_file "$secrets" 700 "$run_uid"
for f in server.key token-signing.pem attestation.pem admin-password db-password s3-secret-key ca.key; do
  check_file "$secrets/$f" 600 "$run_uid"
done
check_file "$secrets/ca.crt" 644 "$run_uid"
check_file "$secrets/server.crt" 644 "$run_uid"
for f in "$secrets"/*; do
  case "$(basename "$f")" in
    ca.crt | server.crt) ;;
    *) [ "$(stat -c %a "$f")" = 600 ] || fail "$f is $(stat -c %a "$f"), not 0600" ;;
  esac
done
check_file "$project/.env" 644 "$run_uid"
if ! grep -qx "PORTCULLIS_UID=$run_uid" "$project/.env" || ! grep -qx "PORTCULLIS_GID=$run_gid" "$project/.env"; then
  fail "$project/.env does not name uid/gid $run_uid/$run_gid: $(cat "$project/.env")"
fi
docker-compose -f "$project/docker-compose.yml" config >"$work/compose-config.yml" ||
  fail "docker-compose config failed with the .env compose-secrets.sh wrote"
topo compose-user "$work/compose-config.yml" "$run_uid" "$run_gid" || fail "the .env does not set the replicas' user"
openssl verify -CAfile "$secrets/ca.crt" "$secrets/server.crt" >/dev/null || fail "server.crt does not chain to ca.crt"
pass "compose-secrets.sh as $run_user: dir 0700, keys and passwords 0600, certificates 0644, all uid $run_uid; .env 0644 makes compose run the replicas as $run_uid:$run_gid"
if [ "$(id -u)" = 0 ]; then
  as_root_dir="$work/root-project/secrets"
  mkdir -p "$work/root-project"
  bash scripts/compose-secrets.sh "$as_root_dir" >/dev/null 2>&1 || fail "compose-secrets.sh failed as root"
  check_file "$as_root_dir" 700 0
  for f in server.key token-signing.pem attestation.pem admin-password db-password s3-secret-key; do
    check_file "$as_root_dir/$f" 600 10001
  done
  check_file "$as_root_dir/ca.key" 600 0
  grep -qx "PORTCULLIS_UID=10001" "$work/root-project/.env" || fail "as root, .env does not name uid 10001"
  pass "compose-secrets.sh as root: the registry's secrets 0600 and owned by 10001, ca.key root's, .env names 10001"
fi

# 3. The topology: a database of its own, two replicas, HAProxy.
db="compose_topo_$(openssl rand -hex 4)"
psql "$TESTBED_POSTGRES" -qtAc "CREATE DATABASE $db" >/dev/null || fail "could not create database $db"
db_url="$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit((p.scheme, p.netloc, "/" + sys.argv[2], p.query, "")))' "$TESTBED_POSTGRES" "$db")"
s3_secret="$project/garage-s3-secret-key"
(umask 077 && printf '%s' "$TESTBED_S3_SECRET_ACCESS_KEY" >"$s3_secret")
chown "$run_uid:$run_gid" "$s3_secret"
mkdir -p "$project/data-1" "$project/data-2"
chown "$run_uid:$run_gid" "$project/data-1" "$project/data-2"
chmod 700 "$project/data-1" "$project/data-2"
p1="$(topo free-port)" p2="$(topo free-port)" lb="$(topo free-port)"
while [ "$p2" = "$p1" ]; do p2="$(topo free-port)"; done
while [ "$lb" = "$p1" ] || [ "$lb" = "$p2" ]; do lb="$(topo free-port)"; done
topo compose-env docker-compose.yml "$work" "$secrets" "$s3_secret" "$p1,$p2" "$lb" "$project" "$db_url" >&2 ||
  fail "could not derive the replicas' environment from docker-compose.yml"
cut -d= -f1 "$work/replica-1.env" | grep -qx PORTCULLIS_SERVER_PROXY_PROTOCOL || fail "the compose environment lost PORTCULLIS_SERVER_PROXY_PROTOCOL"

# The binary must be reachable by the run user.
if ! "${as_user[@]}" test -x "$bin"; then
  cp "$bin" "$work/portcullis"
  chmod 755 "$work/portcullis"
  bin="$work/portcullis"
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

start_replica() { # n port
  local envs=()
  mapfile -t envs <"$work/replica-$1.env"
  "${as_user[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$project/data-$1" "${envs[@]}" \
    "$bin" serve >"$work/replica-$1.log" 2>&1 &
  pids[$1]=$!
}
log "starting two replicas (ports $p1 and $p2) on database $db and bucket $TESTBED_S3_BUCKET"
start_replica 1 "$p1"
start_replica 2 "$p2"
for n in 1 2; do
  port="$p1"; [ "$n" = 1 ] || port="$p2"
  ready=""
  for _ in $(seq 1 120); do
    kill -0 "${pids[$n]}" 2>/dev/null || fail "replica $n exited during start"
    if topo probe "$port" "$secrets/ca.crt" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.5
  done
  [ -n "$ready" ] || fail "replica $n did not answer /readyz with 200 within 60 s"
done
for n in 1 2; do
  owner="$(awk '/^Uid:/ {print $2}' "/proc/${pids[$n]}/status")"
  [ "$owner" = "$run_uid" ] || fail "replica $n runs as uid $owner, not $run_uid"
done
pass "both replicas (uid $run_uid, the owner of the secrets) answer GET /readyz 200 (PROXY v2 header, TLS verified against ca.crt for localhost)"
if curl -sS -o /dev/null --max-time 5 --cacert "$secrets/ca.crt" --resolve "localhost:$p1:127.0.0.1" "https://localhost:$p1/readyz" 2>/dev/null; then
  fail "replica 1 answered a connection without a PROXY header (PORTCULLIS_SERVER_PROXY_PROTOCOL not in effect)"
fi
pass "a connection without a PROXY header gets no answer (the compose setting is in effect)"

log "starting HAProxy with config/haproxy.cfg on port $lb"
sed -e "s/^\([[:space:]]*bind[[:space:]]\+\):5000\b/\1127.0.0.1:$lb/" \
  -e "s/\(server[[:space:]]\+portcullis-1[[:space:]]\+\)portcullis-1:5000/\1127.0.0.1:$p1/" \
  -e "s/\(server[[:space:]]\+portcullis-2[[:space:]]\+\)portcullis-2:5000/\1127.0.0.1:$p2/" \
  -e "s#/run/secrets/ca_cert#$secrets/ca.crt#" \
  -e "s#^global\$#global\n    stats socket $work/haproxy.sock mode 600 level admin#" \
  config/haproxy.cfg >"$work/haproxy.cfg"
diff -u config/haproxy.cfg "$work/haproxy.cfg" | grep '^[-+][^-+]' | sed 's/^/    haproxy.cfg /' >&2 || true
grep -Eq 'portcullis-[12]:5000|/run/secrets|bind +:5000' "$work/haproxy.cfg" &&
  fail "config/haproxy.cfg changed shape: could not rewrite its addresses"
chmod 644 "$work/haproxy.cfg"
haproxy -c -q -f "$work/haproxy.cfg" || fail "haproxy -c rejects the rewritten config/haproxy.cfg"
chown "$run_uid:$run_gid" "$work"
"${as_user[@]}" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!

states() { topo stat "$work/haproxy.sock" 2>/dev/null; }
wait_state() { # server "status [check_status]" seconds: waits until HAProxy reports exactly that
  local deadline=$((SECONDS + $3)) line fields
  fields="2-$((1 + $(echo "$2" | wc -w)))"
  while [ "$SECONDS" -lt "$deadline" ]; do
    kill -0 "$haproxy_pid" 2>/dev/null || { cat "$work/haproxy.log" >&2; echo "haproxy exited" >&2; return 1; }
    line="$(states | grep "^$1 " || true)"
    if [ "$(echo "$line" | cut -d' ' -f"$fields")" = "$2" ]; then echo "$line"; return 0; fi
    sleep 0.25
  done
  echo "haproxy's view (server status check detail): $(states | tr '\n' ';')" >&2
  return 1
}
for s in portcullis-1 portcullis-2; do
  wait_state "$s" "UP L7OK" 20 >/dev/null || fail "HAProxy's HTTP check did not mark $s UP (L7OK) within 20 s"
done
pass "HAProxy's /readyz check (L7OK: TLS verified, PROXY v2, HTTP 200) marks portcullis-1 and portcullis-2 UP"

code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$secrets/ca.crt" "https://localhost:$lb/readyz")" ||
  fail "curl through the balancer failed"
[ "$code" = 200 ] || fail "GET /readyz through the balancer answered $code"
pass "curl --cacert ca.crt https://localhost:$lb/readyz through HAProxy: 200"
want="$(openssl pkey -in "$secrets/attestation.pem" -pubout)"
for i in 1 2 3 4; do
  got="$(curl -sS --max-time 10 --cacert "$secrets/ca.crt" "https://localhost:$lb/.well-known/portcullis-attestation.pem")" ||
    fail "GET /.well-known/portcullis-attestation.pem through the balancer failed"
  [ "$got" = "$want" ] || fail "a replica publishes another attestation key than secrets/attestation.pem: $got"
done
pass "every answer through HAProxy publishes the one attestation key of secrets/attestation.pem"

# 4. A real client through the balancer.
password="$(cat "$secrets/admin-password")"
certs="$work/certs"
mkdir -p "$certs"
cp "$secrets/ca.crt" "$certs/ca.crt"
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$work/policy.json"
read -r manifest_digest layer_digest < <(topo layout "$work/image")
[ -n "${layer_digest:-}" ] || fail "could not build the test image"
ref="docker://localhost:$lb/library/test:1"
sk() { skopeo --policy "$work/policy.json" "$@"; }
sk copy -q --dest-creds "admin:$password" --dest-cert-dir "$certs" "oci:$work/image:1" "$ref" >"$work/skopeo.log" 2>&1 ||
  { cat "$work/skopeo.log" >&2; fail "skopeo copy (push) through the balancer failed"; }
got="$(sk inspect --creds "admin:$password" --cert-dir "$certs" --format '{{.Digest}}' "$ref" 2>&1)" ||
  fail "skopeo inspect through the balancer failed: $got"
[ "$got" = "$manifest_digest" ] || fail "the pushed manifest is $got, expected $manifest_digest"
pull() { # dir
  sk copy -q --src-creds "admin:$password" --src-cert-dir "$certs" "$ref" "oci:$1:1" >"$work/skopeo.log" 2>&1 ||
    { cat "$work/skopeo.log" >&2; return 1; }
  cmp -s "$work/image/blobs/sha256/${layer_digest#sha256:}" "$1/blobs/sha256/${layer_digest#sha256:}"
}
pull "$work/pulled-1" || fail "skopeo copy (pull) through the balancer failed or the layer differs"
pass "skopeo pushed library/test:1 through HAProxy as admin ($manifest_digest) and pulled it back byte for byte"
# The scan (in its sandbox, under the compose file's PORTCULLIS_SCAN_LIMITS_MEMORY) passes the image.
scan="$(curl -sS --max-time 90 --cacert "$secrets/ca.crt" -u "admin:$password" \
  "https://localhost:$lb/api/v1/scans?repository=library/test&digest=$manifest_digest&wait=60s")" || fail "the scan API failed"
verdict="$("$py" -c 'import json, sys; print(json.load(sys.stdin).get("state"))' <<<"$scan" 2>/dev/null || echo "unreadable: $scan")"
[ "$verdict" = passed ] || fail "the pushed image's scan is '$verdict', expected passed"
pass "its scan passed (GET /api/v1/scans through HAProxy)"

# 5. One replica killed: HAProxy takes it out, the other serves.
log "kill -9 of replica 1"
kill -9 "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true
start=$SECONDS
wait_state portcullis-1 DOWN 10 >/dev/null || fail "HAProxy did not mark portcullis-1 DOWN within 10 s of its kill -9"
pass "HAProxy marked portcullis-1 DOWN $((SECONDS - start)) s after its kill -9"
state2="$(states | grep '^portcullis-2 ' | cut -d' ' -f2-3)"
[ "$state2" = "UP L7OK" ] || fail "portcullis-2 is \"$state2\" after portcullis-1 died"
pull "$work/pulled-2" || fail "the pull through the balancer failed with one replica killed"
code="$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$secrets/ca.crt" "https://localhost:$lb/readyz")" || code=none
[ "$code" = 200 ] || fail "GET /readyz through the balancer answered $code with one replica killed"
pass "with portcullis-1 killed, portcullis-2 stays UP, /readyz through HAProxy is 200 and the image pulls intact"

echo "compose topology: all checks passed" >&2
printf '  - %s\n' "${summary[@]}" >&2
