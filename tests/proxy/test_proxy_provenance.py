"""The egress proxy records what each answer puts in the agent's context (argument provenance):
the answer's values, as fingerprints under the task's provenance key, with the route's tool
and dataset as an untrusted source."""

from __future__ import annotations

from proxy.harness import CRM_QUERY, Env
from tether.core.ids import TaskId
from tether.core.provenance import Source, Trust, observe, task_key
from tether.store.observations import SqlObservationStore


def test_an_answer_passed_back_is_observed_for_the_task(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    store = SqlObservationStore(env.runtime.store)
    assert store.observations([TaskId(analyst.task_id)]) == []

    response = analyst.call("GET", "/legacy/customers/c-1042?limit=5")
    assert response.status_code == 200, response.text

    # Under the task's own key: the master key and the task's secret.
    master = (env.data_dir / "keys" / "provenance-hmac.key").read_bytes()
    task = env.runtime.store.get_task(TaskId(analyst.task_id))
    assert task is not None and task.provenance_secret
    key = task_key(master, task.provenance_secret)
    source = Source("crm.query", "crm", Trust.UNTRUSTED)
    expected = observe(key, source, response.text)
    assert expected.fingerprints
    assert store.observations([TaskId(analyst.task_id)]) == [expected]


def test_a_refused_call_observes_nothing(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("PUT", "/legacy/tickets/t-1", json={"discount": 5})
    assert response.status_code == 403, response.text
    assert SqlObservationStore(env.runtime.store).observations([TaskId(analyst.task_id)]) == []
