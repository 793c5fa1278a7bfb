"""The enforcement every framework adapter shares: a tool name and its arguments in, a verdict
out; after the tool ran, its effect reported and its result observed (argument provenance); a
refusal worded for the model.

A framework tool is mapped to tether with ``ToolCall`` (the tether tool name, action kind,
dataset, effect counters). A tool missing from the map is checked as the tether tool of the
same name with action ``write``: the same conservative default as tether's MCP gateway.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from tether_sdk.aio import AsyncTaskSession
from tether_sdk.client import TaskSession
from tether_sdk.errors import ApprovalRejected, ApprovalTimeout, AsyncResume, await_for
from tether_sdk.guard import (
    AsyncCalls,
    Counter,
    GuardSpec,
    ThreadedCalls,
    effect_of,
    json_value,
    make_spec,
    observe_async,
    observe_sync,
    report_async,
    report_sync,
)
from tether_sdk.models import Decision, Verdict

DEFAULT_ACTION = "write"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """How one framework tool is named to tether. ``tool`` defaults to the framework's name."""

    action: str = DEFAULT_ACTION
    tool: str | None = None
    dataset: str | None = None
    records: Counter | None = None
    bytes: Counter | None = None
    recipients: str | None = None
    exclude: Collection[str] = ()


#: Framework tool name -> its tether call; a bare string is the action kind.
CallMap = Mapping[str, ToolCall | str]

AnySession = TaskSession | AsyncTaskSession


def refusal(verdict: Verdict) -> str:
    """What the model reads instead of the tool's output. It names tether's reason codes, so
    the model (and whoever reads the transcript) can tell a policy refusal from a failure."""
    reasons = "; ".join(str(r) for r in verdict.reasons) or "no reason given"
    if verdict.decision is Decision.APPROVAL_REQUIRED:
        return (
            f"tether: this call needs a human approval (approval {verdict.approval_id}) and has "
            f"not run: {reasons} (decision {verdict.decision_id})"
        )
    return f"tether denied this call, it did not run: {reasons} (decision {verdict.decision_id})"


def approval_refusal(error: ApprovalRejected | ApprovalTimeout) -> str:
    if isinstance(error, ApprovalTimeout):
        return f"tether: approval {error.approval_id} was not decided in time; the call did not run"
    return (
        f"tether: approval {error.approval_id} is {error.status.state.value}; the call did not run"
    )


class Gate:
    """Authorize framework tool calls under one task, and report what they did."""

    def __init__(self, task: AnySession, calls: CallMap | None = None) -> None:
        if not isinstance(task, TaskSession | AsyncTaskSession):
            raise TypeError("pass the task from 'with client.task(...) as task:'")
        self.task = task
        self._calls = dict(calls or {})
        self._async: AsyncCalls = (
            task if isinstance(task, AsyncTaskSession) else ThreadedCalls(task)
        )

    def spec(self, name: str) -> GuardSpec:
        call = self._calls.get(name, DEFAULT_ACTION)
        if isinstance(call, str):
            call = ToolCall(action=call)
        return make_spec(
            call.tool or name,
            call.action,
            call.dataset,
            call.records,
            call.bytes,
            call.recipients,
            call.exclude,
        )

    @staticmethod
    def args(spec: GuardSpec, raw: Mapping[str, Any]) -> dict[str, Any]:
        return {k: json_value(v, k) for k, v in raw.items() if k not in spec.exclude}

    # -- coroutine side (any session) ------------------------------------------------------

    async def authorize(
        self, name: str, raw: Mapping[str, Any], approval_id: str | None = None
    ) -> tuple[GuardSpec, Verdict]:
        spec = self.spec(name)
        verdict = await self._async.authorize(
            spec.tool, spec.action, spec.dataset, self.args(spec, raw), approval_id
        )
        return spec, verdict

    async def report(
        self,
        spec: GuardSpec,
        verdict: Verdict,
        raw: Mapping[str, Any],
        result: Any,
        failed: bool,
    ) -> None:
        await report_async(self._async, verdict.decision_id, effect_of(spec, raw, result, failed))
        if not failed:
            await observe_async(self._async, spec, verdict.decision_id, result)

    def approval_resume(self) -> AsyncResume:
        """How to poll this task's approvals from a coroutine."""
        return self._async.approval_resume(None)

    async def wait(self, approval_id: str, timeout: float, poll_interval: float) -> None:
        """Return once the approval is approved; raise ``ApprovalRejected``/``ApprovalTimeout``."""
        await await_for(approval_id, self.approval_resume(), timeout, poll_interval)

    # -- synchronous side (a TaskSession only) ---------------------------------------------

    def _sync(self) -> TaskSession:
        if not isinstance(self.task, TaskSession):
            raise TypeError(
                "this framework called the tool synchronously, but the task is an "
                "AsyncTaskSession: invoke the agent with its async API (ainvoke), or use "
                "TetherClient"
            )
        return self.task

    def authorize_sync(
        self, name: str, raw: Mapping[str, Any], approval_id: str | None = None
    ) -> tuple[GuardSpec, Verdict]:
        spec = self.spec(name)
        verdict = self._sync().authorize(
            spec.tool, spec.action, spec.dataset, self.args(spec, raw), approval_id
        )
        return spec, verdict

    def report_sync(
        self,
        spec: GuardSpec,
        verdict: Verdict,
        raw: Mapping[str, Any],
        result: Any,
        failed: bool,
    ) -> None:
        report_sync(self._sync(), verdict.decision_id, effect_of(spec, raw, result, failed))
        if not failed:
            observe_sync(self._sync(), spec, verdict.decision_id, result)

    def wait_sync(self, approval_id: str, timeout: float, poll_interval: float) -> None:
        self._sync().client.wait_for_approval(approval_id, timeout, poll_interval)
