#!/usr/bin/env bash
# Makes sure PostgreSQL 15's server binaries are present (Debian/Ubuntu package postgresql-15): the
# tests of the PostgreSQL key store start a throwaway cluster from /usr/lib/postgresql/15/bin with
# initdb and pg_ctl (test/support/postgres.ts), never the system service. Installs the package when
# running as root with apt-get, and stops the service the package starts (the tests do not use it).
# Otherwise it only prints what to install and exits 0: those tests skip with the package's name.
set -euo pipefail
bin=/usr/lib/postgresql/15/bin
[ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "qkms: installing postgresql-15 (Debian package)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
  command -v pg_ctlcluster >/dev/null 2>&1 && pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  exit 0
fi
echo "qkms: missing Debian/Ubuntu package: postgresql-15 (sudo apt-get install -y postgresql-15)." >&2
echo "      The tests of the PostgreSQL key store will be skipped." >&2
exit 0
