#!/usr/bin/env bash
# Makes the secrets docker-compose.yml mounts, once, into ./secrets (or the directory given):
# a CA and a server certificate for localhost (and $PORTCULLIS_HOST), the shared token signing key
# (ECDSA P-256), and random passwords for the admin, PostgreSQL and the S3 store. Existing files
# are kept; their modes and owners are set again on every run.
#
#   bash scripts/compose-secrets.sh [DIR]
#
# The directory is 0700 and every private file 0600 (ca.crt and server.crt are 0644). Compose
# bind-mounts the files as they are, so they must belong to the user the registry runs as:
#   - run as root, the registry's files are handed to uid/gid 10001 (the image's user);
#   - run as another user, they stay that user's, and the registry runs as that user instead.
# Either way the script writes PORTCULLIS_UID and PORTCULLIS_GID into the .env next to the secrets
# directory (where docker-compose.yml is; $PORTCULLIS_ENV_FILE overrides), which compose reads.
# PostgreSQL's entrypoint, MinIO and mc run as root in their containers and read 0600 files of any
# owner.
set -euo pipefail

usage() { echo "usage: bash scripts/compose-secrets.sh [SECRETS_DIR]   (default: ./secrets next to docker-compose.yml)"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  -*) usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }

dir="${1:-$(dirname "$0")/../secrets}"
host="${PORTCULLIS_HOST:-localhost}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
env_file="${PORTCULLIS_ENV_FILE:-$(dirname "$dir")/.env}"

# The files the registry reads (and PostgreSQL or MinIO as root, for the two passwords).
private=(server.key token-signing.pem attestation.pem admin-password db-password s3-secret-key)
if [ "$(id -u)" = 0 ]; then
  uid=10001 gid=10001
else
  uid="$(id -u)" gid="$(id -g)"
  # A file left by a run as root belongs to 10001: this user could not chmod it, nor the registry
  # running as this user read it.
  for f in "$dir" "$dir"/*; do
    if [ -e "$f" ] && [ "$(stat -c %u "$f")" != "$uid" ]; then
      echo "error: $f belongs to uid $(stat -c %u "$f"), not to you (uid $uid); run this as root, or remove $dir and run it again" >&2
      exit 1
    fi
  done
fi

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
for key in token-signing.pem attestation.pem; do
  [ -f "$key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key"
done
for secret in admin-password db-password s3-secret-key; do
  [ -f "$secret" ] || openssl rand -hex 24 | tr -d '\n' >"$secret"
done

chmod 644 ca.crt server.crt
chmod 600 "${private[@]}"
for f in ca.key ca.srl; do [ ! -f "$f" ] || chmod 600 "$f"; done
if [ "$(id -u)" = 0 ]; then
  chown "$uid:$gid" "${private[@]}"
fi

# PORTCULLIS_UID/GID in the .env, other lines kept. Not secret: 0644.
tmp="$(mktemp "$env_file.XXXXXX")"
if [ -f "$env_file" ]; then
  grep -v -E '^(PORTCULLIS_UID|PORTCULLIS_GID)=' "$env_file" >"$tmp" || true
fi
printf 'PORTCULLIS_UID=%s\nPORTCULLIS_GID=%s\n' "$uid" "$gid" >>"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$env_file"

echo "secrets in $dir (the registry's files belong to uid $uid); $env_file sets PORTCULLIS_UID=$uid PORTCULLIS_GID=$gid"
echo "clients trust ca.crt (e.g. /etc/docker/certs.d/$host:5000/ca.crt)"
