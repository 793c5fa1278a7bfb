"""The exit status of every ``tether`` command: one meaning each, mapped here once.

    0  OK            the command did what it was asked
    1  CHECK_FAILED  a check ran and found a problem: policy tests, the audit chain, a format or
                     schema check, the demo's expectations
    2  USAGE         the command was given wrong: an option, an argument, its input, the
                     configuration it reads (click answers 2 for its own usage errors too)
    3  UNAVAILABLE   the server or the store cannot be reached, or cannot answer now
    4  NOT_FOUND     what was named (a task, an approval, a store, a file) does not exist
    5  REFUSED       a missing or bad token, no permission, or a state that does not allow it

Scripts branch on these (README "Scripting the CLI", whose table a test compares with
:data:`MEANING`); a test runs a real command for each.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from tether.core.errors import (
    CODE_BRANCH,
    ConfigurationError,
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    NotFound,
    TetherError,
    Unauthenticated,
    Unavailable,
)


class ExitCode(IntEnum):
    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    UNAVAILABLE = 3
    NOT_FOUND = 4
    REFUSED = 5


#: Each status in a few words: ``tether --help`` lists them, and the README's table says the same.
MEANING: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "ok",
    ExitCode.CHECK_FAILED: "a check failed",
    ExitCode.USAGE: "usage: the command was given wrong",
    ExitCode.UNAVAILABLE: "the server or the store is unreachable or unavailable",
    ExitCode.NOT_FOUND: "not found",
    ExitCode.REFUSED: "refused",
}


def exit_status_help() -> str:
    """The statuses as one paragraph, for ``--help``."""
    return "Exit status: " + "; ".join(f"{code.value} {MEANING[code]}" for code in ExitCode) + "."


_BY_BRANCH: Final[dict[type[TetherError], ExitCode]] = {
    InvalidRequest: ExitCode.USAGE,
    ConfigurationError: ExitCode.USAGE,
    Unauthenticated: ExitCode.REFUSED,
    Forbidden: ExitCode.REFUSED,
    Conflict: ExitCode.REFUSED,
    NotFound: ExitCode.NOT_FOUND,
    Unavailable: ExitCode.UNAVAILABLE,
}

#: Codes whose meaning is narrower than their branch's.
_BY_CODE: Final[dict[ErrorCode, ExitCode]] = {
    # Policies that do not validate fail a check (``tether policy validate``, ``serve -p``).
    ErrorCode.POLICY_INVALID: ExitCode.CHECK_FAILED,
}


def exit_code_for(cause: TetherError | ErrorCode | int) -> ExitCode:
    """The exit status for one of tether's errors (or its code), or for an HTTP status a tether
    server answered. A server's status is used rather than its error code: a 5xx is the
    server's problem (``UNAVAILABLE``), whatever branch its code belongs to."""
    if isinstance(cause, TetherError):
        cause = cause.code
    if isinstance(cause, ErrorCode):
        return _BY_CODE.get(cause) or _BY_BRANCH[CODE_BRANCH[cause]]
    if cause < 400:
        return ExitCode.OK
    if cause == 404:
        return ExitCode.NOT_FOUND
    if cause in (401, 403, 409):
        return ExitCode.REFUSED
    if cause == 429 or cause >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.USAGE  # 400, 413, 422 and any other 4xx: the request was wrong
