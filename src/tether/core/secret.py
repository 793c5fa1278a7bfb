"""Secrets are a type (STYLE rule 8): their repr is redacted and revealing one is explicit.

A :class:`Secret` never prints, formats, pickles or compares its value by accident; code that
needs the value calls :meth:`Secret.reveal` at the one place it is put on the wire.
"""

from __future__ import annotations

import hmac
from typing import NoReturn

_REDACTED = "Secret('**********')"


class Secret:
    """A value that must never reach a log, an exception, an audit record or a repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret is a string")
        self._value = value

    def reveal(self) -> str:
        """The value itself. Call it only where the value goes on the wire."""
        return self._value

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)  # equal secrets must hash alike; the value must not leak through it

    def __reduce__(self) -> NoReturn:
        raise TypeError("secrets are not picklable")
