"""catalog.yaml's provenance part (policy/provenance.py): trusted sources and sink arguments as
the engine serves them, and Cedar deciding on context.provenance."""

from __future__ import annotations

from tether.core.provenance import Need, Outcome, Trust
from tether.core.provenance_extract import ValueKind
from tether.policy.catalog import parse_catalog

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
