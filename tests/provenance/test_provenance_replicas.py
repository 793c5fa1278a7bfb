"""Two tether processes on one database: what one records, the other's next decision sees,
although it keeps each chain's observations in memory between decisions."""

from __future__ import annotations

from pathlib import Path

from support import INTENT, make_runtime, mint
from tether.core.ids import TaskId
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

from .conftest import EVIL_URL, INJECTED, policy_dir


def test_an_observation_on_one_replica_reaches_the_others_next_decision(
    tmp_path: Path, clock: ManualClock
) -> None:
    policies = policy_dir(tmp_path / "policies")
    one = make_runtime(tmp_path / "data", clock, policies)
    two = make_runtime(tmp_path / "data", clock, policies)
    try:
        svid = mint(one, "assistant", clock)
        agent = one.verifier.verify(svid, clock.now())
        scopes = [
            Scope.of("chat.send", [ActionKind.SEND], []),
            Scope.of("chat.read", [ActionKind.READ], []),
        ]
        opened = one.tasks.open_task(
            agent, Intent(**INTENT), scopes, None, None, "Post on 'general'."
        )
        send = CallRequest(
            "chat.send", ActionKind.SEND, None, {"channel": "general", "body": EVIL_URL}
        )
        assert one.authorizer.enforce(agent, opened.token, send).decision.value == "allow"

        assert two.provenance is not None
        two.provenance.observe(opened.task, "chat.read", None, INJECTED)

        verdict = one.authorizer.enforce(agent, opened.token, send)
        assert [r.code.value for r in verdict.reasons] == ["untrusted_argument"]
    finally:
        two.close()
        one.close()


def test_a_parents_observation_on_one_replica_reaches_its_delegates_next_decision(
    tmp_path: Path, clock: ManualClock
) -> None:
    policies = policy_dir(tmp_path / "policies")
    one = make_runtime(tmp_path / "data", clock, policies)
    two = make_runtime(tmp_path / "data", clock, policies)
    try:
        agent = one.verifier.verify(mint(one, "assistant", clock), clock.now())
        helper = one.verifier.verify(mint(one, "helper", clock), clock.now())
        scopes = [
            Scope.of("chat.send", [ActionKind.SEND], []),
            Scope.of("chat.read", [ActionKind.READ], []),
        ]
        parent = one.tasks.open_task(
            agent, Intent(**INTENT), scopes, None, None, "Post on 'general'."
        )
        child = one.tasks.delegate(
            agent, TaskId(parent.task.task_id), parent.token, helper, scopes[:1]
        )
        send = CallRequest(
            "chat.send", ActionKind.SEND, None, {"channel": "general", "body": EVIL_URL}
        )
        # Decided once, so replica one keeps the chain's (child, parent) observations.
        assert one.authorizer.enforce(helper, child.token, send).decision.value == "allow"

        # The parent's agent reads the injected page on replica two: written under the
        # parent only, so only the parent's row says something new was observed.
        assert two.provenance is not None
        two.provenance.observe(parent.task, "chat.read", None, INJECTED)

        verdict = one.authorizer.enforce(helper, child.token, send)
        assert [r.code.value for r in verdict.reasons] == ["untrusted_argument"]
    finally:
        two.close()
        one.close()
