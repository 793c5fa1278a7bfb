"""Typed models of YAML files (pydantic, at the edge), their errors placed at ``file:line:col``.

Each kind of file declares one :class:`YamlModel` per YAML mapping it holds (unknown keys are
refused, instances are frozen); :func:`validate` checks a :class:`YamlDocument` against the
file's root model and turns *every* pydantic error into a :class:`Problem` at the key or value it
is about, named by its path (``routes[0].method: must be one of …``):

* an unknown key is placed at the key, with the closest allowed key ("did you mean") or, when
  none is close, the keys allowed there;
* a missing key is placed at the mapping that lacks it;
* a value that does not fit is placed at the value, with pydantic's words (or plainer ones for
  the common type errors); a misspelt enum value also gets "did you mean".

Pydantic's input is hidden, so a message repeats a value of the file only when a model's own
validator puts it there (``'bad name' is not a valid dataset name``). A file that may hold
secrets (database URLs, webhook secrets) is validated with ``echo_values=False``: then no hint
is drawn from a value either (a "did you mean" next to a misspelt value tells what it nearly
is), and its models' validators must not name the value they check.

Checks across fields run in the models' own validators, so they are made even when another
field is wrong: a validator raises :class:`Below` to place each problem at the field below it
that is wrong (``args.id``), and :func:`share`/:func:`shared` pass names from a model to those
validated after it (a route checks its upstream against the upstreams declared before it).
The models stay at the edge: each file's loader turns its model into the frozen domain values
the rest of tether uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from tether.configfile.problems import Problem, did_you_mean
from tether.configfile.yamldoc import Path, YamlDocument
from tether.core.scope import is_valid_name

M = TypeVar("M", bound=BaseModel)

#: A whole number (``true`` and ``"5"`` are not numbers).
StrictCount = Annotated[int, Strict(), Field(ge=0)]
#: A positive whole number.
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
#: ``true`` or ``false`` (not ``"yes"``, not ``1``).
Flag = Annotated[bool, Strict()]
#: A string that is not empty.
Text = Annotated[str, Strict(), Field(min_length=1, max_length=4096)]

_PLAIN: Final = {
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "frozen_set_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "path_type": "must be a path (a string)",
}
_QUOTED: Final = re.compile(r"'([^']*)'")
_PREFIXES: Final = ("Value error, ", "Assertion failed, ")


_BY_NAME: dict[str, type[YamlModel] | None] = {}


class _Seen:
    """The validation's context: which model each mapping of the document was validated as
    (for "did you mean"), and what models share with the ones validated after them."""

    def __init__(self, echo_values: bool) -> None:
        self.models: dict[int, type[YamlModel]] = {}
        self.shared: dict[str, object] = {}
        self.echo_values = echo_values


class Below(ValueError):
    """Raised by a validator: problems inside the value it checks, each at a path relative to
    that value (``Below((("args", "id"), "no parameter {ident}"))``), so checks across fields
    land on the field that is wrong."""

    def __init__(self, *found: tuple[Path, str]) -> None:
        super().__init__("; ".join(message for _, message in found))
        self.found = found


def share(info: ValidationInfo, key: str, value: object) -> None:
    """Leave ``value`` for models validated later in the same document (fields are validated
    in the order their model declares them)."""
    if isinstance(info.context, _Seen):
        info.context.shared[key] = value


def shared(info: ValidationInfo, key: str) -> object:
    """What an earlier model shared under ``key``; ``None`` when it did not validate."""
    return info.context.shared.get(key) if isinstance(info.context, _Seen) else None


class YamlModel(BaseModel):
    """One YAML mapping: unknown keys are refused, the instance is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    #: Keys that belong in another file, with where they go: the hint for such an unknown key.
    elsewhere: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _remember(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(info.context, _Seen) and isinstance(data, dict):
            info.context.models[id(data)] = cls
        return data

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A model's class name is all pydantic's "must be a mapping" error says of it.
        _BY_NAME[cls.__name__] = None if cls.__name__ in _BY_NAME else cls

    @classmethod
    def keys(cls) -> list[str]:
        """The keys this mapping allows, as written in the file."""
        return [field.alias or name for name, field in cls.model_fields.items()]


def validate(
    doc: YamlDocument, model: type[M], *, if_empty: object = None, echo_values: bool = True
) -> M:
    """``doc`` as ``model``; raises ``doc.error`` with one problem per pydantic error.

    ``if_empty`` stands for an empty document (``None`` is validated as it is).
    ``echo_values=False``: no hint drawn from a value of the file (see the module doc)."""
    data = if_empty if doc.data is None and if_empty is not None else doc.data
    seen = _Seen(echo_values)
    try:
        return model.model_validate(data, context=seen)
    except ValidationError as exc:
        problems = _problems(doc, data, exc.errors(include_url=False), seen)
        raise doc.fail(problems) from None


def _problems(
    doc: YamlDocument, data: object, errors: Iterable[Mapping[str, Any]], seen: _Seen
) -> list[Problem]:
    out: list[Problem] = []
    for error in errors:
        below = (error.get("ctx") or {}).get("error")
        if isinstance(below, Below):
            path = _walk(data, error.get("loc", ()))[0]
            found = [doc.problem((*path, *sub), message) for sub, message in below.found]
        else:
            found = [_problem(doc, data, error, seen)]
        out.extend(p for p in found if p not in out)
    return out


def _walk(data: object, loc: Iterable[object]) -> tuple[Path, object, list[object]]:
    """Follow pydantic's ``loc`` into ``data``: the path that exists, the value there, and the
    last part of ``loc`` when it is not in the data (a missing key's name, or ``[key]``). The
    other parts that are not in the data name a union member or a validator: skipped."""
    parts = list(loc)
    path: list[object] = []
    node = data
    for index, part in enumerate(parts):
        if isinstance(node, dict):
            key = _key_in(node, part)
            if key is not _NONE:
                path.append(key)
                node = node[key]
                continue
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
            continue
        if index == len(parts) - 1:
            return tuple(path), node, [part]
    return tuple(path), node, []


_NONE: Final = object()


def _key_in(mapping: dict[Any, Any], part: object) -> object:
    if part in mapping:
        return part
    for key in mapping:  # pydantic shows a non-string key as a string
        if str(key) == str(part):
            return key
    return _NONE


def _problem(doc: YamlDocument, data: object, error: Mapping[str, Any], seen: _Seen) -> Problem:
    kind = str(error.get("type", ""))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    path, node, rest = _walk(data, error.get("loc", ()))
    if kind == "extra_forbidden":
        parent = seen.models.get(id(_walk(data, path[:-1])[1]))
        return doc.problem(path, "unknown key" + _key_hint(path[-1], parent), key=True)
    if kind == "invalid_key":  # a key of a model's mapping that YAML read as a number, a date…
        return doc.problem(path, "a key must be a string (in quotes it is one)", key=True)
    if kind == "missing" and rest:
        return doc.problem(path, f"required key {rest[-1]!r} is missing", key=True)
    if kind == "union_tag_not_found":
        field = str(ctx.get("discriminator", "")).strip("'")
        return doc.problem(path, f"required key {field!r} is missing", key=True)
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "")).strip("'")
        expected = str(ctx.get("expected_tags", ""))
        hint = _value_hint(str(ctx.get("tag", "")), expected) if seen.echo_values else ""
        at = (*path, field) if isinstance(node, dict) and field in node else path
        return doc.problem(at, f"must be one of {expected}{hint}")
    on_key = bool(rest) and rest[0] == "[key]"
    value = path[-1] if on_key and path else node
    message = _describe(kind, ctx, value, str(error.get("msg", "is not valid")), seen.echo_values)
    if on_key and kind in _PLAIN:
        message = f"the key {message}"
    return doc.problem(path, message, key=on_key)


def _describe(
    kind: str, ctx: Mapping[str, Any], value: object, message: str, echo_values: bool
) -> str:
    """What is wrong with ``value``, in plain words where pydantic's are about Python."""
    if kind in ("enum", "literal_error"):
        expected = str(ctx.get("expected", ""))
        hint = _value_hint(value, expected) if isinstance(value, str) and echo_values else ""
        return f"must be one of {expected}{hint}"
    if kind in ("model_type", "model_attributes_type"):
        model = _BY_NAME.get(str(ctx.get("class_name", "")))
        keys = f" (keys: {', '.join(model.keys())})" if model is not None else ""
        return f"must be a mapping{keys}"
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    return _bound(kind, ctx) or _PLAIN.get(kind, message)


def _bound(kind: str, ctx: Mapping[str, Any]) -> str | None:
    """Plain words for a number or a length out of its bounds."""
    number = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("above", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("below", "lt"),
    }.get(kind)
    if number is not None:
        words, key = number
        value = ctx.get(key)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"must be {words} {shown}"
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length")
        if least == 1:
            return "must not be empty"
        return f"must have at least {least} {'items' if kind == 'too_short' else 'characters'}"
    if kind in ("too_long", "string_too_long"):
        most = ctx.get("max_length")
        return f"must have at most {most} {'items' if kind == 'too_long' else 'characters'}"
    return None


def _key_hint(key: object, model: type[YamlModel] | None) -> str:
    if model is None:
        return ""
    if str(key) in model.elsewhere:
        return f" ({model.elsewhere[str(key)]})"
    known = model.keys()
    close = did_you_mean(str(key), known)
    if close is not None:
        return f"; did you mean {close!r}?"
    return f"; allowed here: {', '.join(sorted(known))}"


def _value_hint(value: object, expected: str) -> str:
    close = did_you_mean(str(value), _QUOTED.findall(expected))
    return f"; did you mean {close!r}?" if close is not None else ""


def matching(pattern: str, what: str) -> AfterValidator:
    """A check that a string is all of ``pattern``; ``what`` says what it must be otherwise
    (the value itself is never repeated: it could be a credential)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(what)
        return value

    return AfterValidator(check)


def named(longest: int, what: str) -> AfterValidator:
    """A check that a string is a name (:func:`tether.core.scope.is_valid_name`)."""

    def check(value: str) -> str:
        if not is_valid_name(value, longest):
            raise ValueError(what)
        return value

    return AfterValidator(check)
