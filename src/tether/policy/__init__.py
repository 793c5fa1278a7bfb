"""Cedar policy for tether: loading, validation, indexing, decisions, hot reload, test cases.

The service sees only :class:`tether.service.ports.PolicyEngine`; :class:`CedarPolicyEngine` is
this package's implementation. Modules, each with one job:

    bundle   read and validate a policy directory (policies, schema, catalog) into a bundle
    meta     what tether reads from each policy (id, annotations, head)
    catalog  dataset classifications
    context  the Cedar context record and JSON -> Cedar value conversion
    index    which policies a (action, tool) evaluates; compiled, cached policy subsets
    answer   asking Cedar about one request at the least cost, and reading its answer
    fold     Cedar's answer -> allow / deny / approval_required
    engine   the engine and its atomically swapped snapshot
    reload   change detection and the watcher thread
    cases    reading YAML policy test cases (and one request, for explain)
    testing  running them: results and problems, never stopping at the first bad case
    diagnostics  problems at file:line:col, with "did you mean"
    syntax   Cedar surface syntax tether needs itself (statements, tokens, positions)
    fmt      Cedar's formatter
"""

from tether.policy.bundle import PolicyBundle, load_policy_dir, load_sources
from tether.policy.catalog import Catalog
from tether.policy.engine import CedarPolicyEngine, PolicySnapshot
from tether.policy.fmt import format_policy_text, is_formatted
from tether.policy.meta import PolicyMeta
from tether.policy.reload import PolicyWatcher, ReloadResult
from tether.policy.testing import CaseResult, run_policy_tests

__all__ = [
    "CaseResult",
    "Catalog",
    "CedarPolicyEngine",
    "PolicyBundle",
    "PolicyMeta",
    "PolicySnapshot",
    "PolicyWatcher",
    "ReloadResult",
    "format_policy_text",
    "is_formatted",
    "load_policy_dir",
    "load_sources",
    "run_policy_tests",
]
