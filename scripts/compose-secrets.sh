#!/usr/bin/env bash
# Makes the secrets docker-compose.yml mounts, once, into ./secrets (or the directory given):
# a CA and a server certificate for localhost, the shared token signing key (ECDSA P-256), and
# random passwords for the admin, PostgreSQL and the S3 store. Existing files are kept.
set -euo pipefail
dir="${1:-$(dirname "$0")/../secrets}"
host="${PORTCULLIS_HOST:-localhost}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
if [ ! -f ca.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Portcullis compose CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if [ ! -f server.crt ]; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' "$host" >server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile server.ext -out server.crt 2>/dev/null
  rm -f server.csr server.ext
fi
[ -f token-signing.pem ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out token-signing.pem
for secret in admin-password db-password s3-secret-key; do
  [ -f "$secret" ] || openssl rand -hex 24 | tr -d '\n' >"$secret"
done
# Compose bind-mounts secret files as they are; the registry runs as uid 10001 and must read them.
chmod 644 ca.crt server.crt
chmod 600 server.key token-signing.pem admin-password db-password s3-secret-key
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 server.key token-signing.pem admin-password
  chmod 644 db-password s3-secret-key # also read by the postgres and minio containers
else
  echo "note: run as root to hand the key files to uid 10001, or make them readable to it" >&2
fi
echo "secrets in $(pwd); clients trust ca.crt (e.g. /etc/docker/certs.d/$host:5000/ca.crt)"
