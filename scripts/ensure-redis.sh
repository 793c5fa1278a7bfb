#!/usr/bin/env bash
# Make sure redis-server is installed, for the tests that start their own throw-away server
# (tests/redis_server.py). Idempotent: does nothing when it is there.
#
# Installs the distribution's `redis-server` package with apt when missing (needs root), and stops
# the system service the package may auto-start: the tests never use it, and it would only hold
# port 6379 and memory.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-redis: Redis is not installed (no redis-server on PATH)" >&2
    echo "ensure-redis: run this script as root, or install it: apt-get install redis-server" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: Redis is not installed and apt-get is not available;" >&2
    echo "ensure-redis: install the Redis server so redis-server is on PATH" >&2
    exit 1
fi

echo "ensure-redis: installing Redis from the system's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
# The package may start a server as a system service; the tests start their own.
service redis-server stop >/dev/null 2>&1 || true

if ! command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: apt installed redis-server but it is not on PATH" >&2
    exit 1
fi
