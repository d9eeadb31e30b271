#!/usr/bin/env bash
# Writes the .env file docker-compose reads (README "docker-compose"): a generated admin credential
# for the gateway (QKMS_ACCESS_KEY_ID / QKMS_SECRET_ACCESS_KEY) and a generated PostgreSQL password
# for the replicated profile, mode 0600. The compose file has no fallback credential: the gateway
# listens on 0.0.0.0 in its container, where it refuses the public development credential.
# Usage: bash scripts/compose-env.sh [FILE]   (default .env; an existing file is never overwritten)
set -euo pipefail
file=${1:-.env}
if [ -e "$file" ]; then
  echo "qkms: $file exists; leaving it as it is (delete it to generate new credentials)." >&2
  exit 1
fi
# Characters from the kernel's CSPRNG, filtered to a set; read in chunks so no pipe is cut short.
random() {
  local out=''
  while [ ${#out} -lt "$2" ]; do out+=$(head -c 256 /dev/urandom | LC_ALL=C tr -dc "$1"); done
  printf '%s' "${out:0:$2}"
}
umask 077
{
  echo "# Written by scripts/compose-env.sh. Secrets: keep this file out of version control and images."
  echo "QKMS_ACCESS_KEY_ID=AKIA$(random 'A-Z0-9' 16)"
  echo "QKMS_SECRET_ACCESS_KEY=$(random 'A-Za-z0-9' 40)"
  echo "QKMS_DB_PASSWORD=$(random 'A-Za-z0-9' 32)"
} > "$file"
echo "qkms: wrote $file (mode 0600). Clients sign with its credential:" >&2
echo "      set -a; . $file; set +a; export AWS_ACCESS_KEY_ID=\$QKMS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=\$QKMS_SECRET_ACCESS_KEY" >&2
