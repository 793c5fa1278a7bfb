#!/usr/bin/env bash
# Make sure curl and jq are installed: the README's shell samples use them, and tests/docs runs
# those samples. Idempotent: does nothing when both are there.
#
# Installs the distribution's packages with apt when missing (needs root).
set -euo pipefail

missing=()
for tool in curl jq; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-tools: missing ${missing[*]} (the README's samples use them)" >&2
    echo "ensure-tools: install them (apt-get install ${missing[*]}), or run this script as root" >&2
    exit 1
fi

echo "ensure-tools: installing ${missing[*]} from the system's packages" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
for tool in "${missing[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "ensure-tools: apt installed $tool but it is not on PATH" >&2; exit 1; }
done
