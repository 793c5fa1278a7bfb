"""Crypto-shredding of argument provenance, end to end over real HTTP: each task's values are
fingerprinted under its own key (the master key and a secret on the task's row), so neither the
database nor the key file alone can test a guessed value; once the task ends (closed, expired
and reaped, its agent revoked, its parent ended) its secret is wiped and what it observed can no
longer be linked to any value, though its rows remain (the runtime role deletes nothing)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from support import Agent, mint
from tether.core.errors import Conflict, ErrorCode
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.provenance import fingerprints, task_key
from tether.core.task import Task
from tether.runtime import Runtime, open_runtime
from tether.service.clock import ManualClock
from tether.store.observations import SqlObservationStore

from .conftest import BROWSE, EVIL_URL, INJECTED, READ, SEND
from .test_provenance_api import codes, decide, delegate, observe, open_task

REQUEST = "Open https://news.example.org/today for me"


def _master(tmp_path: Path) -> bytes:
    return (tmp_path / "data" / "keys" / "provenance-hmac.key").read_bytes()


def _task(runtime: Runtime, task_id: str) -> Task:
    task = runtime.store.get_task(TaskId(task_id))
    assert task is not None
    return task


def _rows(runtime: Runtime, task_id: str) -> frozenset[str]:
    observed = SqlObservationStore(runtime.store).observations([TaskId(task_id)])
    return frozenset(fp for o in observed for fp in o.fingerprints)


def _seen(assistant: Agent, grant: str) -> None:
    """The agent reads a channel an attacker wrote in and reports it (untrusted)."""
    read = decide(assistant, grant, tool="chat.read", action="read", args={})
    assert read["decision"] == "allow"
    seen = observe(
        assistant, grant, tool="chat.read", decision_id=read["decision_id"], result=INJECTED
    )
    assert seen.status_code == 201, seen.text


def test_a_closed_tasks_values_can_no_longer_be_linked(
    assistant: Agent, runtime: Runtime, tmp_path: Path
) -> None:
    task = open_task(assistant, [BROWSE, READ], REQUEST)
    _seen(assistant, task["grant"])
    master = _master(tmp_path)
    secret = _task(runtime, task["task_id"]).provenance_secret
    assert secret and len(secret) == 32
    rows = _rows(runtime, task["task_id"])
    injected, _ = fingerprints(task_key(master, secret), INJECTED)
    requested, _ = fingerprints(task_key(master, secret), REQUEST)
    assert injected and requested and (injected | requested) <= rows
    # The key file alone does not test a guessed value against the rows, nor the secret alone.
    for alone in (master, secret):
        guessed, _ = fingerprints(alone, [INJECTED, REQUEST])
        assert guessed.isdisjoint(rows)

    assert assistant.close(task["task_id"]).status_code == 200

    # The rows stay, but the secret their key was made from is gone from the database.
    assert _rows(runtime, task["task_id"]) == rows
    assert _task(runtime, task["task_id"]).provenance_secret is None
    engine = runtime.store.db.engine
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT * FROM tasks WHERE task_id = :t"), {"t": task["task_id"]}
        ).one()
    assert stored._mapping["provenance_secret"] is None
    assert secret.hex() not in repr(stored)
    # What the master key computes now matches nothing the task left.
    guessed, _ = fingerprints(master, [INJECTED, REQUEST])
    assert guessed.isdisjoint(rows)
    # And the audit log holds neither a value nor the secret.
    audit = json.dumps([r.to_json() for r in runtime.store.audit_records()])
    for raw in ("true-informations", "news.example.org", secret.hex(), *rows):
        assert raw not in audit


def test_an_expired_task_is_shredded_by_the_reaper(
    assistant: Agent, runtime: Runtime, clock: ManualClock
) -> None:
    task = open_task(assistant, [BROWSE, READ], REQUEST)
    _seen(assistant, task["grant"])
    clock.advance(2 * 3600)
    assert _task(runtime, task["task_id"]).provenance_secret  # until the reaper runs
    assert runtime.tasks.reap_expired() >= 1
    assert _task(runtime, task["task_id"]).provenance_secret is None
    # (The agent's SVID has expired too: the gateway's door is asked directly.)
    assert runtime.provenance is not None
    with pytest.raises(Conflict) as refused:
        runtime.provenance.observe(_task(runtime, task["task_id"]), "chat.read", None, INJECTED)
    assert refused.value.code is ErrorCode.TASK_NOT_OPEN


def test_revoking_the_agent_shreds_its_tasks(assistant: Agent, runtime: Runtime) -> None:
    task = open_task(assistant, [BROWSE, READ], REQUEST)
    _seen(assistant, task["grant"])
    agent = _task(runtime, task["task_id"]).agent
    assert runtime.agents.revoke(agent, "compromised", "op:alice") == 1
    assert _task(runtime, task["task_id"]).provenance_secret is None


def test_each_task_of_a_chain_keeps_its_rows_under_its_own_key(
    assistant: Agent, runtime: Runtime, clock: ManualClock, tmp_path: Path
) -> None:
    helper = Agent(assistant.client, mint(runtime, "helper", clock))
    parent = open_task(assistant, [SEND, READ, BROWSE], "Post a note on 'general'.")
    child = delegate(assistant, parent, "spiffe://tether.local/agent/helper", [READ])
    _seen(helper, child["grant"])
    master = _master(tmp_path)
    keys = {
        name: task_key(master, _task(runtime, t["task_id"]).provenance_secret or b"")
        for name, t in (("parent", parent), ("child", child))
    }
    assert keys["parent"] != keys["child"]
    for name, t in (("parent", parent), ("child", child)):
        injected, _ = fingerprints(keys[name], INJECTED)
        assert injected <= _rows(runtime, t["task_id"]), name
    assert _rows(runtime, parent["task_id"]).isdisjoint(_rows(runtime, child["task_id"]))

    # The delegate ends: its rows are shredded; the parent still knows where the value was seen.
    assert helper.close(child["task_id"]).status_code == 200
    assert _task(runtime, child["task_id"]).provenance_secret is None
    assert _task(runtime, parent["task_id"]).provenance_secret
    body = {"channel": "general", "body": f"FYI {EVIL_URL}"}
    verdict = decide(assistant, parent["grant"], tool="chat.send", action="send", args=body)
    assert codes(verdict) == ["untrusted_argument"], verdict

    # Ending the parent ends and shreds the whole chain.
    child2 = delegate(assistant, parent, "spiffe://tether.local/agent/helper", [READ])
    assert assistant.close(parent["task_id"]).status_code == 200
    for t in (parent, child2):
        assert _task(runtime, t["task_id"]).provenance_secret is None


def _held_in_memory(secret: bytes) -> bool:
    """Whether a task row or task value this process keeps still carries ``secret``."""
    gc.collect()
    for held in gc.get_objects():
        if type(held) is Task and held.provenance_secret == secret:
            return True
        if type(held) is tuple and secret in held:
            return True
    return False


def test_an_ended_tasks_secret_and_key_leave_memory_when_it_ends(
    assistant: Agent, runtime: Runtime
) -> None:
    task = open_task(assistant, [BROWSE, READ], REQUEST)
    _seen(assistant, task["grant"])
    browse = decide(
        assistant, task["grant"], tool="web.browse", action="read", args={"url": EVIL_URL}
    )
    assert codes(browse) == ["untrusted_argument"]
    provenance = runtime.provenance
    assert provenance is not None
    task_id = TaskId(task["task_id"])
    secret = _task(runtime, task_id).provenance_secret
    assert secret
    # While the task is open, its chain (with its key) and its row are kept between decisions.
    assert task_id in provenance.remembered()
    assert _held_in_memory(secret)

    assert assistant.close(task_id).status_code == 200

    assert task_id not in provenance.remembered()
    assert not _held_in_memory(secret)


def test_a_task_ended_by_another_process_leaves_memory_after_the_idle_time(
    assistant: Agent, runtime: Runtime, clock: ManualClock
) -> None:
    task = open_task(assistant, [BROWSE, READ], REQUEST)
    _seen(assistant, task["grant"])
    decide(assistant, task["grant"], tool="web.browse", action="read", args={"url": EVIL_URL})
    provenance = runtime.provenance
    assert provenance is not None
    task_id = TaskId(task["task_id"])
    secret = _task(runtime, task_id).provenance_secret
    assert secret and task_id in provenance.remembered()

    # Another server on the same database closes it: this process is not told.
    other = open_runtime(runtime.config, clock=clock)
    try:
        closed = other.tasks.close_task(
            Workload.from_spiffe_id(_task(runtime, task_id).agent), task_id
        )
    finally:
        other.close()
    assert closed.provenance_secret is None
    assert task_id in provenance.remembered()

    # A sweep before the idle time keeps it (a chain in use is not re-read on every call)...
    clock.advance(30)
    runtime.forget_idle()
    assert task_id in provenance.remembered()
    # ...and the first sweep past it drops the chain, its key and the remembered row.
    clock.advance(31)
    runtime.forget_idle()
    assert task_id not in provenance.remembered()
    assert not _held_in_memory(secret)


def test_a_chain_in_use_stays_in_memory_across_sweeps(
    assistant: Agent, runtime: Runtime, clock: ManualClock
) -> None:
    task = open_task(assistant, [BROWSE, READ], REQUEST)
    provenance = runtime.provenance
    assert provenance is not None
    for _ in range(4):
        decide(assistant, task["grant"], tool="web.browse", action="read", args={"url": EVIL_URL})
        clock.advance(25)
        runtime.forget_idle()
        assert TaskId(task["task_id"]) in provenance.remembered()
