"""Reports over the audit log: privilege used against granted, risks, framework alignment.

Pure functions over any iterable of :class:`tether.core.audit.AuditRecord` (a store's
``audit_records()`` or an exported JSON-lines file), plus rendering to HTML and SVG. They read
no clock and do no I/O; they import only :mod:`tether.core`. They do not verify the hash chain:
``tether audit verify`` does.

    privileges   granted against used (tool, action, dataset) triples per agent and workflow,
                 the least-privilege ratio, a proposed tighter grant and Cedar policy
    risks        deny and approval_required verdicts by OWASP ASI id, agent and workflow
    controls     evidence per control, mapped to OWASP ASI/NHI, NIST AI RMF, NIST CSF 2.0 and
                 CSA MAESTRO (the mapping is data in :mod:`tether.reports.frameworks`), and gaps
    activity     decisions over time and data read per agent, for the charts
    flips        calls an observe-mode policy would have changed, by policy, agent and tool
"""

from tether.reports.activity import Activity, activity
from tether.reports.cedar import permit_policies, proposed_policy
from tether.reports.controls import ControlsReport, Coverage, Gap, controls
from tether.reports.flips import FlipRow, FlipsReport, PolicyFlips, flips
from tether.reports.html import RATIO_DEFINITION, render_privileges_html
from tether.reports.privileges import PrivilegeGroup, PrivilegeReport, Triple, privileges
from tether.reports.records import MalformedRecord, Window, parse_instant
from tether.reports.risks import RiskCount, RiskReport, risks

__all__ = [
    "RATIO_DEFINITION",
    "Activity",
    "ControlsReport",
    "Coverage",
    "FlipRow",
    "FlipsReport",
    "Gap",
    "MalformedRecord",
    "PolicyFlips",
    "PrivilegeGroup",
    "PrivilegeReport",
    "RiskCount",
    "RiskReport",
    "Triple",
    "Window",
    "activity",
    "controls",
    "flips",
    "parse_instant",
    "permit_policies",
    "privileges",
    "proposed_policy",
    "render_privileges_html",
    "risks",
]
