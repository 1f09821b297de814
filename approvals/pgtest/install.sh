#!/usr/bin/env bash
# Installs Debian's PostgreSQL for the approvals store tests, when it is not
# there yet. The tests start their own throwaway cluster (initdb into a
# temporary directory, postgres on a free loopback port, as the postgres user
# when run as root): nothing needs to be started here, and the packaged
# cluster (pg_ctlcluster) is left alone.
set -euo pipefail
if compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "approvals/pgtest/install.sh: PostgreSQL is missing and apt-get cannot run here (needs root on Debian)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
