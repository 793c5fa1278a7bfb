#!/usr/bin/env bash
# Re-resolve every dependency (tether, its SDK, every extra, and the build backend) to the newest
# versions the version ranges in pyproject.toml allow, and rewrite requirements.lock with hashes.
# With --keep, versions already in the lock stay as they are: use it after adding a dependency.
# `make test` and `make demo` install only from the lock, so a new release upstream changes
# nothing until someone runs `make lock`, runs `make test`, and commits the new lock.
set -euo pipefail
cd "$(dirname "$0")/.."
tool=.lock-venv
python3 -m venv "$tool"
"$tool/bin/pip" install --quiet 'uv==0.13.8'
upgrade=--upgrade
if [ "${1:-}" = "--keep" ]; then
    upgrade=
fi
"$tool/bin/uv" pip compile pyproject.toml sdk/pyproject.toml scripts/build-requirements.in \
    --all-extras --universal --python-version 3.11 --generate-hashes $upgrade \
    --no-header --quiet -o requirements.lock
echo "requirements.lock rewritten; run 'make test' before committing it"
