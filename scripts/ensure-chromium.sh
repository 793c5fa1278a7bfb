#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium, for the browser tests of the
# approver's web page (tests/ui). Idempotent: does nothing when it is there.
#
# Playwright drives this system browser through `executable_path`; we never run
# `playwright install`, which downloads its own browser builds.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: Chromium is not installed (no $CHROMIUM)" >&2
    echo "ensure-chromium: run this script as root, or install it: apt-get install chromium" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: Chromium is not installed and apt-get is not available;" >&2
    echo "ensure-chromium: install Chromium so that $CHROMIUM exists" >&2
    exit 1
fi

echo "ensure-chromium: installing Chromium from the system's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure-chromium: apt installed chromium but $CHROMIUM is missing" >&2
    exit 1
fi
