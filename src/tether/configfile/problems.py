"""A problem in a source file, placed at ``file:line:col``, and the error that carries them.

Every file tether reads and checks (Cedar policies and schema, the policy directory's YAML, the
proxy's and the gateway's config) reports what is wrong the same way: one :class:`Problem` per
real problem, each printed as ``file:line:col: message`` (the way compilers do, so editors jump
to it), all of them at once. :class:`ProblemsError` is the ``ConfigurationError`` that carries
them; :func:`did_you_mean` proposes the known name closest to a misspelt one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tether.core.errors import ConfigurationError, ErrorCode

#: The most problems an error message lists (the rest are counted).
MAX_PROBLEMS: Final = 50


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in one file; ``line`` and ``col`` are 1-based, ``None`` when unknown."""

    file: str
    message: str
    line: int | None = None
    col: int | None = None

    @property
    def where(self) -> str:
        out = self.file
        if self.line is not None:
            out += f":{self.line}"
            if self.col is not None:
                out += f":{self.col}"
        return out

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message}


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The known name closest to ``word``, if one is close enough to be a likely typo."""
    found = difflib.get_close_matches(word, sorted(set(candidates) - {word}), n=1, cutoff=0.6)
    return found[0] if found else None


def list_problems(problems: Sequence[Problem]) -> str:
    """The problems one per line (indented), at most :data:`MAX_PROBLEMS` of them."""
    shown = [str(p) for p in problems[:MAX_PROBLEMS]]
    more = len(problems) - len(shown)
    tail = f"\n  … and {more} more" if more else ""
    return "  " + "\n  ".join(shown) + tail


def count(problems: Sequence[Problem]) -> str:
    return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"


class ProblemsError(ConfigurationError):
    """A file (or a set of files) that cannot be used; ``problems`` holds every problem found.

    A single problem in the file ``what`` is the whole message (``file:line:col: message``);
    otherwise the problems are listed under a headline (``catalog.yaml has 3 problems:``)."""

    default_code = ErrorCode.CONFIGURATION

    def __init__(
        self,
        what: str,
        problems: Sequence[Problem],
        *,
        code: ErrorCode | None = None,
        headline: str | None = None,
    ) -> None:
        if headline is None and len(problems) == 1 and problems[0].file == what:
            message = str(problems[0])
        else:
            top = headline if headline is not None else f"{what} has {count(problems)}:"
            message = f"{top}\n{list_problems(problems)}"
        super().__init__(message, code=code)
        self.problems = tuple(problems)
