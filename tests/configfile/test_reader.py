"""The one YAML reader's own rules: a value its tag does not fit is a problem at its place, not
a crash; a file is read from disk within its bound; a file that may hold secrets is checked
without any value of it, or hint drawn from one, in a message."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from tether.configfile import (
    ProblemsError,
    YamlModel,
    read_yaml,
    read_yaml_file,
    validate,
)


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        read_yaml(text, file="f.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!int s3cret\n", "f.yaml:1:4: a: not a valid int (in quotes it is a string)"),
        ("a: !!float s3cret\n", "f.yaml:1:4: a: not a valid float (in quotes it is a string)"),
        ("a: !!bool s3cret\n", "f.yaml:1:4: a: not a valid bool (in quotes it is a string)"),
        (
            "a: !!timestamp s3cret\n",
            "f.yaml:1:4: a: not a valid timestamp (in quotes it is a string)",
        ),
        (
            "a: [1, 2024-02-30]\n",
            "f.yaml:1:8: a[1]: not a valid timestamp (in quotes it is a string)",
        ),
        (
            "a: !!int " + "9" * 5000 + "\n",
            "f.yaml:1:4: a: not a valid int (in quotes it is a string)",
        ),
        ("2024-02-30: x\n", "f.yaml:1:1: (top level): a key must be a plain value"),
    ],
)
def test_a_value_its_tag_does_not_fit_is_a_problem_at_its_place(text: str, expected: str) -> None:
    # Before, PyYAML's constructors raised ValueError, KeyError or AttributeError out of the
    # reader: every loader crashed on such a file instead of reporting it.
    found = problems(text)
    assert found == [expected]
    assert "s3cret" not in found[0]


def test_a_file_is_read_within_its_bound_and_an_unreadable_one_is_a_problem(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "x" * 200 + "\n")
    with pytest.raises(ProblemsError) as caught:
        read_yaml_file(path, max_bytes=100)
    assert [str(p) for p in caught.value.problems] == [f"{path}: is more than 100 bytes"]
    assert read_yaml_file(path, file="named.yaml", max_bytes=1000).data == {"a": "x" * 200}
    with pytest.raises(ProblemsError) as caught:
        read_yaml_file(tmp_path / "absent.yaml", file="absent.yaml")
    assert str(caught.value) == "absent.yaml: cannot be read (No such file or directory)"
    if os.geteuid() != 0:  # root reads a file whatever its mode
        path.chmod(0)
        with pytest.raises(ProblemsError) as caught:
            read_yaml_file(path)
        assert str(caught.value) == f"{path}: cannot be read (Permission denied)"


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"


class Inner(YamlModel):
    level: Level | None = None
    kind: Literal["postgres", "redis"] | None = None


class Outer(YamlModel):
    inner: Inner | None = None
    elsewhere: ClassVar[dict[str, str]] = {"routes": "this goes in proxy.yaml"}


SECRET_TYPOS = "inner: {level: debugg, kind: postgress}\n"


def test_values_can_be_kept_out_of_every_message() -> None:
    doc = read_yaml(SECRET_TYPOS, file="f.yaml")
    with pytest.raises(ProblemsError) as caught:
        validate(doc, Outer)
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:1:16: inner.level: must be one of 'debug' or 'info'; did you mean 'debug'?",
        "f.yaml:1:30: inner.kind: must be one of 'postgres' or 'redis'; did you mean 'postgres'?",
    ]
    # A file that may hold secrets: no hint drawn from a value (it tells what the value is).
    with pytest.raises(ProblemsError) as caught:
        validate(doc, Outer, echo_values=False)
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:1:16: inner.level: must be one of 'debug' or 'info'",
        "f.yaml:1:30: inner.kind: must be one of 'postgres' or 'redis'",
    ]


def test_a_key_of_another_file_says_where_it_goes_and_a_key_must_be_a_string() -> None:
    doc = read_yaml("routes: []\ninner: {1: x}\n", file="f.yaml")
    with pytest.raises(ProblemsError) as caught:
        validate(doc, Outer)
    assert [str(p) for p in caught.value.problems] == [
        "f.yaml:1:1: routes: unknown key (this goes in proxy.yaml)",
        "f.yaml:2:9: inner[1]: a key must be a string (in quotes it is one)",
    ]
