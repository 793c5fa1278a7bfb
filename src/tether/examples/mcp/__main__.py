"""``python -m tether.examples.mcp``: print the example gateway config, its upstream run by this
Python (so it finds tether's example server wherever tether is installed)."""

from __future__ import annotations

import sys

from tether.examples.mcp import gateway_yaml

sys.stdout.write(gateway_yaml())
