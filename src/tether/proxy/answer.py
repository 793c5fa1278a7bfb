"""What of an upstream's answer the agent may see: hop-by-hop and session headers dropped, and the
injected secret taken out (:mod:`tether.core.redact`, the redactor the MCP gateway uses) wherever
the proxy can rewrite the part whole, the answer withheld where it cannot.

    status line     the reason phrase is searched; it never reaches the agent (the proxy's own
                    server writes the standard phrase for the status), so a secret there is
                    recorded, not rewritten
    header name     a header whose name holds the secret is dropped, value and all: the marker
                    ``[redacted:NAME]`` is no token, so no name can carry it (RFC 9110 §5.1)
    header value    each secret becomes ``[redacted:NAME]`` (``Location``, ``X-Debug``, …); in a
                    header that is dropped anyway (``Set-Cookie``, hop-by-hop) it is recorded
    body            read whole within ``max_response_bytes`` (nothing larger is ever passed:
                    ``upstream_response_too_large``) and, when it came without a content coding,
                    each secret becomes ``[redacted:NAME]``; the proxy's server then sets
                    ``Content-Length`` from the redacted body
    withheld        ``leaked_secret`` (502 ``upstream_leaked_secret``), as before redaction:
                    a body that came content-coded (gzip, deflate; decoded to be searched) and
                    holds the secret, and any part still holding a secret once redacted
                    (:class:`~tether.core.redact.Unredactable`)

A coded body is withheld rather than redacted, a conservative choice: rewriting is kept to
bytes the proxy passes on in the representation the upstream sent them (RFC 9110 §8.4: a coded
body is another representation, decoded here only to be searched), so what the agent reads
differs from what the upstream wrote only by markers in place. Redacting the decoded bytes would
be as safe; it is not done, so a compressed echo stays as loud as it was.

Every redaction is returned as a :class:`Redaction` (where, and the secrets' names, forms and
counts) for the ``secret_redacted`` audit record; nothing here holds or returns a secret's value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tether.core.redact import Found, Redactor, Unredactable, merge
from tether.proxy.config import SecretRef

#: Response headers never passed back (RFC 9110 §7.6.1 hop-by-hop fields, framing, date and
#: server the proxy's own server sets, the upstream's alternative services, and sessions).
DROPPED_RESPONSE_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "alt-svc",
        "set-cookie",
        "set-cookie2",
    }
)
#: Where in an answer a secret was (the audit record's ``where``).
STATUS_LINE: Final = "status_line"
HEADER_NAME: Final = "header_name"
BODY: Final = "body"
#: Header names quoted in an audit record are cut to this length.
_MAX_NAME_SHOWN: Final = 64


@dataclass(frozen=True, slots=True)
class Redaction:
    """One place in an answer a secret was taken out of (or dropped with), and what was found
    there: names, forms and counts, never a value."""

    where: str
    found: tuple[Found, ...]


class Withheld(Exception):
    """A part of the answer holds the secret and cannot be rewritten: the answer is withheld.
    ``where`` and ``forms`` name the place and the forms found, never the secret."""

    def __init__(self, where: str, found: tuple[Found, ...]) -> None:
        super().__init__(f"the secret could not be redacted from the answer's {where}")
        self.where = where
        self.forms = ",".join(sorted({form for f in found for form in f.forms})) or "unredactable"


def header_place(name: bytes) -> str:
    """``header:<name>``, the name lower-cased and cut short (it is known not to hold a secret)."""
    return "header:" + name.decode("latin-1")[:_MAX_NAME_SHOWN].lower()


def _dropped(names: Sequence[str], connection: Sequence[str], ref: SecretRef | None) -> set[str]:
    listed = {token.strip().lower() for value in connection for token in value.split(",")}
    dropped = set(DROPPED_RESPONSE_HEADERS) | listed
    if ref is not None and ref.header is not None:
        dropped.add(ref.header.lower())
    return {name for name in names if name in dropped}


def passed_headers(
    raw: Sequence[tuple[bytes, bytes]], ref: SecretRef | None, redactor: Redactor | None
) -> tuple[tuple[tuple[str, str], ...], list[Redaction]]:
    """The headers the agent gets (Latin-1, byte for byte as received but for the markers) and
    the redactions made on the way. Raises :class:`Withheld`."""
    decoded = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in raw]
    connection = [value for name, value in decoded if name == "connection"]
    dropped = _dropped([name for name, _ in decoded], connection, ref)
    out: list[tuple[str, str]] = []
    redactions: list[Redaction] = []
    for (name, value), (raw_name, raw_value) in zip(decoded, raw, strict=True):
        if redactor is None:
            if name not in dropped:
                out.append((name, value))
            continue
        if found := redactor.find(raw_name):
            # INVARIANT: a name holding the secret is never quoted, in the record or anywhere.
            redactions.append(Redaction(HEADER_NAME, merge(found + redactor.find(raw_value))))
            continue
        place = header_place(raw_name)
        if name in dropped:
            if found := redactor.find(raw_value):
                redactions.append(Redaction(place, found))
            continue
        try:
            clean, found = redactor.redact_bytes(raw_value)
        except Unredactable:
            raise Withheld(place, redactor.find(raw_value)) from None
        if found:
            redactions.append(Redaction(place, found))
            value = clean.decode("latin-1")
        out.append((name, value))
    return tuple(out), redactions


def status_line(reason: bytes, redactor: Redactor) -> list[Redaction]:
    """The reason phrase is never passed on; a secret in it is recorded."""
    found = redactor.find(reason)
    return [Redaction(STATUS_LINE, found)] if found else []


def redacted_body(body: bytes, coded: bool, redactor: Redactor) -> tuple[bytes, list[Redaction]]:
    """``body`` with the secret redacted (the same object when it holds none). Raises
    :class:`Withheld` for a ``coded`` body (it came content-coded) that holds the secret, or
    one that still holds it once redacted."""
    if coded:
        found = redactor.find(body)
        if found:
            raise Withheld(BODY, found)
        return body, []
    try:
        clean, found = redactor.redact_bytes(body)
    except Unredactable:
        raise Withheld(BODY, redactor.find(body)) from None
    return clean, [Redaction(BODY, found)] if found else []


__all__ = [
    "BODY",
    "DROPPED_RESPONSE_HEADERS",
    "HEADER_NAME",
    "STATUS_LINE",
    "Redaction",
    "Withheld",
    "header_place",
    "passed_headers",
    "redacted_body",
    "status_line",
]
