"""The fenced code blocks of a Markdown file, with the line each starts on and its skip marker.

A block the docs test cannot run is marked in the Markdown itself, on the line right before its
fence (blank lines between are allowed):

    <!-- docs-test: skip, the reason, said once -->

A marker that is not followed by a block, or that is spelt wrongly, is an error rather than a
comment the harness overlooks: a skip is always explicit and counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: Info strings whose blocks the harness runs, and how.
SHELL: Final = frozenset({"sh", "bash", "shell"})
PYTHON: Final = frozenset({"python", "py"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
_SKIP = re.compile(r"^\s*skip\s*,\s*(?P<reason>\S.*?)\s*$")


class MarkerError(ValueError):
    """A ``docs-test`` marker the harness cannot honour."""


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    name: str  # how reports name the file, e.g. sdk/README.md
    line: int  # the line of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None  # the reason given in its marker, or None

    @property
    def runs(self) -> bool:
        return self.lang in SHELL | PYTHON

    @property
    def where(self) -> str:
        return f"{self.name}:{self.line}"


def blocks(path: Path, name: str | None = None) -> list[Block]:
    """Every fenced block of ``path`` in order, executable or not; ``name`` labels them in
    reports (the file's name by default)."""
    name = name or path.name
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    pending: tuple[int, str] | None = None  # a skip marker waiting for its block
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if marker:
            if pending is not None:
                raise MarkerError(f"{name}:{pending[0]}: a docs-test marker with no block")
            skip = _SKIP.match(marker["body"])
            if skip is None:
                raise MarkerError(
                    f"{name}:{index + 1}: write the marker as '<!-- docs-test: skip, REASON -->'"
                )
            pending = (index + 1, skip["reason"])
        elif fence:
            end = _closing(lines, index, fence["indent"], fence["fence"])
            body = [_dedent(text, fence["indent"]) for text in lines[index + 1 : end]]
            lang = fence["info"].strip().split(" ", 1)[0].lower() if fence["info"].strip() else ""
            reason = pending[1] if pending else None
            found.append(Block(path, name, index + 1, lang, "\n".join(body) + "\n", reason))
            pending = None
            index = end
        elif line.strip() and pending is not None:
            raise MarkerError(f"{name}:{pending[0]}: a docs-test marker with no block")
        index += 1
    if pending is not None:
        raise MarkerError(f"{name}:{pending[0]}: a docs-test marker with no block")
    return found


def _closing(lines: list[str], start: int, indent: str, fence: str) -> int:
    for index in range(start + 1, len(lines)):
        text = lines[index]
        if text.strip().startswith(fence[0] * len(fence)) and not text.strip().strip(fence[0]):
            return index
    raise MarkerError(f"line {start + 1}: a code block that is never closed")


def _dedent(text: str, indent: str) -> str:
    return text[len(indent) :] if text.startswith(indent) else text.lstrip()
