"""The MCP gateway's example: a config (``gateway.yaml``), a small CRM server over stdio
(:mod:`tether.examples.mcp.crm_server`) and an agent that tries it
(:mod:`tether.examples.mcp.agent`). ``python -m tether.examples.mcp`` prints the config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Final

GATEWAY_YAML: Final = Path(__file__).resolve().parent / "gateway.yaml"


def gateway_yaml(python: str = sys.executable) -> str:
    """The example config with its upstream run by ``python`` (a YAML-safe JSON string)."""
    text = GATEWAY_YAML.read_text(encoding="utf-8")
    return text.replace("    command: python\n", f"    command: {json.dumps(python)}\n", 1)
