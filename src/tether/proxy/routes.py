"""From an HTTP request to a tether :class:`~tether.core.call.Call`: the path normalized, a route
matched, the arguments mapped. No I/O.

The path is read from the raw request target (ASGI ``raw_path``), never from a decoded one, so
an encoded slash cannot smuggle a different route (RFC 3986 §3.3): a segment holding ``%2F`` or
``%5C``, a dot segment (``.``, ``..``, also encoded, also as Tomcat's ``..;``), an empty
segment, a backslash, a control character or a malformed escape is refused. What the upstream
receives is rebuilt from the matched route: its literal segments as configured and each
parameter re-encoded, with only the query parameters the route names. What the proxy
authorized is what the upstream sees.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, quote, unquote, urlencode

from tether.core import strict_json
from tether.core.scope import JSONValue
from tether.proxy.config import ArgSource, ArgSourceKind, ArgType, Route
from tether.proxy.errors import ProxyCode, Refused

MAX_PATH_BYTES: Final = 4096
MAX_QUERY_BYTES: Final = 8192
MAX_QUERY_FIELDS: Final = 100
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SEPARATOR_ESCAPE = re.compile(r"%(2[fF]|5[cC])")
_INTEGER = re.compile(r"^-?[0-9]{1,18}$")
_NUMBER = re.compile(r"^-?[0-9]{1,18}(\.[0-9]{1,18})?([eE][-+]?[0-9]{1,3})?$")


@dataclass(frozen=True, slots=True)
class Target:
    """The request target: the upstream named by the first segment, and the decoded rest."""

    upstream: str
    segments: tuple[str, ...]  # a trailing slash leaves a final "" segment

    @property
    def display(self) -> str:
        return "/" + "/".join(self.segments)


def _invalid(why: str) -> Refused:
    return Refused(ProxyCode.INVALID_PATH, f"the request path {why}")


def _segment(raw: str) -> str:
    if _SEPARATOR_ESCAPE.search(raw):
        raise _invalid("has an encoded '/' or '\\' in a segment")
    if _BAD_ESCAPE.search(raw):
        raise _invalid("has a malformed percent-escape")
    try:
        decoded = unquote(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _invalid("is not UTF-8 once decoded") from None
    if decoded.split(";", 1)[0] in {".", ".."}:
        raise _invalid("has a '.' or '..' segment")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        raise _invalid("has a control character")
    return decoded


def parse_target(raw_path: bytes) -> Target:
    """The normalized target of ``/<upstream>/<path>``; ``Refused(invalid_path)`` otherwise."""
    if len(raw_path) > MAX_PATH_BYTES:
        raise _invalid(f"is longer than {MAX_PATH_BYTES} bytes")
    try:
        text = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise _invalid("must be ASCII (percent-encode anything else)") from None
    if not text.startswith("/") or "\\" in text or "#" in text:
        raise _invalid("must be /<upstream>/<path>")
    raw_segments = text[1:].split("/")
    if not raw_segments[0]:
        raise _invalid("must start with the upstream's name: /<upstream>/<path>")
    segments = [_segment(s) for s in raw_segments]
    for i, segment in enumerate(segments):
        if segment == "" and i != len(segments) - 1:
            raise _invalid("has an empty segment ('//')")
    upstream, *rest = segments
    return Target(upstream, tuple(rest))


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    params: Mapping[str, str]

    def upstream_path(self) -> str:
        """The path sent upstream: the template's literals, each parameter re-encoded."""
        template = self.route.path
        out = []
        for i, segment in enumerate(template.segments):
            if i in template.params:
                out.append(quote(self.params[template.param_name(i)], safe=""))
            else:
                out.append(segment)
        return "/" + "/".join(out)


class RouteTable:
    """The configured routes by upstream and method, most specific first."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        table: dict[tuple[str, str], list[Route]] = {}
        for route in routes:
            table.setdefault((route.upstream, route.method), []).append(route)
        for candidates in table.values():
            # Literals before parameters, segment by segment; then config order.
            candidates.sort(
                key=lambda r: tuple(i in r.path.params for i in range(len(r.path.segments)))
            )
        self._table = table

    def match(self, method: str, target: Target) -> Match | None:
        for route in self._table.get((target.upstream, method), ()):
            template = route.path
            if len(template.segments) != len(target.segments):
                continue
            params: dict[str, str] = {}
            for i, (want, got) in enumerate(zip(template.segments, target.segments, strict=True)):
                if i in template.params:
                    if not got:
                        break
                    params[template.param_name(i)] = got
                elif want != got:
                    break
            else:
                return Match(route, params)
        return None


# -- query and body -----------------------------------------------------------------------------


def parse_query(raw: bytes, route: Route) -> dict[str, str]:
    """The query parameters, each named once and each allowed by the route."""
    if not raw:
        return {}
    if len(raw) > MAX_QUERY_BYTES:
        raise Refused(ProxyCode.INVALID_QUERY, f"the query is longer than {MAX_QUERY_BYTES} bytes")
    try:
        text = raw.decode("ascii")
        if _BAD_ESCAPE.search(text):
            raise ValueError
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise Refused(ProxyCode.INVALID_QUERY, "the query string is malformed") from None
    query: dict[str, str] = {}
    allowed = route.query_names
    for name, value in pairs:
        if name in query:
            # Parsers disagree on repeated parameters (first wins, last wins, a list): refuse.
            raise Refused(ProxyCode.INVALID_QUERY, f"the query parameter {name!r} is repeated")
        if name not in allowed:
            raise Refused(
                ProxyCode.QUERY_NOT_ALLOWED,
                f"the query parameter {name!r} is not allowed on this route"
                + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""),
            )
        query[name] = value
    return query


def encode_query(query: Mapping[str, str], extra: tuple[tuple[str, str], ...] = ()) -> str:
    return urlencode([*query.items(), *extra], quote_via=quote)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def parse_body(body: bytes, content_type: str | None) -> dict[str, JSONValue]:
    """A JSON object body, read by tether's one strict reader (:mod:`tether.core.strict_json`):
    the bytes forwarded are the bytes decided on, so a duplicate key (read differently by
    different parsers) or a string that is not Unicode text is refused."""
    if not _is_json(content_type):
        raise Refused(
            ProxyCode.INVALID_BODY, "this route reads the body: send it as application/json"
        )
    try:
        value = strict_json.loads(body)
    except strict_json.JsonRefused as refused:
        raise Refused(ProxyCode.INVALID_BODY, str(refused)) from None
    if not isinstance(value, dict):
        raise Refused(ProxyCode.INVALID_BODY, "the body must be a JSON object")
    return value


# -- arguments ----------------------------------------------------------------------------------


def _convert(name: str, value: str, kind: ArgType) -> JSONValue:
    bad = Refused(ProxyCode.INVALID_ARGUMENTS, f"argument {name!r} must be a {kind.value}")
    match kind:
        case ArgType.STRING:
            return value
        case ArgType.INTEGER:
            if not _INTEGER.fullmatch(value):
                raise bad
            return int(value)
        case ArgType.NUMBER:
            if not _NUMBER.fullmatch(value):
                raise bad
            number = float(value)
            if not math.isfinite(number):
                raise bad
            return int(number) if _INTEGER.fullmatch(value) else number
        case ArgType.BOOLEAN:
            if value not in {"true", "false"}:
                raise bad
            return value == "true"


def _check(name: str, value: JSONValue, kind: ArgType) -> JSONValue:
    ok = {
        ArgType.STRING: isinstance(value, str),
        ArgType.INTEGER: isinstance(value, int) and not isinstance(value, bool),
        ArgType.NUMBER: isinstance(value, int | float) and not isinstance(value, bool),
        ArgType.BOOLEAN: isinstance(value, bool),
    }[kind]
    if not ok:
        raise Refused(ProxyCode.INVALID_ARGUMENTS, f"argument {name!r} must be a {kind.value}")
    return value


def _field(value: JSONValue, path: tuple[str, ...]) -> tuple[bool, JSONValue]:
    """The value at ``path`` (names into objects, indexes into lists), and whether it is there."""
    for segment in path:
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return False, None
    return True, value


def _one(
    name: str,
    source: ArgSource,
    params: Mapping[str, str],
    query: Mapping[str, str],
    body: Mapping[str, JSONValue] | None,
) -> tuple[bool, JSONValue]:
    match source.kind:
        case ArgSourceKind.PATH | ArgSourceKind.QUERY:
            found = (params if source.kind is ArgSourceKind.PATH else query).get(source.path[0])
            if found is None:
                return False, None
            return True, _convert(name, found, source.type or ArgType.STRING)
        case ArgSourceKind.BODY:
            present, value = _field(dict(body or {}), source.path)
            if present and source.type is not None:
                _check(name, value, source.type)
            return present, value


def call_args(
    match: Match, query: Mapping[str, str], body: Mapping[str, JSONValue] | None
) -> dict[str, JSONValue]:
    """The call's arguments by the route's mapping; an absent one is left out (a constraint on
    it then denies with ``argument_missing``)."""
    args: dict[str, JSONValue] = {}
    for name, source in match.route.args:
        present, value = _one(name, source, match.params, query, body)
        if present:
            args[name] = value
    return args


def count_records(body: bytes, path: tuple[str, ...]) -> int | None:
    """The length of the list at ``path`` in a JSON response body; ``None`` if there is none."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    present, found = _field(value, path)
    return len(found) if present and isinstance(found, list) else None
