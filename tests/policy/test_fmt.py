"""`tether policy fmt`: Cedar's own formatter, comments kept, bad syntax named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.core.errors import ConfigurationError, ErrorCode
from tether.policy.fmt import format_policy_text, is_formatted

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def test_formats_and_keeps_comments() -> None:
    text = '// why\npermit(principal,action==Action::"read",resource) when {context.a==1};\n'
    formatted = format_policy_text(text)
    assert formatted.startswith("// why\npermit (")
    assert "context.a == 1" in formatted
    assert is_formatted(formatted)
    assert not is_formatted(text)


def test_formatting_is_idempotent() -> None:
    text = (EXAMPLES / "payments.cedar").read_text()
    once = format_policy_text(text)
    assert format_policy_text(once) == once


def test_bad_syntax_names_the_line_and_column() -> None:
    text = "permit(principal, action, resource);\n\nforbid(principal, action resource);\n"
    with pytest.raises(ConfigurationError) as info:
        format_policy_text(text, name="x.cedar")
    assert info.value.code is ErrorCode.POLICY_INVALID
    assert info.value.message == "x.cedar:3:26: unexpected token `resource`"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.cedar")))
def test_the_examples_are_formatted(name: str) -> None:
    assert is_formatted((EXAMPLES / name).read_text()), f"run tether policy fmt on {name}"
