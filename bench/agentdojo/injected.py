"""Where AgentDojo puts injected text, and who the platform says wrote each place.

A catalog may trust the parts of a result a listed author wrote (a Slack message's sender, a
file's owner). That is safe only if no such part carries an attacker's words, so this script
measures it instead of assuming it: it fills every injection vector of a suite with a canary,
walks the injected environment and prints each place a canary landed, with the author fields
of the item holding it (``sender``, ``owner``, ``organizer``, ``author``).

    bench/agentdojo/.venv/bin/python bench/agentdojo/injected.py --suite slack --suite workspace
"""

from __future__ import annotations

import argparse
from typing import Any

from agentdojo.task_suite.load_suites import get_suite

CANARY = "INJECTED_CANARY"
AUTHOR_FIELDS = ("sender", "owner", "organizer", "author")


def places(value: Any, path: tuple[str, ...] = (), holder: Any = None) -> list[tuple[str, str]]:
    """Each path holding a canary, with the author fields of the mapping around it."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += places(inner, (*path, str(key)), value)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += places(inner, (*path, str(index)), holder)
    elif isinstance(value, str) and CANARY in value:
        authors = holder if isinstance(holder, dict) else {}
        named = ", ".join(f"{k}={authors[k]}" for k in AUTHOR_FIELDS if k in authors)
        found.append(("/".join(path), named or "(no author field)"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="Where AgentDojo puts injected text.")
    parser.add_argument("--version", default="v1.2.2")
    parser.add_argument("--suite", action="append", default=None)
    options = parser.parse_args()
    for name in options.suite or ["slack", "workspace"]:
        suite = get_suite(options.version, name)
        vectors = suite.get_injection_vector_defaults()
        environment = suite.load_and_inject_default_environment(
            {vector: f"{CANARY}_{vector}" for vector in vectors}
        )
        print(f"{name} ({options.version}): {len(vectors)} injection vectors")
        for path, authors in places(environment):
            print(f"  {path}: {authors}")


if __name__ == "__main__":
    main()
