"""Break-glass requests as rows: the table's statements and the JSON document each row keeps,
shared by the break-glass store and by the task's end (which ends its requests in the same
transaction).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, bindparam, insert, select, update

from tether.core.approval import Vote
from tether.core.breakglass import BreakGlass, BreakGlassId, BreakGlassState
from tether.core.scope import JSONValue, Scope
from tether.store.schema import breakglass

INSERT = insert(breakglass)
SELECT = select(breakglass.c.doc).where(breakglass.c.breakglass_id == bindparam("b_id"))
#: The request read by a vote or a state change: locked until the commit (see approvals.LOCK).
LOCK = SELECT.with_for_update()
FOR_TASK = select(breakglass.c.doc).where(breakglass.c.task_id == bindparam("b_task"))
LIST = (
    select(breakglass.c.doc)
    .order_by(breakglass.c.requested_at.desc())
    .limit(bindparam("b_limit", type_=Integer()))
)
REPLACE = (
    update(breakglass)
    .where(breakglass.c.breakglass_id == bindparam("b_id"))
    .values(state=bindparam("b_state"), doc=bindparam("b_doc"))
)


def _dt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def to_doc(bg: BreakGlass) -> str:
    doc: dict[str, JSONValue] = {
        "breakglass_id": bg.breakglass_id,
        "task_id": bg.task_id,
        "agent": bg.agent,
        "scopes": [s.to_json() for s in bg.scopes],
        "reason": bg.reason,
        "requested_by": bg.requested_by,
        "requested_at": bg.requested_at.isoformat(),
        "decide_by": bg.decide_by.isoformat(),
        "window_seconds": bg.window_seconds,
        "required": bg.required,
        "state": bg.state.value,
        "votes": [v.to_json() for v in bg.votes],
        "active_from": _dt(bg.active_from),
        "active_until": _dt(bg.active_until),
        "review": bg.review,
        "reviewed_by": bg.reviewed_by,
        "reviewed_at": _dt(bg.reviewed_at),
    }
    return json.dumps(doc, sort_keys=True)


def from_doc(text: Any) -> BreakGlass:
    doc = json.loads(text)

    def when(key: str) -> datetime | None:
        return None if doc[key] is None else datetime.fromisoformat(doc[key])

    return BreakGlass(
        breakglass_id=BreakGlassId(str(doc["breakglass_id"])),
        task_id=str(doc["task_id"]),
        agent=str(doc["agent"]),
        scopes=tuple(Scope.from_json(s) for s in doc["scopes"]),
        reason=str(doc["reason"]),
        requested_by=str(doc["requested_by"]),
        requested_at=datetime.fromisoformat(doc["requested_at"]),
        decide_by=datetime.fromisoformat(doc["decide_by"]),
        window_seconds=int(doc["window_seconds"]),
        required=int(doc["required"]),
        state=BreakGlassState(doc["state"]),
        votes=tuple(
            Vote(
                str(v["approver"]),
                bool(v["approve"]),
                str(v["reason"]),
                datetime.fromisoformat(v["at"]),
            )
            for v in doc["votes"]
        ),
        active_from=when("active_from"),
        active_until=when("active_until"),
        review=doc["review"],
        reviewed_by=doc["reviewed_by"],
        reviewed_at=when("reviewed_at"),
    )


_OPEN_FOR_TASKS = select(breakglass.c.doc).where(
    breakglass.c.task_id.in_(bindparam("b_tasks", expanding=True)),
    breakglass.c.state.in_([BreakGlassState.PENDING.value, BreakGlassState.ACTIVE.value]),
)


def end_for_tasks(conn: Connection, task_ids: Sequence[str], at: datetime) -> list[str]:
    """End every pending or active request of ``task_ids`` (their task ended at ``at``): a
    pending one expires undecided, an active one's window closes now. Their ids."""
    ended: list[str] = []
    for row in conn.execute(_OPEN_FOR_TASKS, {"b_tasks": list(task_ids)}).all():
        bg = from_doc(row.doc)
        if bg.state is BreakGlassState.PENDING:
            after = replace(bg, state=BreakGlassState.EXPIRED)
        else:
            until = at if bg.active_until is None else min(bg.active_until, at)
            after = replace(bg, state=BreakGlassState.ENDED, active_until=until)
        conn.execute(
            REPLACE,
            {"b_id": bg.breakglass_id, "b_state": after.state.value, "b_doc": to_doc(after)},
        )
        ended.append(bg.breakglass_id)
    return ended
