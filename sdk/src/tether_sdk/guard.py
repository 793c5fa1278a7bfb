"""``@task.guard(...)``: authorize a plain Python function's call before it runs, report after.

How a call becomes tether's ``args``: the function's parameters are bound by name with
``inspect.signature(fn).bind(*args, **kwargs)`` and defaults applied, so ``refund("o-1", 30)``
and ``refund(order_id="o-1", amount=30)`` send the same ``{"order_id": "o-1", "amount": 30}``.
A ``*args`` parameter is sent as a list under its name; ``**kwargs`` are merged in by their own
names. Parameters named in ``exclude`` (a database handle, a client) are not sent. Every sent
value must be JSON (``str``, ``int``, ``float``, ``bool``, ``None``, lists, dicts with string
keys; a tuple is sent as a list); anything else is a ``TypeError`` before tether is asked.

Then:

- ``allow``: the function runs; its effect is reported (``ok``, or ``error`` if it raised, with
  ``records``/``bytes`` counted from the return value by the given counters and ``recipients``
  read from the named argument). A failed report is logged, never raised: the tool already ran,
  and an exception would invite a retry that does it twice. Then its return value is observed
  (``POST /v1/observations``: the values it puts in the agent's context, for argument
  provenance). An observation that cannot be recorded raises and the return value is withheld:
  a result tether has not seen must not steer a later call.
- ``deny``: ``Denied`` is raised and the function does not run.
- ``approval_required``: ``ApprovalRequired`` is raised and the function does not run;
  ``error.wait()`` then ``error.retry()`` runs it once a human approves.

A coroutine function stays a coroutine function. Under an ``AsyncTetherClient`` every guarded
function becomes a coroutine function (its body is called as is, and awaited if it returns an
awaitable). Under a ``TetherClient`` an ``async def`` tool's HTTP calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from tether_sdk.errors import ApprovalRequired, AsyncResume, Denied, SyncResume
from tether_sdk.models import (
    ApprovalStatus,
    Decision,
    Effect,
    EffectStatus,
    Observation,
    Verdict,
)

log = logging.getLogger("tether_sdk")

P = ParamSpec("P")
R = TypeVar("R")

Counter = Callable[[Any], int]


@dataclass(frozen=True, slots=True)
class GuardSpec:
    """What a guarded function is to tether, and how to count what it did."""

    tool: str
    action: str
    dataset: str | None = None
    records: Counter | None = None
    bytes: Counter | None = None
    recipients: str | None = None
    exclude: frozenset[str] = frozenset()


class SyncCalls(Protocol):
    """What a guard needs from a synchronous task session."""

    def authorize(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict: ...

    def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect: ...

    def observe(
        self,
        tool: str,
        result: Any,
        dataset: str | None = None,
        decision_id: str | None = None,
    ) -> Observation: ...

    def approval_resume(self, retry: Callable[[str], Any] | None) -> SyncResume: ...


class AsyncCalls(Protocol):
    """The same for a coroutine session."""

    async def authorize(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict: ...

    async def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect: ...

    async def observe(
        self,
        tool: str,
        result: Any,
        dataset: str | None = None,
        decision_id: str | None = None,
    ) -> Observation: ...

    def approval_resume(self, retry: Callable[[str], Awaitable[Any]] | None) -> AsyncResume: ...


# -- arguments and effects -----------------------------------------------------------------


def json_value(value: Any, where: str) -> Any:
    """``value`` as JSON, or a ``TypeError`` naming the argument that is not."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"argument {where!r} has a non-string key {k!r}")
            out[k] = json_value(v, f"{where}.{k}")
        return out
    raise TypeError(
        f"argument {where!r} is a {type(value).__name__}, not JSON: tether receives arguments as "
        "JSON; pass a JSON value or leave it out with guard(exclude=[...])"
    )


def bind_args(
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """The call's arguments by parameter name, defaults applied, ``**kwargs`` merged in."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        else:
            out[name] = value
    return out


def json_args(raw: Mapping[str, Any], exclude: Collection[str]) -> dict[str, Any]:
    return {name: json_value(v, name) for name, v in raw.items() if name not in exclude}


def recipients_of(raw: Mapping[str, Any], name: str | None) -> tuple[str, ...]:
    if name is None:
        return ()
    value = raw.get(name)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def _count(counter: Counter | None, result: Any, what: str) -> int | None:
    if counter is None:
        return None
    try:
        n = counter(result)
    except Exception as error:
        log.warning("tether effect counter %r failed: %s", what, type(error).__name__)
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        log.warning("tether effect counter %r returned %r, not a count", what, n)
        return None
    return n


@dataclass(frozen=True, slots=True)
class EffectReport:
    status: EffectStatus
    records: int | None
    bytes: int | None
    recipients: tuple[str, ...]


def effect_of(spec: GuardSpec, raw: Mapping[str, Any], result: Any, failed: bool) -> EffectReport:
    if failed:
        return EffectReport(EffectStatus.ERROR, None, None, recipients_of(raw, spec.recipients))
    return EffectReport(
        EffectStatus.OK,
        _count(spec.records, result, "records"),
        _count(spec.bytes, result, "bytes"),
        recipients_of(raw, spec.recipients),
    )


def report_sync(calls: SyncCalls, decision_id: str, effect: EffectReport) -> None:
    try:
        calls.report_effect(
            decision_id, effect.status, effect.records, effect.bytes, effect.recipients
        )
    except Exception as error:  # the tool already ran; see the module docstring
        log.warning("tether could not record the effect of %s: %s", decision_id, error)


async def report_async(calls: AsyncCalls, decision_id: str, effect: EffectReport) -> None:
    try:
        await calls.report_effect(
            decision_id, effect.status, effect.records, effect.bytes, effect.recipients
        )
    except Exception as error:  # the tool already ran; see the module docstring
        log.warning("tether could not record the effect of %s: %s", decision_id, error)


def observable(result: Any) -> Any:
    """A tool's result as tether scans it: itself when it is JSON, else its text."""
    try:
        return json_value(result, "result")
    except TypeError:
        return str(result)


def observe_sync(calls: SyncCalls, spec: GuardSpec, decision_id: str, result: Any) -> None:
    """Record what an allowed call's result put in the agent's context (raises on failure)."""
    calls.observe(spec.tool, result, spec.dataset, decision_id)


async def observe_async(calls: AsyncCalls, spec: GuardSpec, decision_id: str, result: Any) -> None:
    await calls.observe(spec.tool, result, spec.dataset, decision_id)


def raise_unless_allowed(
    verdict: Verdict, *, resume: SyncResume | None = None, aresume: AsyncResume | None = None
) -> None:
    """Return on ``allow``; raise ``Denied`` or ``ApprovalRequired`` otherwise."""
    match verdict.decision:
        case Decision.ALLOW:
            return
        case Decision.DENY:
            raise Denied(verdict)
        case Decision.APPROVAL_REQUIRED:
            if verdict.approval_id is None:  # a malformed answer: treat it as the deny it is
                raise Denied(verdict)
            raise ApprovalRequired(verdict, resume=resume, aresume=aresume)


# -- the two flavours ----------------------------------------------------------------------


class ThreadedCalls:
    """A synchronous session seen from a coroutine: each HTTP call runs in a worker thread."""

    def __init__(self, calls: SyncCalls) -> None:
        self._calls = calls

    async def authorize(
        self,
        tool: str,
        action: str,
        dataset: str | None = None,
        args: Mapping[str, Any] | None = None,
        approval_id: str | None = None,
    ) -> Verdict:
        return await asyncio.to_thread(
            self._calls.authorize, tool, action, dataset, args, approval_id
        )

    async def report_effect(
        self,
        decision_id: str,
        status: str = "ok",
        records: int | None = None,
        bytes: int | None = None,
        recipients: Collection[str] = (),
    ) -> Effect:
        return await asyncio.to_thread(
            self._calls.report_effect, decision_id, status, records, bytes, recipients
        )

    async def observe(
        self,
        tool: str,
        result: Any,
        dataset: str | None = None,
        decision_id: str | None = None,
    ) -> Observation:
        return await asyncio.to_thread(self._calls.observe, tool, result, dataset, decision_id)

    def approval_resume(self, retry: Callable[[str], Awaitable[Any]] | None) -> AsyncResume:
        poll = self._calls.approval_resume(None).status

        async def status(approval_id: str) -> ApprovalStatus:
            return await asyncio.to_thread(poll, approval_id)

        return AsyncResume(status=status, retry=retry)


def _run_sync(
    calls: SyncCalls,
    spec: GuardSpec,
    fn: Callable[..., Any],
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    approval_id: str | None,
) -> Any:
    raw = bind_args(signature, args, kwargs)
    verdict = calls.authorize(
        spec.tool, spec.action, spec.dataset, json_args(raw, spec.exclude), approval_id
    )

    def again(approved: str) -> Any:
        return _run_sync(calls, spec, fn, signature, args, kwargs, approved)

    raise_unless_allowed(verdict, resume=calls.approval_resume(again))
    try:
        result = fn(*args, **kwargs)
    except Exception:
        report_sync(calls, verdict.decision_id, effect_of(spec, raw, None, failed=True))
        raise
    report_sync(calls, verdict.decision_id, effect_of(spec, raw, result, failed=False))
    observe_sync(calls, spec, verdict.decision_id, result)
    return result


async def _run_async(
    calls: AsyncCalls,
    spec: GuardSpec,
    fn: Callable[..., Any],
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    approval_id: str | None,
) -> Any:
    raw = bind_args(signature, args, kwargs)
    verdict = await calls.authorize(
        spec.tool, spec.action, spec.dataset, json_args(raw, spec.exclude), approval_id
    )

    async def again(approved: str) -> Any:
        return await _run_async(calls, spec, fn, signature, args, kwargs, approved)

    raise_unless_allowed(verdict, aresume=calls.approval_resume(again))
    try:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
    except Exception:
        await report_async(calls, verdict.decision_id, effect_of(spec, raw, None, failed=True))
        raise
    await report_async(calls, verdict.decision_id, effect_of(spec, raw, result, failed=False))
    await observe_async(calls, spec, verdict.decision_id, result)
    return result


class SyncGuard:
    """The decorator ``TaskSession.guard`` returns."""

    def __init__(self, calls: SyncCalls, spec: GuardSpec) -> None:
        self._calls = calls
        self._spec = spec

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        signature = inspect.signature(fn)
        calls, spec = self._calls, self._spec
        if inspect.iscoroutinefunction(fn):
            threaded = ThreadedCalls(calls)

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await _run_async(threaded, spec, fn, signature, args, kwargs, None)

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return _run_sync(calls, spec, fn, signature, args, kwargs, None)

        return guarded


class AsyncGuard:
    """The decorator ``AsyncTaskSession.guard`` returns: guarded functions are coroutines."""

    def __init__(self, calls: AsyncCalls, spec: GuardSpec) -> None:
        self._calls = calls
        self._spec = spec

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Coroutine[Any, Any, Any]]:
        signature = inspect.signature(fn)
        calls, spec = self._calls, self._spec

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await _run_async(calls, spec, fn, signature, args, kwargs, None)

        return guarded


def make_spec(
    tool: str,
    action: str,
    dataset: str | None,
    records: Counter | None,
    bytes: Counter | None,
    recipients: str | None,
    exclude: Collection[str],
) -> GuardSpec:
    if isinstance(exclude, str):
        raise TypeError("exclude is a list of parameter names, not one string")
    return GuardSpec(tool, str(action), dataset, records, bytes, recipients, frozenset(exclude))
