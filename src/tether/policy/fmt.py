"""Formatting Cedar policy text the way Cedar's own formatter does (``tether policy fmt``).

Comments are kept. Text Cedar cannot parse is refused with the statement that fails, since the
formatter itself only says that it could not parse the input.
"""

from __future__ import annotations

import cedarpy

from tether.core.errors import ConfigurationError, ErrorCode
from tether.policy.diagnostics import parse_problems


def format_policy_text(
    text: str, *, line_width: int = 80, indent_width: int = 2, name: str = "<text>"
) -> str:
    """``text`` formatted by Cedar; raises ``ConfigurationError(POLICY_INVALID)`` on bad syntax."""
    try:
        return str(cedarpy.format_policies(text, line_width, indent_width))
    except ValueError as exc:
        problems = parse_problems(name, text, str(exc))
        raise ConfigurationError(
            "\n".join(str(p) for p in problems), code=ErrorCode.POLICY_INVALID
        ) from None


def is_formatted(text: str, *, line_width: int = 80, indent_width: int = 2) -> bool:
    """True when formatting ``text`` would not change it."""
    return format_policy_text(text, line_width=line_width, indent_width=indent_width) == text
