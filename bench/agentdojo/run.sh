#!/usr/bin/env bash
# The AgentDojo replay benchmark: one command, from a fresh clone.
#
#   bash bench/agentdojo/run.sh                       # v1 and v1.2.2, all four suites
#   bash bench/agentdojo/run.sh --versions all        # every benchmark version
#   bash bench/agentdojo/run.sh --suite banking --limit 4
#
# It makes its own virtualenv in bench/agentdojo/.venv (agentdojo pulls large model SDKs, so it
# stays out of the repository's .venv), installs agentdojo from PyPI and tether and tether-sdk
# from this checkout, checks the policies, then runs replay.py with the arguments given. No model
# is called and nothing is fetched after the install.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
AGENTDOJO_VERSION="0.1.35"
STAMP="$VENV/.installed-agentdojo-$AGENTDOJO_VERSION"

if [ ! -f "$STAMP" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "agentdojo==$AGENTDOJO_VERSION" -e "$ROOT" -e "$ROOT/sdk"
  touch "$STAMP"
fi

"$VENV/bin/tether" policy validate "$HERE/policies"
"$VENV/bin/tether" policy test "$HERE/policies" > /dev/null
"$VENV/bin/python" "$HERE/replay.py" --check-traces --versions v1.2.2 > /dev/null
exec "$VENV/bin/python" -W ignore "$HERE/replay.py" "$@"
