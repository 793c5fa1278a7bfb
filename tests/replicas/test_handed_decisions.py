"""Decisions on PostgreSQL through ``enforce_async``, as ``POST /v1/authorize`` makes them: the
facts are read and the call decided on a worker thread, which hands the write to the store's
writer thread without waiting; the loop hears of each committed batch once
(:meth:`~tether.service.authorize.Authorizer._decide_handed`). Real runtime on a real
PostgreSQL database, real Cedar, real OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import make_url

from replicas.harness import CRM, replica_config
from support import INTENT
from tether.core.audit import AuditKind, verify_chain
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode, Verdict
from tether.observability import Observability
from tether.runtime import Runtime, open_runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

ANALYST = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
READ = CallRequest("crm.query", ActionKind.READ, "crm", {"limit": 5})


@pytest.fixture
def runtime(tmp_path: Path, store_url: str, clock: ManualClock) -> Iterator[Runtime]:
    opened = open_runtime(replica_config(tmp_path / "data", store_url, replica_id="a"), clock=clock)
    yield opened
    opened.close()


def grant(runtime: Runtime) -> str:
    opened = runtime.tasks.open_task(
        ANALYST, Intent(**INTENT), [Scope.from_json(CRM)], ttl_seconds=600
    )
    return opened.token


def decide_together(runtime: Runtime, token: str, count: int) -> list[Verdict]:
    async def together() -> list[Verdict]:
        calls = [runtime.authorizer.enforce_async(ANALYST, token, READ) for _ in range(count)]
        return await asyncio.gather(*calls)

    return asyncio.run(together())


def test_concurrent_decisions_are_each_committed_in_the_partitions_chain(
    runtime: Runtime,
) -> None:
    token = grant(runtime)
    verdicts = decide_together(runtime, token, 24)
    assert {v.decision for v in verdicts} == {Decision.ALLOW}, verdicts[0].reasons

    records = list(runtime.store.audit_records(partition="a"))
    assert verify_chain(records, runtime.store.chain_head()).ok
    audited = [str(r.body["decision_id"]) for r in records if r.kind is AuditKind.DECISION]
    assert sorted(audited) == sorted(v.decision_id for v in verdicts)
    assert all(runtime.store.get_decision(v.decision_id) is not None for v in verdicts)


def test_a_batch_whose_commit_fails_denies_every_decision_in_it(
    runtime: Runtime, store_url: str
) -> None:
    # Every statement of the batch succeeds and its COMMIT fails (a deferred constraint
    # trigger, run only at commit): each decision handed over must come back denied with
    # audit_unavailable, none recorded, the chain's head unmoved.
    token = grant(runtime)
    before = runtime.store.chain_head()
    libpq = make_url(store_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as admin:
        admin.execute(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'commit refused'; END $$"
        )
        admin.execute(
            "CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON decisions "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit()"
        )

    verdicts = decide_together(runtime, token, 8)
    assert [v.decision for v in verdicts] == [Decision.DENY] * 8
    assert {v.reasons[0].code for v in verdicts} == {ReasonCode.AUDIT_UNAVAILABLE}
    assert all(runtime.store.get_decision(v.decision_id) is None for v in verdicts)
    assert runtime.store.chain_head() == before


def test_a_write_the_closed_store_refuses_is_an_unrecorded_deny(runtime: Runtime) -> None:
    # The worker thread's hand-over itself fails (the store is closed): the steps end there,
    # on that thread, with an unrecorded deny that reaches the loop; nothing raises.
    token = grant(runtime)
    runtime.store.close()
    [verdict] = decide_together(runtime, token, 1)
    assert verdict.decision is Decision.DENY
    assert verdict.reasons[0].code in {ReasonCode.AUDIT_UNAVAILABLE, ReasonCode.STORE_UNAVAILABLE}


def test_the_write_span_is_a_child_of_the_decision_span_across_the_threads(
    tmp_path: Path, store_url: str, clock: ManualClock
) -> None:
    # The write's span opens on the worker thread and closes on the loop: one context, so
    # the span nests under the decision's and both end, with the decision's verdict.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    config = replica_config(tmp_path / "data", store_url, replica_id="a")
    observed = Observability(tracer=provider.get_tracer("test"))
    runtime = open_runtime(config, clock=clock, observability=observed)
    try:
        verdicts = decide_together(runtime, grant(runtime), 3)
    finally:
        runtime.close()
        provider.shutdown()
    assert {v.decision for v in verdicts} == {Decision.ALLOW}

    finished = spans.get_finished_spans()
    decided = {
        str(dict(s.attributes or {})["tether.decision_id"]): s
        for s in finished
        if s.name == "tether.authorize"
    }
    appends = [s for s in finished if s.name == "tether.audit.append"]
    assert sorted(decided) == sorted(v.decision_id for v in verdicts)
    assert len(appends) == 3
    for append in appends:
        parent = decided[str(dict(append.attributes or {})["tether.decision_id"])]
        assert append.parent is not None and parent.context is not None
        assert append.parent.span_id == parent.context.span_id
        assert dict(parent.attributes or {})["tether.decision"] == "allow"
