"""Atomic hot reload: a broken change keeps the last good policy set, a fixed one is picked up."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from tether.core.call import Call
from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.scope import ActionKind
from tether.core.task import Intent
from tether.core.verdict import Decision
from tether.policy.engine import CedarPolicyEngine
from tether.policy.reload import PolicyWatcher, ReloadResult, fingerprint
from tether.service.ports import PolicyRequest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
AGENT = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
INTENT = Intent("wf", "reload test", "tester")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(EXAMPLES, target)
    return target


def decide(engine: CedarPolicyEngine, tool: str, action: ActionKind) -> Decision:
    request = PolicyRequest(AGENT, Call(tool, action), None, INTENT, TaskId("tsk_x"))
    return engine.decide(request).decision


def touch(path: Path, text: str) -> None:
    """Write ``text`` and move mtime forward, so the change shows on coarse clocks too."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1_000_000))


def test_nothing_changed_means_no_reload(policy_dir: Path) -> None:
    engine = CedarPolicyEngine.load(policy_dir)
    assert engine.check_for_changes() is None


def test_a_new_policy_is_picked_up(policy_dir: Path) -> None:
    engine = CedarPolicyEngine.load(policy_dir)
    before = engine.revision
    assert decide(engine, "wiki.read", ActionKind.READ) is Decision.DENY
    touch(
        policy_dir / "wiki.cedar",
        '@id("wiki")\npermit(principal, action == Action::"read", resource == Tool::"wiki.read");',
    )
    result = engine.check_for_changes()
    assert result is not None and result.ok and result.changed
    assert engine.revision == result.revision != before
    assert decide(engine, "wiki.read", ActionKind.READ) is Decision.ALLOW
    assert engine.check_for_changes() is None


def test_a_broken_change_keeps_the_last_good_set_then_a_fix_is_picked_up(
    policy_dir: Path,
) -> None:
    seen: list[ReloadResult] = []
    engine = CedarPolicyEngine.load(policy_dir, on_reload=seen.append)
    good = engine.revision
    touch(policy_dir / "wiki.cedar", 'permit(principal, action == Action::"read", resource')

    broken = engine.check_for_changes()
    assert broken is not None and not broken.ok and not broken.changed
    assert broken.revision == good == engine.revision
    assert isinstance(broken.error, ConfigurationError)
    assert broken.error.code is ErrorCode.POLICY_INVALID
    assert "wiki.cedar:1:53: unexpected end of input" in broken.error.message
    assert engine.last_error is broken.error
    # the last good set still decides
    assert decide(engine, "shell.exec", ActionKind.EXECUTE) is Decision.DENY
    assert decide(engine, "sandbox.run", ActionKind.EXECUTE) is Decision.ALLOW
    # the same broken files are not retried on every check
    assert engine.check_for_changes() is None

    touch(
        policy_dir / "wiki.cedar",
        'permit(principal, action == Action::"read", resource == Tool::"wiki.read");',
    )
    fixed = engine.check_for_changes()
    assert fixed is not None and fixed.ok and fixed.changed
    assert engine.last_error is None
    assert decide(engine, "wiki.read", ActionKind.READ) is Decision.ALLOW
    assert seen == [broken, fixed]


def test_a_schema_break_is_caught_too(policy_dir: Path) -> None:
    engine = CedarPolicyEngine.load(policy_dir)
    touch(policy_dir / "schema.cedarschema", "entity Agent;")
    result = engine.reload()
    assert not result.ok
    assert result.error is not None and "schema.cedarschema" in result.error.message
    assert decide(engine, "sandbox.run", ActionKind.EXECUTE) is Decision.ALLOW


def test_removing_a_file_is_a_change(policy_dir: Path) -> None:
    engine = CedarPolicyEngine.load(policy_dir)
    assert decide(engine, "sandbox.run", ActionKind.EXECUTE) is Decision.ALLOW
    (policy_dir / "execution.cedar").unlink()
    result = engine.check_for_changes()
    assert result is not None and result.changed
    assert decide(engine, "sandbox.run", ActionKind.EXECUTE) is Decision.DENY


def test_reloading_the_same_content_keeps_the_snapshot(policy_dir: Path) -> None:
    engine = CedarPolicyEngine.load(policy_dir)
    snapshot = engine.snapshot
    result = engine.reload()
    assert result.ok and not result.changed
    assert engine.snapshot is snapshot


def test_a_decision_in_flight_keeps_its_snapshot(policy_dir: Path) -> None:
    engine = CedarPolicyEngine.load(policy_dir)
    old = engine.snapshot
    (policy_dir / "execution.cedar").unlink()
    engine.reload()
    assert engine.snapshot is not old
    # the old snapshot is intact and still answers from its own policies
    assert old.index.subset(ActionKind.EXECUTE, "sandbox.run").permit_count == 1
    assert engine.snapshot.index.subset(ActionKind.EXECUTE, "sandbox.run").permit_count == 0


def test_an_engine_built_from_memory_cannot_reload() -> None:
    sources = {
        name: (EXAMPLES / name).read_text()
        for name in ("schema.cedarschema", "catalog.yaml", "crm.cedar")
    }
    engine = CedarPolicyEngine.from_sources(sources)
    assert engine.check_for_changes() is None
    result = engine.reload()
    assert not result.ok and result.error is not None


def test_fingerprint_sees_only_bundle_files(policy_dir: Path) -> None:
    before = fingerprint(policy_dir)
    (policy_dir / "notes.txt").write_text("x")
    assert fingerprint(policy_dir) == before
    touch(policy_dir / "extra.cedar", "")
    assert fingerprint(policy_dir) != before
    assert fingerprint(policy_dir / "missing") == frozenset()


def test_the_watcher_reloads_and_stops(policy_dir: Path) -> None:
    reloaded = threading.Event()
    engine = CedarPolicyEngine.load(policy_dir, on_reload=lambda _: reloaded.set())
    with PolicyWatcher(engine, interval=0.01) as watcher:
        assert watcher.running
        touch(policy_dir / "wiki.cedar", 'permit(principal, action, resource == Tool::"wiki");')
        assert reloaded.wait(timeout=10)
    assert not watcher.running
    assert decide(engine, "wiki", ActionKind.READ) is Decision.ALLOW


def test_the_watcher_needs_a_positive_interval(policy_dir: Path) -> None:
    with pytest.raises(ValueError):
        PolicyWatcher(CedarPolicyEngine.load(policy_dir), interval=0)
