"""Reading a ``GET /metrics`` scrape in tests: the samples by name and labels, and the check that
a door's decisions are counted under the metric names of ``tether serve``."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def assert_one_allow_and_one_deny(text: str) -> None:
    """The scrape counts one allowed ``crm.query`` and one ``crm.update`` denied as out of scope,
    their decision writes, and a readable store with an open task."""
    found = samples(text)
    allow = frozenset({("decision", "allow"), ("tool", "crm.query"), ("reason", "")})
    deny = frozenset(
        {("decision", "deny"), ("tool", "crm.update"), ("reason", "tool_not_in_scope")}
    )
    assert found[("tether_decisions_total", allow)] == 1
    assert found[("tether_decisions_total", deny)] == 1
    assert found[("tether_audit_append_seconds_count", frozenset())] >= 2
    assert found[("tether_store_up", frozenset())] == 1
    assert found[("tether_tasks_open", frozenset())] >= 1
