"""The anomaly signal: a read that takes a task past the 99th percentile of its workflow's
history needs a human. Real SQLite store, real Cedar; the clock moves, nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import INTENT, copy_policies, make_runtime
from tether.core.anomaly import AnomalyRule, Volume, baseline, nearest_rank
from tether.core.call import Call
from tether.core.effect import EffectStatus
from tether.core.errors import ConfigurationError
from tether.core.identity import Workload
from tether.core.ids import DecisionId, TaskId
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent, TaskState
from tether.core.verdict import Decision, ReasonCode, Verdict
from tether.policy.flows import load_workflows
from tether.runtime import Runtime
from tether.service.anomaly import AnomalySignal
from tether.service.clock import ManualClock

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
READ = Call("crm.query", ActionKind.READ, "crm")
SCOPE = Scope.from_json({"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]})

WORKFLOWS = """
workflows:
  analytics:
    start: [query]
    anomaly: {percentile: 99, min_history: 20}
    steps:
      query:
        uses: [{tool: crm.query, actions: [read]}]
        repeatable: true
  reporting:
    start: [query]
    steps:
      query:
        uses: [{tool: crm.query, actions: [read]}]
        repeatable: true
"""


@pytest.fixture
def rt(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = copy_policies(tmp_path / "policies")
    (policies / "workflows.yaml").write_text(WORKFLOWS, encoding="utf-8")
    runtime = make_runtime(tmp_path / "data", clock, policies)
    yield runtime
    runtime.close()


class Task:
    """One task of the analyst, driven through the service as the API drives it."""

    def __init__(self, rt: Runtime, workflow: str = "analytics") -> None:
        self.rt = rt
        opened = rt.tasks.open_task(
            ANALYST, Intent(**{**INTENT, "workflow": workflow}), [SCOPE], ttl_seconds=600
        )
        self.task_id = TaskId(opened.task.task_id)
        self.token = opened.token

    def read(self) -> Verdict:
        return self.rt.authorizer.authorize(ANALYST, self.token, READ)

    def took(self, verdict: Verdict, records: int, bytes_: int | None = None) -> None:
        assert verdict.decision is Decision.ALLOW, verdict.reasons
        self.rt.effects.report(
            ANALYST, DecisionId(verdict.decision_id), EffectStatus.OK, records, bytes_
        )

    def read_and_take(self, records: int, bytes_: int | None = None) -> None:
        self.took(self.read(), records, bytes_)

    def close(self) -> None:
        self.rt.tasks.close_task(ANALYST, self.task_id)


def history(
    rt: Runtime, totals: list[int], workflow: str = "analytics", *, settle: bool = True
) -> None:
    """Past tasks of ``workflow`` that each read one of ``totals`` (in two calls) and closed;
    then (``settle``) the clock moves past the baseline cache's TTL, so the next read sees them."""
    for total in totals:
        task = Task(rt, workflow)
        task.read_and_take(total // 2, 1000)
        task.read_and_take(total - total // 2)
        task.close()
    if settle:
        clock = rt.clock
        assert isinstance(clock, ManualClock)
        clock.advance(61)


# The 20 past tasks read 10, 11, …, 29 records: with 20 of them the 99th percentile
# (nearest rank: the 20th smallest) is 29.
PAST = list(range(10, 30))


def anomalous(verdict: Verdict) -> bool:
    return (
        verdict.decision is Decision.APPROVAL_REQUIRED
        and verdict.reasons[0].code is ReasonCode.ANOMALOUS_VOLUME
    )


def test_a_read_past_the_99th_percentile_needs_a_human(rt: Runtime) -> None:
    history(rt, PAST)
    task = Task(rt)
    task.read_and_take(25)
    task.read_and_take(4)  # 29: at the percentile, not above it
    at_the_edge = task.read()
    assert at_the_edge.decision is Decision.ALLOW
    task.took(at_the_edge, 1)  # 30: above
    over = task.read()
    assert anomalous(over), over.reasons
    assert over.approval_id is not None
    assert over.policy_ids[0] == "tether:anomaly"
    assert {Risk.ASI02, Risk.ASI10} <= set(over.risks)
    message = over.reasons[0].message
    assert "30 records" in message and "99th percentile (29)" in message
    assert "last 20 ended tasks of workflow 'analytics'" in message


def test_below_the_percentile_nothing_changes(rt: Runtime) -> None:
    history(rt, PAST)
    task = Task(rt)
    for _ in range(5):
        task.read_and_take(5)  # 25 in all
    assert task.read().decision is Decision.ALLOW


def test_bytes_count_too(rt: Runtime) -> None:
    history(rt, PAST)  # every past task read 1000 bytes
    task = Task(rt)
    task.read_and_take(1, 1001)
    assert anomalous(task.read())


def test_too_little_history_is_never_anomalous(rt: Runtime, clock: ManualClock) -> None:
    history(rt, PAST[:19])
    task = Task(rt)
    task.read_and_take(10_000, 10_000_000)
    assert task.read().decision is Decision.ALLOW
    # The 20th task closes; the baseline cached without it holds for its TTL (60 s of the
    # injected clock), then is drawn again and the rule applies.
    history(rt, [29], settle=False)
    assert task.read().decision is Decision.ALLOW
    clock.advance(61)
    assert anomalous(task.read())


def test_only_ended_tasks_of_the_same_workflow_make_the_history(
    rt: Runtime, clock: ManualClock
) -> None:
    history(rt, [1000] * 25, workflow="reporting")  # another workflow
    revoked = Task(rt)
    revoked.read_and_take(5000)
    rt.agents.revoke(ANALYST.id, reason="test", by="tester")  # the kill switch: revoked
    rt.agents.restore(ANALYST.id, by="tester")
    expired = Task(rt)
    expired.read_and_take(7)
    clock.advance(601)
    assert rt.tasks.reap_expired() == 1
    assert rt.store.get_task(expired.task_id).state is TaskState.EXPIRED  # type: ignore[union-attr]
    still_open = Task(rt)
    still_open.read_and_take(5000)
    assert rt.store.ended_task_volumes("analytics", 100) == [Volume(7, 0)]
    assert len(rt.store.ended_task_volumes("reporting", 100)) == 25
    assert len(rt.store.ended_task_volumes("reporting", 10)) == 10  # the newest ten
    assert rt.store.task_volume(still_open.task_id) == Volume(5000, 0)
    assert rt.store.task_volume(revoked.task_id) == Volume(5000, 0)


def test_a_workflow_without_the_rule_is_not_judged(rt: Runtime) -> None:
    history(rt, PAST, workflow="reporting")
    task = Task(rt, "reporting")
    task.read_and_take(10_000)
    assert task.read().decision is Decision.ALLOW


def test_what_the_call_declares_counts(rt: Runtime, clock: ManualClock) -> None:
    history(rt, PAST)
    task = Task(rt)
    task.read_and_take(20)
    signal = AnomalySignal(history=rt.store, clock=clock)
    rule = AnomalyRule(99, 20)
    stored = rt.store.get_task(task.task_id)
    assert stored is not None
    assert signal.check(stored, rule, Volume(records=9)) is None  # 29
    reason = signal.check(stored, rule, Volume(records=10))  # 30
    assert reason is not None and reason.code is ReasonCode.ANOMALOUS_VOLUME
    assert "(20 so far, 10 declared by this call)" in reason.message


# -- the pure rule ---------------------------------------------------------------------------


def test_nearest_rank() -> None:
    values = list(range(1, 101))
    assert nearest_rank(values, 99) == 99
    assert nearest_rank(values, 100) == 100
    assert nearest_rank(values, 50) == 50
    assert nearest_rank([5], 99) == 5
    assert nearest_rank([3, 1, 2], 99) == 3


def test_a_measure_no_past_task_reported_is_not_judged() -> None:
    base = baseline([Volume(10, 0)] * 20, AnomalyRule(99, 20))
    assert base is not None and (base.records, base.bytes) == (10, None)
    assert baseline([Volume(10, 0)] * 19, AnomalyRule(99, 20)) is None


@pytest.mark.parametrize(
    ("anomaly", "message"),
    [
        ("{percentile: 101}", "5:27: workflows.analytics.anomaly.percentile: must be at most 100"),
        ("{percentile: yes}", "5:27: workflows.analytics.anomaly.percentile: must be a number"),
        ("{min_history: 0}", "5:28: workflows.analytics.anomaly.min_history: must be at least 1"),
        (
            "{history: 5, min_history: 10}",
            "5:24: workflows.analytics.anomaly.history: must be at least min_history (10), not 5",
        ),
        (
            "{window: 3}",
            "5:15: workflows.analytics.anomaly.window: unknown key; allowed here: history, "
            "min_history, percentile",
        ),
    ],
)
def test_a_bad_anomaly_rule_is_refused_naming_it(
    tmp_path: Path, anomaly: str, message: str
) -> None:
    (tmp_path / "workflows.yaml").write_text(
        WORKFLOWS.replace("{percentile: 99, min_history: 20}", anomaly), encoding="utf-8"
    )
    with pytest.raises(ConfigurationError) as caught:
        load_workflows(tmp_path)
    assert caught.value.code.value == "policy_invalid"
    assert caught.value.message == f"workflows.yaml:{message}"


def test_the_rule_defaults(tmp_path: Path) -> None:
    (tmp_path / "workflows.yaml").write_text(
        WORKFLOWS.replace("{percentile: 99, min_history: 20}", "{}"), encoding="utf-8"
    )
    assert load_workflows(tmp_path)["analytics"].anomaly == AnomalyRule(99.0, 20, 1000)
    assert load_workflows(tmp_path)["reporting"].anomaly is None
