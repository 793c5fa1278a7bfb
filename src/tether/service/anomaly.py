"""The anomaly signal at authorize time: a read that takes its task far past its workflow's
history needs a human (see :mod:`tether.core.anomaly` for the rule).

The baseline of a workflow is drawn from the store (the totals its last ended tasks read) and
cached per workflow for ``cache_ttl`` of the injected clock, so a busy workflow costs one
history query per TTL, not one per call. What the task itself has read so far is read fresh on
every call it judges: it changes with each effect. A store that cannot answer raises
``Unavailable``, and authorize denies (fail closed).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from tether.core.anomaly import AnomalyRule, Baseline, Volume, baseline, exceeded
from tether.core.ids import TaskId
from tether.core.task import Task
from tether.core.verdict import Reason, ReasonCode
from tether.service.ports import Clock

DEFAULT_CACHE_TTL = timedelta(seconds=60)


class VolumeHistory(Protocol):
    """What tasks have read, from their reported effects (``tether.store.history``)."""

    def ended_task_volumes(self, workflow: str, limit: int) -> Sequence[Volume]:
        """The totals read by the ``limit`` most recently ended (closed or expired, not
        revoked) tasks whose intent names ``workflow``, one per task."""
        ...

    def task_volume(self, task_id: TaskId) -> Volume:
        """What ``task_id`` has read so far, by its reported effects."""
        ...


class AnomalySignal:
    """Judges read calls against their workflow's baseline. Safe to share between threads."""

    def __init__(
        self, *, history: VolumeHistory, clock: Clock, cache_ttl: timedelta = DEFAULT_CACHE_TTL
    ) -> None:
        self._history = history
        self._clock = clock
        self._ttl = cache_ttl
        self._cache: dict[tuple[str, AnomalyRule], tuple[datetime, Baseline | None]] = {}
        self._lock = threading.Lock()

    def baseline(self, workflow: str, rule: AnomalyRule) -> Baseline | None:
        """The workflow's baseline (``None`` with too little history), cached for the TTL."""
        now = self._clock.now()
        key = (workflow, rule)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            return cached[1]
        found = baseline(self._history.ended_task_volumes(workflow, rule.history), rule)
        with self._lock:
            self._cache[key] = (now + self._ttl, found)
        return found

    def check(self, task: Task, rule: AnomalyRule, declared: Volume) -> Reason | None:
        """``ANOMALOUS_VOLUME`` when the task's reads plus ``declared`` pass the baseline."""
        workflow = task.intent.workflow
        base = self.baseline(workflow, rule)
        if base is None:
            return None
        why = exceeded(base, self._history.task_volume(task.task_id), declared, workflow)
        return None if why is None else Reason(ReasonCode.ANOMALOUS_VOLUME, why)
