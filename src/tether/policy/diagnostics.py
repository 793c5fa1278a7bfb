"""Policy problems as ``file:line:col: message``, one per real problem, with "did you mean".

Cedar (through cedarpy) gives no source position: a parse error is one message for the whole
text, and a validation error names only the policy (``policy3``) it is about. This module puts
each back where it belongs:

* a parse error is searched statement by statement (:func:`tether.policy.syntax.split_statements`
  keeps each one's offset in the file). Cedar's parser is LR, so it stops at the first token that
  cannot continue a valid policy: the shortest token prefix of the statement that fails with
  something other than "unexpected end of input" ends at the offending token. A missing ``;``
  shows as the next policy's ``@``/``permit``/``forbid`` being unexpected; it is reported at the
  end of the policy that lacks it.
* a validation error's policy id gives the statement; the name Cedar quotes (an action, an entity
  type, an attribute path) is found among the statement's tokens.
* Cedar's consequential errors are dropped: "unable to find an applicable action" follows from an
  unknown action or entity type already reported for the same policy.

Names that are unknown get the closest known one (:func:`did_you_mean`), taken from the schema
(:class:`~tether.policy.schema_view.SchemaNames`): for an attribute, the attributes of the record
it was looked up in. And one problem Cedar cannot see: ``context.args has amont`` on an attribute
the schema does not declare validates (Cedar types it ``false`` and skips what it guards), yet at
request time the call may carry it and the policy reads it unchecked (:func:`undeclared_has`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, Final

import cedarpy

from tether.configfile.problems import Problem as Problem  # re-exported: policy problems
from tether.configfile.problems import ProblemsError, count
from tether.configfile.problems import did_you_mean as did_you_mean
from tether.core.errors import ErrorCode
from tether.policy.schema_view import SchemaNames
from tether.policy.syntax import Statement, Token, line_col, split_statements, tokenize

_EOF: Final = "unexpected end of input"
_VALIDATION_PREFIX: Final = re.compile(r"^for policy `[^`]*`,\s*")
_BACKTICKED: Final = re.compile(r"`([^`]+)`")
_NO_APPLICABLE_ACTION: Final = "unable to find an applicable action"
_POLICY_START: Final = frozenset({"@", "permit", "forbid"})


class PolicyInvalid(ProblemsError):
    """A policy set that cannot be loaded; ``problems`` holds each problem found."""

    def __init__(self, origin: str, problems: Sequence[Problem]) -> None:
        super().__init__(
            f"policy set {origin}",
            problems,
            code=ErrorCode.POLICY_INVALID,
            headline=f"policy set {origin} cannot be loaded ({count(problems)}):",
        )


# -- finding things in a statement -------------------------------------------------------------


def _find_sequence(tokens: Sequence[Token], texts: Sequence[str]) -> Token | None:
    """The first token of the first run of tokens spelling ``texts``."""
    n = len(texts)
    for i in range(len(tokens) - n + 1):
        if all(tokens[i + j].text == texts[j] for j in range(n)):
            return tokens[i]
    return None


def _find_fragment(tokens: Sequence[Token], fragment: str, *, last: bool = False) -> Token | None:
    """The token where ``fragment`` (Cedar's quotation of the source) starts."""
    wanted = [t.text for t in tokenize(fragment)]
    if wanted:
        runs = [
            tokens[i]
            for i in range(len(tokens) - len(wanted) + 1)
            if all(tokens[i + j].text == wanted[j] for j in range(len(wanted)))
        ]
        if runs:
            return runs[-1] if last else runs[0]
    for token in tokens:  # inside a token, e.g. a bad escape inside a string
        if fragment in token.text:
            return token
    return None


class _Locator:
    """Turns a position in one statement into a :class:`Problem` in its file."""

    def __init__(self, file: str, text: str, statement: Statement) -> None:
        self.file = file
        self.text = text
        self.statement = statement
        self.tokens = tokenize(statement.text)

    def at(self, offset_in_statement: int, message: str) -> Problem:
        line, col = line_col(self.text, self.statement.offset + offset_in_statement)
        return Problem(self.file, message, line, col)

    def at_token(self, token: Token | None, message: str) -> Problem:
        if token is None:
            return self.at_head(message)
        return self.at(token.start, message)

    def at_head(self, message: str) -> Problem:
        """At the policy's effect (``permit``/``forbid``), else its first token."""
        for token in self.tokens:
            if token.kind == "ident" and token.text in ("permit", "forbid"):
                return self.at(token.start, message)
        return self.at(self.tokens[0].start if self.tokens else 0, message)


# -- parse errors ------------------------------------------------------------------------------


def _parse_error(text: str) -> str | None:
    try:
        cedarpy.policies_to_json_str(text)
    except ValueError as exc:
        return str(exc)
    return None


def _schema_error(text: str) -> str | None:
    try:
        cedarpy.Schema.from_str(text)
    except ValueError as exc:
        return str(exc).removeprefix("error parsing schema: ")
    return None


def parse_problems(file: str, text: str, error: str) -> list[Problem]:
    """One problem per statement of ``text`` that Cedar cannot parse (``error`` is Cedar's
    message for the whole text, used when no single statement fails)."""
    problems = [
        _locate_parse_error(file, text, statement, message)
        for statement in split_statements(text)
        if (message := _parse_error(statement.text)) is not None
    ]
    return problems or [Problem(file, f"cannot be parsed: {error}")]


def _locate_parse_error(file: str, text: str, statement: Statement, message: str) -> Problem:
    where = _Locator(file, text, statement)
    tokens = where.tokens
    invalid = next((t for t in tokens if t.kind == "invalid"), None)
    if invalid is not None:
        what = "a string is not closed" if invalid.text.startswith('"') else "invalid character"
        return where.at(invalid.start, f"{what}: {invalid.text[:20]!r} ({message})")
    if message == _EOF:
        end = tokens[-1].end if tokens else 0
        if tokens and tokens[-1].text != ";":
            return where.at(
                end, "unexpected end of input: the policy is not finished (or its `;` is missing)"
            )
        return where.at(end, message)
    if message.startswith("unexpected token"):
        bad = _first_bad_token(statement.text, tokens, _BACKTICKED.findall(message)[:1])
        if bad is None:
            return where.at_head(message)
        index = tokens.index(bad)
        # The next policy begins where this one should have ended with `;` (Cedar stumbles on
        # its `@`, or on the `(` after `permit`, which it can read as a name).
        for start in (index, index - 1):
            if (
                start > 0
                and tokens[start].text in _POLICY_START
                and tokens[start - 1].text in ("}", ")")
            ):
                next_line, _ = line_col(text, statement.offset + tokens[start].start)
                return where.at(
                    tokens[start - 1].end,
                    f"missing `;` at the end of this policy (the next one starts at line "
                    f"{next_line})",
                )
        return where.at(bad.start, message)
    fragments = _BACKTICKED.findall(message) or message.rsplit(": ", 1)[1:]
    for fragment in reversed(fragments):
        token = _find_fragment(tokens, fragment, last=message.startswith("duplicate"))
        if token is not None:
            return where.at(token.start, message)
    return where.at_head(message)


def _first_bad_token(
    statement: str, tokens: Sequence[Token], named: Sequence[str], *, schema: bool = False
) -> Token | None:
    """The token at which Cedar's parser stops: the shortest failing prefix ends with it, or
    shortly after it (Cedar recovers from some errors and then reports the end of input for a
    prefix): then it is the last token before that spelled as Cedar quotes it (``named``).
    """

    parse = _schema_error if schema else _parse_error

    def fails_there(count: int) -> bool:
        message = parse(statement[: tokens[count - 1].end])
        return message is not None and message != _EOF

    lo, hi = 1, len(tokens)
    if not tokens or not fails_there(hi):
        return None
    while lo < hi:  # INVARIANT: the prefix of `hi` tokens fails; a shorter one may too
        mid = (lo + hi) // 2
        if fails_there(mid):
            hi = mid
        else:
            lo = mid + 1
    for token in reversed(tokens[:hi]):
        if not named or token.text == named[0]:
            return token
    return tokens[hi - 1]


# -- validation errors -------------------------------------------------------------------------


def validation_problems(
    file: str,
    text: str,
    statements: Sequence[Statement],
    errors: Iterable[tuple[int | None, str]],
    names: SchemaNames,
    label: Sequence[str],
    unknown_action_reported: Collection[int] = (),
) -> list[Problem]:
    """Cedar's validation errors, as ``(statement index or None, message)``, each placed in the
    file; ``label[i]`` names policy ``i`` (its id) in the message. Cedar's "unrecognized action"
    is left out for the policies in ``unknown_action_reported``: tether said it already."""
    by_policy: dict[int | None, list[str]] = {}
    for index, raw in errors:
        message = _VALIDATION_PREFIX.sub("", raw)
        if message not in by_policy.setdefault(index, []):
            by_policy[index].append(message)
    problems: list[Problem] = []
    for index, messages in by_policy.items():
        if index is None or index >= len(statements):
            problems.extend(Problem(file, f"does not match the schema: {m}") for m in messages)
            continue
        where = _Locator(file, text, statements[index])
        unknown_name = any(
            m.startswith(("unrecognized action", "unrecognized entity type")) for m in messages
        )
        for message in messages:
            if unknown_name and message.startswith(_NO_APPLICABLE_ACTION):
                continue  # a consequence of the unknown name, already reported
            if index in unknown_action_reported and message.startswith("unrecognized action"):
                continue
            problems.append(_locate_validation_error(where, message, names, label[index]))
    return problems


_UNKNOWN_ACTION: Final = re.compile(r'^unrecognized action `(?:.*::)?Action::"([^"]*)"`')
_UNKNOWN_TYPE: Final = re.compile(r"^unrecognized entity type `([^`]+)`")
_ATTRIBUTE: Final = re.compile(
    r"attribute `([^`]+)` (?:in context for Action::\"([^\"]*)\"|on entity type `([^`]+)`)"
)


def _locate_validation_error(
    where: _Locator, message: str, names: SchemaNames, policy: str
) -> Problem:
    suffix = f" (policy {policy})"
    if match := _UNKNOWN_ACTION.match(message):
        action = match.group(1)
        token = _find_fragment(where.tokens, f'Action::"{action}"')
        hint = _hint(action, names.actions, lambda a: f'Action::"{a}"')
        return where.at_token(token, f'unknown action Action::"{action}"{hint}{suffix}')
    if match := _UNKNOWN_TYPE.match(message):
        kind = match.group(1)
        token = next((t for t in where.tokens if t.text == kind.rsplit("::", 1)[-1]), None)
        hint = _hint(kind, names.entity_types, lambda k: k)
        return where.at_token(token, f"unknown entity type {kind}{hint}{suffix}")
    if match := _ATTRIBUTE.search(message):
        path = match.group(1).split(".")
        action, entity_type = match.group(2), match.group(3)
        token = _find_attribute(where.tokens, path, in_context=action is not None)
        hint = ""
        if message.endswith("not found"):
            record = (
                names.context_record(action, path[:-1])
                if action is not None
                else names.entity_record(entity_type or "")
            )
            hint = _hint(path[-1], record or (), lambda a: f"`{a}`")
        elif "optional attribute" in message:
            owner = ".".join(["context", *path[:-1]]) if action is not None else "…"
            hint = f"; test `{owner} has {path[-1]}` first"
        return where.at_token(token, f"{message}{hint}{suffix}")
    return where.at_head(f"does not match the schema: {message}{suffix}")


def _hint(word: str, known: Iterable[str], show: Any) -> str:
    match = did_you_mean(word, known)
    return f"; did you mean {show(match)}?" if match is not None else ""


def _find_attribute(
    tokens: Sequence[Token], path: Sequence[str], *, in_context: bool
) -> Token | None:
    """The token naming the last attribute of ``path`` (``context.a.b`` or ``… has b``)."""
    head = ["context", "."] if in_context else []
    dotted = [*head, *[part for name in path for part in (name, ".")][:-1]]
    for texts in (dotted, [*dotted[:-2], "has", path[-1]]):
        first = _find_sequence(tokens, texts)
        if first is not None:
            index = tokens.index(first) + len(texts) - 1
            return tokens[index]
    return next(
        (
            t
            for i, t in enumerate(tokens)
            if t.text == path[-1] and i > 0 and tokens[i - 1].text in (".", "has")
        ),
        None,
    )


def policy_problem(
    file: str, text: str, statement: Statement | None, message: str, near: str | None
) -> Problem:
    """A problem tether itself finds in a policy, at ``near`` (source text) when given."""
    if statement is None:
        return Problem(file, message)
    where = _Locator(file, text, statement)
    token = _find_fragment(where.tokens, near) if near else None
    return where.at_token(token, message)


def _context_path(node: object) -> list[str] | None:
    """``context.a.b`` in EST form as ``["a", "b"]``; ``None`` for anything else."""
    if node == {"Var": "context"}:
        return []
    if isinstance(node, dict) and isinstance(inner := node.get("."), dict):
        left = _context_path(inner.get("left"))
        attr = inner.get("attr")
        if left is not None and isinstance(attr, str):
            return [*left, attr]
    return None


def _has_tests(node: object) -> Iterator[tuple[list[str], str]]:
    """Every ``context.<path> has <attr>`` in a policy's EST conditions."""
    if isinstance(node, list):
        for item in node:
            yield from _has_tests(item)
    elif isinstance(node, dict):
        inner = node.get("has")
        if isinstance(inner, dict) and isinstance(inner.get("attr"), str):
            path = _context_path(inner.get("left"))
            if path is not None:
                yield path, inner["attr"]
        for value in node.values():
            yield from _has_tests(value)


def undeclared_has(
    where: tuple[str, str, Statement],
    conditions: object,
    actions: Iterable[str],
    names: SchemaNames,
    label: str,
    reported: str,
) -> list[Problem]:
    """A problem for each ``context.<path> has <attr>`` where, for every action the policy
    applies to, the schema declares the record at ``<path>`` without ``attr``. ``reported`` is
    Cedar's messages for the policy: an attribute Cedar already named is not reported again."""
    file, text, statement = where
    locator = _Locator(file, text, statement)
    problems: list[Problem] = []
    seen: set[tuple[str, ...]] = set()
    for path, attr in _has_tests(conditions):
        dotted = ".".join([*path, attr])
        if (*path, attr) in seen or f"`{dotted}`" in reported:
            continue
        seen.add((*path, attr))
        records = [names.context_record(action, path) for action in actions]
        if not records or any(r is None or attr in r for r in records):
            continue
        owner = ".".join(["context", *path])
        close = did_you_mean(attr, {a for r in records if r is not None for a in r})
        hint = f"did you mean `{close}`? Or declare" if close else "declare"
        token = _find_sequence(locator.tokens, [path[-1] if path else "context", "has", attr])
        problems.append(
            locator.at_token(
                locator.tokens[locator.tokens.index(token) + 2] if token is not None else None,
                f"`{owner} has {attr}`: the schema declares no `{attr}` in {owner}, so Cedar "
                f"cannot check how this policy uses it; {hint} it (optional) in the schema "
                f"(policy {label})",
            )
        )
    return problems


_SCHEMA_DECLARATION: Final = frozenset({"entity", "action", "type", "namespace", "@"})
_SCHEMA_BUILTINS: Final = frozenset(
    {"String", "Long", "Bool", "Boolean", "Set", "ipaddr", "decimal", "datetime", "duration"}
)
_UNRESOLVED: Final = re.compile(r"failed to resolve types?: (.+)$")


def schema_problem(file: str, text: str, message: str) -> Problem:
    """Cedar's error for a schema it cannot parse, placed at its token (see the module doc)."""
    whole = Statement(1, text, 0)
    where = _Locator(file, text, whole)
    tokens = where.tokens
    detail = message.removeprefix("error parsing schema: ")
    prefix = "Cedar cannot parse the schema: "
    if detail.startswith("unexpected token"):
        bad = _first_bad_token(text, tokens, _BACKTICKED.findall(detail)[:1], schema=True)
        if bad is not None:
            index = tokens.index(bad)
            if bad.text in _SCHEMA_DECLARATION and index > 0 and tokens[index - 1].text != ";":
                return where.at(tokens[index - 1].end, "missing `;` at the end of this declaration")
            return where.at(bad.start, prefix + detail)
    if detail == _EOF and tokens:
        return where.at(tokens[-1].end, prefix + detail)
    if match := _UNRESOLVED.search(detail):
        name = match.group(1).split(",")[0].strip()
        declared = {
            tokens[i + 1].text
            for i, t in enumerate(tokens[:-1])
            if t.text in ("entity", "type") and tokens[i + 1].kind == "ident"
        }
        hint = _hint(name, declared | _SCHEMA_BUILTINS, lambda n: n)
        used = next(
            (
                t
                for i, t in enumerate(tokens)
                if t.text == name.rsplit("::", 1)[-1] and i > 0 and tokens[i - 1].text in ":[,<"
            ),
            None,
        )
        if used is not None:
            return where.at(used.start, f"unknown type {name}{hint}")
    return Problem(file, prefix + detail)
