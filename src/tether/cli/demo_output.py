"""How ``tether demo`` prints its calls once they ran: tab-separated lines in a pipe, or the
Markdown table the README shows (``tether demo --markdown``).

The Markdown table is the README's, byte for byte (a test compares them), so it holds only what is
the same on every run: the ids tether mints (``apr_…``, ``brk_…``, ``lse_…``) and clock times are
replaced by an ellipsis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tether.cli.output import Column, print_table

_MINTED_ID: Final = re.compile(r"\b(apr|brk|lse|dec|tsk|eff)_[0-9a-z]{8,}\b")
_TIMESTAMP: Final = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?")
_CLOCK: Final = re.compile(r"\b\d\d:\d\d:\d\d\b")


def stable(text: str) -> str:
    """``text`` without what changes from run to run: minted ids and times."""
    text = _MINTED_ID.sub(lambda m: f"{m[1]}_…", text)
    return _CLOCK.sub("…", _TIMESTAMP.sub("…", text))


def described(call: Mapping[str, Any]) -> str:
    """``action tool [dataset] {args}`` for an authorize call, else the step itself."""
    what = call.get("call")
    if not isinstance(what, Mapping):
        return str(call["step"])
    args = what.get("args") or {}
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(args.items()))
    return (
        f"{what['action']} {what['tool']}"
        + (f" [{what['dataset']}]" if what.get("dataset") else "")
        + (f" {{{shown}}}" if shown else "")
    )


def _agent(call: Mapping[str, Any]) -> str:
    return str(call["agent"]) + "".join(
        f" via {str(a).rsplit('/', 1)[-1]}" for a in call.get("via") or []
    )


def _verdict(call: Mapping[str, Any]) -> str:
    return str(call["decision"]) + ("" if call["ok"] else f" (expected {call['expected']})")


def _reasons(call: Mapping[str, Any]) -> str:
    return "; ".join(f"{r['code']}: {r['message']}" for r in call.get("reasons", []))


def print_plain(calls: Sequence[Mapping[str, Any]]) -> None:
    """The calls as tab-separated lines (a header, then one line a call)."""
    rows = [
        [
            str(call["number"]),
            _agent(call),
            described(call),
            _verdict(call),
            _reasons(call) or str(call.get("detail") or ""),
            ",".join(call.get("risks", [])),
            call.get("effect") or "",
        ]
        for call in calls
    ]
    headers = ("#", "agent", "call", "verdict", "reasons", "risks", "effect")
    print_table("calls", [Column(h) for h in headers], rows)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def markdown(calls: Sequence[Mapping[str, Any]]) -> str:
    """The calls as the README's Markdown table, the same on every run."""
    lines = ["| # | agent | call | verdict | why |", "|---|---|---|---|---|"]
    for call in calls:
        why = [f"`{r['code']}`: {r['message']}" for r in call.get("reasons", [])]
        if not why and call.get("detail"):
            why.append(str(call["detail"]))
        unnamed = [p for p in call.get("policy_ids") or [] if p not in _reasons(call)]
        if unnamed:
            why.append("policy " + ", ".join(f"`{p}`" for p in unnamed))
        if call.get("effect"):
            why.append(f"effect: {call['effect']}")
        what = described(call)
        if isinstance(call.get("call"), Mapping):
            what = f"{_code(what)}: {call['step']}"
        cells = (str(call["number"]), _agent(call), what, _verdict(call), "; ".join(why))
        lines.append("| " + " | ".join(_md(stable(cell)) for cell in cells) + " |")
    return "\n".join(lines) + "\n"
