"""Reading one YAML file safely, and remembering where each of its values is written.

:func:`read_yaml` is the one way tether reads a YAML file it is configured by
(:func:`read_yaml_file` reads it from disk first, never more than the bound). It

* bounds the input (:data:`MAX_YAML_BYTES` by default, and :data:`MAX_NODES` nodes once aliases
  are followed, so an alias bomb cannot blow up), refuses text that is not UTF-8;
* loads with PyYAML's safe loader only (no Python tags);
* refuses a key written twice in one mapping (YAML's "last one wins" would hide a typo), every
  duplicate reported;
* keeps, for every path into the document (``("routes", 0, "tool")``), the line and column of
  its key and of its value.

A YAML syntax error, an oversized file and duplicate keys are :class:`Problem` values at
``file:line:col`` in the :class:`~tether.configfile.problems.ProblemsError` it raises. The
:class:`YamlDocument` it returns places later problems (:meth:`YamlDocument.problem`, and the
typed models' errors, :mod:`tether.configfile.models`) in the file the same way. A document made
from data already in memory (:meth:`YamlDocument.of`) has no positions: its problems name the
path alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Final

import yaml

from tether.configfile.problems import Problem, ProblemsError
from tether.core.errors import ErrorCode

MAX_YAML_BYTES: Final = 1024 * 1024
#: Nodes visited with aliases followed: far above any real config, far below an alias bomb.
MAX_NODES: Final = 100_000
MAX_DEPTH: Final = 64
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
#: What PyYAML's safe constructors raise, besides YAMLError, for a scalar that its tag (written,
#: ``!!int abc``, or implicit, ``2024-02-30``) does not fit.
_BAD_SCALAR: Final = (ValueError, TypeError, KeyError, AttributeError, OverflowError)

#: A path into a document: mapping keys and list indexes.
Path = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Place:
    """A 1-based line and column."""

    line: int
    col: int

    @staticmethod
    def of(mark: yaml.Mark) -> Place:
        return Place(mark.line + 1, mark.column + 1)


def show_path(path: Sequence[object]) -> str:
    """``routes[0].args.id``; ``(top level)`` for the empty path."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class YamlDocument:
    """A YAML document's data, with the place of each key and value when read from a file."""

    def __init__(
        self,
        file: str,
        data: object,
        *,
        keys: Mapping[Path, Place] | None = None,
        values: Mapping[Path, Place] | None = None,
        code: ErrorCode = ErrorCode.CONFIGURATION,
        error: type[ProblemsError] = ProblemsError,
        text: str | None = None,
    ) -> None:
        self.file = file
        self.data = data
        #: The YAML source, when read from one.
        self.text = text
        self.code = code
        self.error = error
        self._keys = dict(keys or {})
        self._values = dict(values or {})

    @classmethod
    def of(
        cls,
        data: object,
        *,
        file: str,
        code: ErrorCode = ErrorCode.CONFIGURATION,
        error: type[ProblemsError] = ProblemsError,
    ) -> YamlDocument:
        """A document for data already parsed (problems then carry no line)."""
        return cls(file, data, code=code, error=error)

    def place(self, path: Path, *, key: bool = False) -> Place | None:
        """Where ``path`` is written: its key (``key=True``, when it has one) or its value; the
        nearest enclosing place when ``path`` itself is not in the file."""
        if key and path in self._keys:
            return self._keys[path]
        for end in range(len(path), -1, -1):
            found = self._values.get(path[:end])
            if found is not None:
                return found
        return None

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        """A problem about ``path``: ``file:line:col: path: message``."""
        place = self.place(path, key=key)
        text = f"{show_path(path)}: {message}"
        if place is None:
            return Problem(self.file, text)
        return Problem(self.file, text, place.line, place.col)

    def fail(self, problems: Sequence[Problem]) -> ProblemsError:
        """The error to raise for ``problems`` (sorted by place)."""
        ordered = sorted(problems, key=lambda p: (p.line or 0, p.col or 0))
        return self.error(self.file, ordered, code=self.code)


def read_yaml(
    source: str | bytes,
    *,
    file: str,
    max_bytes: int = MAX_YAML_BYTES,
    code: ErrorCode = ErrorCode.CONFIGURATION,
    error: type[ProblemsError] = ProblemsError,
) -> YamlDocument:
    """Parse one YAML document (see the module doc); raises ``error`` listing every problem."""
    size = len(source.encode("utf-8") if isinstance(source, str) else source)
    if size > max_bytes:
        raise error(file, [Problem(file, f"is {size} bytes, more than {max_bytes}")], code=code)
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(
                file, [Problem(file, f"is not UTF-8 text (byte {exc.start})")], code=code
            ) from None
    loader = yaml.SafeLoader(source)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise error(file, [Problem(file, "is nested too deeply")], code=code) from None
        except yaml.YAMLError as exc:
            raise error(file, [_syntax_problem(file, exc)], code=code) from None
        if node is None:
            return YamlDocument(file, None, code=code, error=error, text=source)
        walk = _Walk(file, loader)
        walk.node(node, (), 0)
        if walk.problems:
            raise error(file, walk.problems, code=code)
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise error(file, [_syntax_problem(file, exc)], code=code) from None
    finally:
        loader.dispose()
    return YamlDocument(
        file, data, keys=walk.keys, values=walk.values, code=code, error=error, text=source
    )


def read_yaml_file(
    path: FilePath,
    *,
    file: str | None = None,
    max_bytes: int = MAX_YAML_BYTES,
    code: ErrorCode = ErrorCode.CONFIGURATION,
    error: type[ProblemsError] = ProblemsError,
) -> YamlDocument:
    """:func:`read_yaml` of the file at ``path`` (named ``file`` in problems, ``path`` by
    default); a file that cannot be read is a problem too. At most ``max_bytes`` + 1 bytes are
    read: a larger file is refused without reading the rest."""
    name = str(path) if file is None else file
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        problem = Problem(name, f"cannot be read ({exc.strerror or type(exc).__name__})")
        raise error(name, [problem], code=code) from None
    if len(data) > max_bytes:
        raise error(name, [Problem(name, f"is more than {max_bytes} bytes")], code=code)
    return read_yaml(data, file=name, max_bytes=max_bytes, code=code, error=error)


def _syntax_problem(file: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        if mark is not None:
            return Problem(file, f"not valid YAML: {what}", mark.line + 1, mark.column + 1)
        return Problem(file, f"not valid YAML: {what}")
    return Problem(file, f"not valid YAML: {exc}")


class _Walk:
    """One pass over the composed nodes: places, duplicate keys, size and depth limits."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.keys: dict[Path, Place] = {}
        self.values: dict[Path, Place] = {}
        self.problems: list[Problem] = []
        self.count = 0

    def _add(self, mark: yaml.Mark, message: str) -> None:
        self.problems.append(Problem(self.file, message, mark.line + 1, mark.column + 1))

    def node(self, node: yaml.Node, path: Path, depth: int) -> None:
        self.count += 1
        if self.count > MAX_NODES or depth > MAX_DEPTH:
            if self.count == MAX_NODES + 1 or depth == MAX_DEPTH + 1:
                limit = (
                    f"more than {MAX_NODES} values (aliases counted each time they are used)"
                    if depth <= MAX_DEPTH
                    else f"nested more than {MAX_DEPTH} levels deep"
                )
                self._add(node.start_mark, f"{show_path(path[:3])}…: {limit}")
            return
        self.values.setdefault(path, Place.of(node.start_mark))
        if isinstance(node, yaml.ScalarNode):
            self._scalar(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.node(item, (*path, index), depth + 1)
        elif isinstance(node, yaml.MappingNode):
            self._mapping(node, path, depth)

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> None:
        """Construct the scalar now (the document reuses it), so a value its tag does not fit
        is a problem at its place; the value itself is not repeated (it may be a secret)."""
        try:
            self.loader.construct_object(node)
        except yaml.YAMLError as exc:
            self.problems.append(_syntax_problem(self.file, exc))
        except _BAD_SCALAR:
            tag = node.tag.rsplit(":", 1)[-1]
            self._add(
                node.start_mark, f"{show_path(path)}: not a valid {tag} (in quotes it is a string)"
            )

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> None:
        seen: dict[object, Place] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *base`: its keys are the base's
                merged.extend(
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._add(key_node.start_mark, f"{show_path(path)}: a key must be a plain value")
                continue
            try:
                key = self.loader.construct_object(key_node)
                hash(key)
            except (yaml.YAMLError, *_BAD_SCALAR):
                self._add(key_node.start_mark, f"{show_path(path)}: a key must be a plain value")
                continue
            place = Place.of(key_node.start_mark)
            first = seen.setdefault(key, place)
            if first is not place:
                self._add(
                    key_node.start_mark,
                    f"{show_path((*path, key))}: duplicate key (first at line {first.line}); "
                    "keep one",
                )
                continue
            self.keys.setdefault((*path, key), place)
            self.node(value_node, (*path, key), depth + 1)
        for base in merged:  # after the explicit keys, which win over the merged ones
            self.node(base, path, depth + 1)
