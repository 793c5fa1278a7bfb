"""The port through which decisions are watched: metrics, traces and logs attach here.

The authorizer tells a :class:`DecisionObserver` what it is deciding, when it writes the decision
and what it answered; it never learns what the observer does with that (the implementation with
OpenTelemetry, Prometheus and structlog is :mod:`tether.observability.services`). An observer only
reads: it cannot change a verdict, and the authorizer works the same without one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.verdict import Verdict
from tether.service.ports import DecisionRecord


class DecisionWatch(Protocol):
    """One decision being watched, from the call to the answer."""

    def writing(self, decision: DecisionRecord) -> AbstractContextManager[None]:
        """Around the durable write of ``decision`` (with its audit record)."""
        ...

    def written(self, decision: DecisionRecord, seq: int) -> None:
        """``decision`` is durable, as audit record ``seq``."""
        ...

    def answered(self, verdict: Verdict) -> None:
        """The verdict the caller gets (written or not)."""
        ...


class DecisionObserver(Protocol):
    def watch(self, agent: Workload, call: Call) -> AbstractContextManager[DecisionWatch]:
        """Watch the decision of ``call`` for ``agent``; the context spans the whole decision."""
        ...


class _Unwatched:
    @contextmanager
    def writing(self, decision: DecisionRecord) -> Iterator[None]:
        yield

    def written(self, decision: DecisionRecord, seq: int) -> None:
        pass

    def answered(self, verdict: Verdict) -> None:
        pass


class Unobserved:
    """The observer of an authorizer nobody watches."""

    @contextmanager
    def watch(self, agent: Workload, call: Call) -> Iterator[DecisionWatch]:
        yield _Unwatched()
