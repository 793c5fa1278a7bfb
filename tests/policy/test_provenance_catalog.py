"""catalog.yaml's provenance part (policy/provenance.py): trusted sources and sink arguments as
the engine serves them, and Cedar deciding on context.provenance."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from support import copy_policies
from tether.cli.main import app
from tether.core.provenance import Need, Outcome, Source, Trust
from tether.core.provenance_extract import ValueKind
from tether.policy.catalog import CatalogProblem, parse_catalog

CATALOG = """
datasets:
  contacts: {classification: internal, trusted: true}
  inbox: {classification: confidential}
tools:
  calendar.list: {trusted: true, description: the user's own calendar}
  web.browse:
    sinks:
      url: {needs: trusted}
  chat.send:
    sinks:
      body: {needs: not_only_untrusted, on_failure: approval_required}
      event.title: {needs: trusted, kinds: [text, date]}
trusted_values: ["mycompany.example"]
"""


def test_the_catalog_declares_trusted_sources_and_sinks() -> None:
    rules = parse_catalog(CATALOG).provenance
    assert rules.trust_of("calendar.list", None) is Trust.TRUSTED
    assert rules.trust_of("mail.read", "contacts") is Trust.TRUSTED  # a trusted dataset
    assert rules.trust_of("mail.read", "inbox") is Trust.UNTRUSTED
    assert rules.trust_of("web.browse", None) is Trust.UNTRUSTED
    assert rules.trusted_values == ("mycompany.example",)
    [url] = rules.sinks_for("web.browse")
    assert (url.argument, url.need, url.outcome) == ("url", Need.TRUSTED, Outcome.DENY)
    assert ValueKind.URL in url.kinds and ValueKind.TEXT not in url.kinds
    body, title = rules.sinks_for("chat.send")
    assert (body.need, body.outcome) == (Need.NOT_ONLY_UNTRUSTED, Outcome.APPROVAL_REQUIRED)
    assert title.argument == "event.title" and title.kinds == {ValueKind.TEXT, ValueKind.DATE}
    assert rules.sinks_for("calendar.list") == ()


def test_a_catalog_without_provenance_trusts_no_tool_and_guards_no_argument() -> None:
    rules = parse_catalog("datasets: {crm: {classification: confidential}}").provenance
    assert rules.trust_of("crm.query", "crm") is Trust.UNTRUSTED
    assert rules.sinks_for("crm.query") == () and rules.trusted_values == ()


PARTS = """\
tools:
  chat.read:
    parts: {author: sender, trusted_authors: members}
  drive.list:
    parts: {items: page.files, author: meta.owner, trusted_authors: members}
trusted_authors:
  members: [Alice, Bob]
"""


def test_the_catalog_gives_parts_of_a_result_their_own_trust() -> None:
    rules = parse_catalog(PARTS).provenance
    chat = rules.parts_for("chat.read")
    assert chat is not None
    assert (chat.items, chat.author, chat.authors) == ((), ("sender",), {"Alice", "Bob"})
    drive = rules.parts_for("drive.list")
    assert drive is not None
    assert (drive.items, drive.author) == (("page", "files"), ("meta", "owner"))
    # The result as a whole stays untrusted; a tool without parts has none.
    assert rules.trust_of("chat.read", None) is Trust.UNTRUSTED
    assert rules.parts_for("web.browse") is None


@pytest.mark.parametrize(
    ("catalog", "problem"),
    [
        (
            "tools:\n  chat.read:\n    parts: {author: sender, trusted_authors: membres}\n"
            "trusted_authors:\n  members: [Alice]\n",
            "catalog.yaml:3:46: tools.chat.read.parts.trusted_authors: no list of trusted "
            "authors named 'membres'; did you mean 'members'?",
        ),
        (
            "tools:\n  chat.read:\n    parts: {author: sender, trusted_authors: members}\n",
            "catalog.yaml:3:46: tools.chat.read.parts.trusted_authors: no list of trusted "
            "authors named 'members' (declare it under the catalog's trusted_authors)",
        ),
        (
            "tools:\n  chat.read:\n    trusted: true\n"
            "    parts: {author: sender, trusted_authors: members}\n"
            "trusted_authors: {members: [Alice]}\n",
            "catalog.yaml:4:12: tools.chat.read.parts: a trusted tool's result is trusted whole: "
            "drop 'parts' or 'trusted'",
        ),
        (
            "tools:\n  chat.read:\n    parts: {author: 'meta..owner', trusted_authors: m}\n"
            "trusted_authors: {m: [Alice]}\n",
            "catalog.yaml:3:21: tools.chat.read.parts.author: 'meta..owner' is not a key path "
            "('sender', or 'meta.owner')",
        ),
        (
            "tools:\n  chat.read:\n    parts: {trusted_authors: m}\ntrusted_authors: {m: [A]}\n",
            "catalog.yaml:3:5: tools.chat.read.parts: required key 'author' is missing",
        ),
        (
            "trusted_authors:\n  members: Alice\n",
            "catalog.yaml:2:12: trusted_authors.members: must be a list",
        ),
        (
            "trusted_authors:\n  members: []\n",
            "catalog.yaml:2:12: trusted_authors.members: must not be empty",
        ),
    ],
)
def test_a_bad_parts_rule_is_reported_at_its_place(catalog: str, problem: str) -> None:
    with pytest.raises(CatalogProblem) as caught:
        parse_catalog(catalog)
    assert problem in [str(p) for p in caught.value.problems]


def test_policy_validate_reports_a_bad_parts_rule_at_file_line_col(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path / "policies")
    catalog = policies / "catalog.yaml"
    catalog.write_text(
        catalog.read_text()
        + "tools:\n  chat.read:\n    parts: {author: sender, trusted_authors: membres}\n"
        "trusted_authors:\n  members: [Alice]\n"
    )
    line = len(catalog.read_text().splitlines()) - 2
    result = CliRunner().invoke(app, ["policy", "validate", str(policies)])
    assert result.exit_code == 1
    assert (
        f"{catalog}:{line}:46: tools.chat.read.parts.trusted_authors: no list of trusted authors "
        "named 'membres'; did you mean 'members'?"
    ) in result.stdout.splitlines()


def test_a_result_is_recorded_under_its_untrusted_rest_then_its_trusted_parts() -> None:
    rules = parse_catalog(PARTS).provenance
    bob = {"sender": "Bob", "body": "www.informations.example"}
    eve = {"sender": "eve", "body": "www.true-informations.example"}
    untrusted = Source("chat.read", None, Trust.UNTRUSTED)
    trusted = Source("chat.read", None, Trust.TRUSTED)
    assert rules.sources_of("chat.read", None, [bob, eve]) == (
        (untrusted, [eve]),
        (trusted, [bob]),
    )
    # No trusted part: the result whole, under its one source.
    assert rules.sources_of("chat.read", None, [eve]) == ((untrusted, [eve]),)
    assert rules.sources_of("chat.read", None, "Bob: hi") == ((untrusted, "Bob: hi"),)
