#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, pg_ctl) are installed, for the tests that start
# their own throw-away server (tests/pg_server.py). Idempotent: does nothing when they are there.
#
# Installs the distribution's `postgresql` package with apt when missing (needs root), and stops
# the system service the package may auto-start: the tests never use it, and it would only hold
# port 5432 and memory.
set -euo pipefail

found_initdb() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if found_initdb; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postgres: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)" >&2
    echo "ensure-postgres: run this script as root, or install it: apt-get install postgresql" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: PostgreSQL is not installed and apt-get is not available;" >&2
    echo "ensure-postgres: install the PostgreSQL server so /usr/lib/postgresql/*/bin/initdb exists" >&2
    exit 1
fi

echo "ensure-postgres: installing PostgreSQL from the system's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
# The package may start a cluster as a system service; the tests start their own.
service postgresql stop >/dev/null 2>&1 || true

if ! found_initdb; then
    echo "ensure-postgres: apt installed postgresql but no initdb under /usr/lib/postgresql" >&2
    exit 1
fi
