"""What tether reads from a Cedar schema for its own messages: declared names and record types.

cedarpy exposes a parsed schema only as Cedar's rendering of it (``str(schema)``), which is in
Cedar's normalised schema syntax. This reads that rendering with a small, tolerant parser (the
tokens of :func:`tether.policy.syntax.tokenize`) to know the entity types, the actions, the common
types and each action's context record, so a message can suggest the name that was meant and
:func:`undeclared_has` can find ``has`` tests of attributes the schema does not declare. It is
for messages only: validation itself is Cedar's. Anything it does not understand is skipped, and
an unreadable schema gives no suggestions rather than an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tether.policy.syntax import Token, tokenize

#: A type: a record (attribute -> type), ``("Set", element)``, or a type's name.
SchemaType = dict[str, Any] | tuple[str, Any] | str

_BUILTIN: Final = "__cedar::"


@dataclass(frozen=True, slots=True)
class SchemaNames:
    """The names a schema declares, and its record types."""

    entity_types: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    common_types: Mapping[str, SchemaType] = field(default_factory=dict)
    entity_attributes: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    contexts: Mapping[str, SchemaType] = field(default_factory=dict)

    @staticmethod
    def of(schema: Any) -> SchemaNames:
        if schema is None:
            return SchemaNames()
        try:
            return _Parser(tokenize(str(schema))).parse()
        except (IndexError, ValueError):  # pragma: no cover - Cedar renders what it parsed
            return SchemaNames()

    def resolve(self, schema_type: SchemaType | None) -> SchemaType | None:
        """Follow common type names (at most a few hops) to the type they stand for."""
        for _ in range(8):
            if not isinstance(schema_type, str):
                return schema_type
            name = schema_type.removeprefix(_BUILTIN)
            found = self.common_types.get(name) or self.common_types.get(name.rsplit("::", 1)[-1])
            if found is None:
                return schema_type
            schema_type = found
        return schema_type

    def context_record(self, action: str, path: Sequence[str]) -> dict[str, Any] | None:
        """The attributes of the record at ``context.<path>`` for ``action``, if it is one."""
        current = self.resolve(self.contexts.get(action))
        for name in path:
            if not isinstance(current, dict) or name not in current:
                return None
            current = self.resolve(current[name])
        return current if isinstance(current, dict) else None

    def entity_record(self, entity_type: str) -> dict[str, Any] | None:
        return self.entity_attributes.get(entity_type)


class _Parser:
    """Reads Cedar's rendering of a schema (see :class:`SchemaNames`)."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.entities: set[str] = set()
        self.actions: set[str] = set()
        self.common: dict[str, SchemaType] = {}
        self.entity_attrs: dict[str, dict[str, Any]] = {}
        self.contexts: dict[str, SchemaType] = {}

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.tokens[j].text if j < len(self.tokens) else ""

    def take(self) -> str:
        text = self.peek()
        self.i += 1
        return text

    def parse(self) -> SchemaNames:
        self.declarations("")
        return SchemaNames(
            frozenset(self.entities),
            frozenset(self.actions),
            self.common,
            self.entity_attrs,
            self.contexts,
        )

    def declarations(self, namespace: str) -> None:
        while self.i < len(self.tokens) and self.peek() != "}":
            self.annotations()
            word = self.take()
            if word == "namespace":
                name = self.path()
                self.take()  # {
                self.declarations(f"{namespace}{name}::")
                self.take()  # }
            elif word == "type":
                name = self.take()
                self.take()  # =
                self.common[f"{namespace}{name}"] = self.type()
                self.skip_to_semicolon()
            elif word == "entity":
                names = [f"{namespace}{n}" for n in self.names()]
                self.entities.update(names)
                while self.peek() not in ("{", ";", ""):
                    if self.peek() == "[":
                        self.skip_group("[", "]")
                    else:
                        self.take()
                if self.peek() == "{":
                    record = self.type()
                    for name in names:
                        self.entity_attrs[name] = record if isinstance(record, dict) else {}
                self.skip_to_semicolon()
            elif word == "action":
                names = self.names()
                self.actions.update(names)
                self.action_body(names)
            else:
                self.skip_to_semicolon()

    def annotations(self) -> None:
        while self.peek() == "@":
            self.take()
            self.take()
            if self.peek() == "(":
                self.skip_group("(", ")")

    def path(self) -> str:
        parts = [self.take()]
        while self.peek() == "::":
            self.take()
            parts.append(self.take())
        return "::".join(parts)

    def names(self) -> list[str]:
        out = [self.take().strip('"')]
        while self.peek() == ",":
            self.take()
            out.append(self.take().strip('"'))
        return out

    def action_body(self, names: list[str]) -> None:
        while self.peek() not in (";", ""):
            if self.take() == "appliesTo":
                self.take()  # {
                while self.peek() not in ("}", ""):
                    key = self.take()
                    self.take()  # :
                    if self.peek() == "[":
                        self.skip_group("[", "]")
                    else:
                        value = self.type()
                        if key == "context":
                            for name in names:
                                self.contexts[name] = value
                    if self.peek() == ",":
                        self.take()
                self.take()  # }
        self.take()  # ;

    def type(self) -> SchemaType:
        if self.peek() == "{":
            self.take()
            record: dict[str, Any] = {}
            while self.peek() not in ("}", ""):
                self.annotations()
                name = self.take().strip('"')
                if self.peek() == "?":
                    self.take()
                self.take()  # :
                record[name] = self.type()
                if self.peek() == ",":
                    self.take()
            self.take()  # }
            return record
        if self.peek() == "Set" and self.peek(1) == "<":
            self.take()
            self.take()
            element = self.type()
            self.take()  # >
            return ("Set", element)
        return self.path()

    def skip_group(self, opening: str, closing: str) -> None:
        depth = 0
        for text in self._rest():
            if text == opening:
                depth += 1
            elif text == closing:
                depth -= 1
                if depth == 0:
                    return

    def skip_to_semicolon(self) -> None:
        for text in self._rest():
            if text == ";":
                return

    def _rest(self) -> Iterator[str]:
        while self.i < len(self.tokens):
            yield self.take()
