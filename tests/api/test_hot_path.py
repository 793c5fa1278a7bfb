"""The hot path (tether.api.hotpath): ``POST /v1/authorize`` and ``POST /v1/effects`` served ahead
of FastAPI answer exactly what the declared FastAPI routes answer, byte for byte (ids and times
aside), for good and bad input alike; decisions made on the event loop are each durable in the
audit chain before they are answered."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from support import make_runtime, mint
from tether.api.app import create_app
from tether.core.audit import AuditKind, verify_chain
from tether.core.identity import Workload
from tether.core.scope import ActionKind
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest

SCOPE = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
INTENT = {"workflow": "support-triage", "purpose": "p", "on_behalf_of": "user:1"}
JSON = "application/json"
# Ids and times differ from one decision to the next; everything else must not.
_VARYING = re.compile(r'"(?:dec|eff)_[0-9a-z]{26}"|"\d{4}-\d\d-\d\dT[0-9:.+]+"|dec_[0-9a-z]{26}')


@pytest.fixture
def rt(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path / "data", clock)
    yield runtime
    runtime.close()


def _answer(response: object) -> tuple[int, dict[str, str], str]:
    status = response.status_code  # type: ignore[attr-defined]
    headers = {
        k: v
        for k, v in response.headers.items()  # type: ignore[attr-defined]
        if k in ("content-type", "www-authenticate", "allow", "cache-control")
    }
    return status, headers, _VARYING.sub('"X"', response.text)  # type: ignore[attr-defined]


def test_the_hot_path_answers_what_the_declared_routes_answer(
    rt: Runtime, clock: ManualClock
) -> None:
    hot = TestClient(create_app(rt.api_deps))
    plain = TestClient(create_app(rt.api_deps, hot_paths=False))
    svid = mint(rt, "analyst", clock)
    auth = {"Authorization": f"Bearer {svid}"}
    opened = hot.post("/v1/tasks", json={"intent": INTENT, "scopes": [SCOPE]}, headers=auth)
    assert opened.status_code == 201, opened.text
    grant = opened.json()["grant"]
    ok = {"grant": grant, "tool": "crm.query", "action": "read", "dataset": "crm"}

    def dumped(body: object) -> bytes:
        return json.dumps(body).encode()

    cases: list[tuple[str, bytes, str | None, dict[str, str]]] = [
        ("allow", dumped(ok), JSON, auth),
        ("deny", dumped({**ok, "dataset": None}), JSON, auth),
        ("+json type", dumped(ok), "application/vnd.agent+json; charset=utf-8", auth),
        ("no type", dumped(ok), None, auth),
        ("text type", dumped(ok), "text/plain", auth),
        ("empty", b"", JSON, auth),
        ("array", b"[1, 2]", JSON, auth),
        ("null", b"null", JSON, auth),
        ("not json", b"{not json", JSON, auth),
        ("repeated key", b'{"grant": "a", "grant": "b"}', JSON, auth),
        ("surrogate", b'{"grant": "\\ud800", "tool": "a", "action": "read"}', JSON, auth),
        ("NaN", b'{"grant": "a", "tool": "a", "action": "read", "args": {"x": NaN}}', JSON, auth),
        ("bad action", dumped({**ok, "action": "teleport"}), JSON, auth),
        ("missing action", dumped({"grant": grant, "tool": "crm.query"}), JSON, auth),
        ("tool not text", dumped({**ok, "tool": 7}), JSON, auth),
        ("tool not a name", dumped({**ok, "tool": "x y"}), JSON, auth),
        ("args not object", dumped({**ok, "args": [1]}), JSON, auth),
        ("unknown field", dumped({**ok, "extra": 1}), JSON, auth),
        ("negative expect", dumped({**ok, "expect": {"records": -1}}), JSON, auth),
        ("long approval id", dumped({**ok, "approval_id": "a" * 65}), JSON, auth),
        ("empty grant", dumped({**ok, "grant": ""}), JSON, auth),
        ("forged grant", dumped({**ok, "grant": "abc"}), JSON, auth),
        ("infinite arg", dumped(ok)[:-1] + b', "args": {"x": 1e999}}', JSON, auth),
        ("big args", dumped({**ok, "args": {"b": "x" * 100_000}}), JSON, auth),
        ("over the body limit", b'{"grant": "' + b"x" * 300_000 + b'"}', JSON, auth),
        ("no token", dumped(ok), JSON, {}),
        ("basic auth", dumped(ok), JSON, {"Authorization": "Basic abc"}),
        ("bad token", dumped(ok), JSON, {"Authorization": "Bearer a.b.c"}),
        ("bad token, bad body", b"[1]", JSON, {"Authorization": "Bearer a.b.c"}),
        ("no token, not json", b"{x", JSON, {}),
    ]
    for label, content, content_type, headers in cases:
        sent = {**headers, **({"Content-Type": content_type} if content_type else {})}
        answers = [
            _answer(c.post("/v1/authorize", content=content, headers=sent)) for c in (hot, plain)
        ]
        assert answers[0] == answers[1], label
    assert _answer(hot.get("/v1/authorize", headers=auth)) == _answer(
        plain.get("/v1/authorize", headers=auth)
    )
    # A repeated header: the first counts, on both.
    for tokens in ([svid, "a.b.c"], ["a.b.c", svid]):
        twice = [("Authorization", f"Bearer {t}") for t in tokens] + [("Content-Type", JSON)]
        answers = [
            _answer(c.post("/v1/authorize", content=dumped(ok), headers=twice))
            for c in (hot, plain)
        ]
        assert answers[0] == answers[1], tokens

    decisions = [hot.post("/v1/authorize", json=ok, headers=auth).json()["decision_id"]]
    decisions.append(plain.post("/v1/authorize", json=ok, headers=auth).json()["decision_id"])
    unknown = "dec_" + "0" * 26
    effects: list[tuple[str, dict[str, object]]] = [
        ("first report", {"status": "ok", "records": 3, "recipients": ["a@example.com"]}),
        ("second report", {"status": "ok"}),
    ]
    for label, fields in effects:
        answers = [
            _answer(c.post("/v1/effects", json={"decision_id": d, **fields}, headers=auth))
            for c, d in zip((hot, plain), decisions, strict=True)
        ]
        assert answers[0] == answers[1], label
    # With the call's observation: one request for both (the remote MCP gateway's).
    seen = {"grant": grant, "tool": "crm.query", "dataset": "crm", "result": "bob@example.com"}
    decisions = [c.post("/v1/authorize", json=ok, headers=auth).json() for c in (hot, plain)]
    answers = [
        _answer(
            c.post(
                "/v1/effects",
                json={"decision_id": d["decision_id"], "observation": seen},
                headers=auth,
            )
        )
        for c, d in zip((hot, plain), decisions, strict=True)
    ]
    assert answers[0] == answers[1] and answers[0][0] == 201, answers
    bad_effects: list[dict[str, object]] = [
        {"decision_id": unknown, "status": "ok"},
        {"decision_id": "nope", "status": "ok"},
        {"decision_id": unknown, "status": "ok", "records": -1},
        {"decision_id": unknown, "status": "exploded"},
        {"decision_id": unknown, "x": 1},
        {"status": "ok"},
        {"decision_id": unknown, "observation": "bob@example.com"},
        {"decision_id": unknown, "observation": {"grant": grant, "tool": "crm.query"}},
        {"decision_id": unknown, "observation": {**seen, "extra": 1}},
        {"decision_id": unknown, "observation": {**seen, "grant": "abc"}},
        {"decision_id": unknown, "observation": seen},
    ]
    for body in bad_effects:
        answers = [_answer(c.post("/v1/effects", json=body, headers=auth)) for c in (hot, plain)]
        assert answers[0] == answers[1], body
    assert _answer(hot.post("/v1/effects", json=bad_effects[0])) == _answer(
        plain.post("/v1/effects", json=bad_effects[0])
    )


def test_the_hot_path_serves_its_operations_without_fastapi_routing(
    rt: Runtime, clock: ManualClock
) -> None:
    """With the declared FastAPI routes taken out, the hot operations are still answered (and
    without the hot path they are not): no request of theirs reaches FastAPI's routing."""
    hot = create_app(rt.api_deps)
    plain = create_app(rt.api_deps, hot_paths=False)
    for app in (hot, plain):
        app.router.routes = [
            r
            for r in app.router.routes
            if getattr(r, "path", "") not in ("/v1/authorize", "/v1/effects")
        ]
    auth = {"Authorization": f"Bearer {mint(rt, 'analyst', clock)}"}
    client = TestClient(hot)
    grant = client.post(
        "/v1/tasks", json={"intent": INTENT, "scopes": [SCOPE]}, headers=auth
    ).json()["grant"]
    body = {"grant": grant, "tool": "crm.query", "action": "read", "dataset": "crm"}
    served = client.post("/v1/authorize", json=body, headers=auth)
    assert served.status_code == 200 and served.json()["decision"] == "allow"
    effect = {"decision_id": served.json()["decision_id"], "status": "ok"}
    assert client.post("/v1/effects", json=effect, headers=auth).status_code == 201
    assert TestClient(plain).post("/v1/authorize", json=body, headers=auth).status_code == 404


def test_decisions_made_on_the_loop_are_each_in_the_audit_chain(
    rt: Runtime, clock: ManualClock
) -> None:
    agent = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
    client = TestClient(create_app(rt.api_deps))
    auth = {"Authorization": f"Bearer {mint(rt, 'analyst', clock)}"}
    grant = client.post(
        "/v1/tasks", json={"intent": INTENT, "scopes": [SCOPE]}, headers=auth
    ).json()["grant"]
    request = CallRequest("crm.query", ActionKind.READ, "crm", {"limit": 5})

    async def decide_all() -> list[str]:
        verdicts = await asyncio.gather(
            *(rt.authorizer.enforce_async(agent, grant, request) for _ in range(24))
        )
        assert {v.decision.value for v in verdicts} == {"allow"}
        return [v.decision_id for v in verdicts]

    decided = asyncio.run(decide_all())
    records = list(rt.store.audit_records())
    assert verify_chain(records, rt.store.chain_head()).ok
    audited = [r.body["decision_id"] for r in records if r.kind is AuditKind.DECISION]
    assert sorted(audited) == sorted(decided)


def test_the_answer_is_written_as_fastapi_writes_it_even_where_orjson_refuses() -> None:
    from tether.api.hotpath import _encode

    answer = {"decision": "allow", "message": 'é \u2028 \x01 "q"', "n": 3, "none": None}
    assert _encode(answer) == json.dumps(
        answer, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    # Beyond orjson (an integer past 64 bits, a key that is not a string): the standard path.
    for refused in ({"records": 2**70}, {1: "x"}):
        assert _encode(refused) == json.dumps(refused, separators=(",", ":")).encode("utf-8")
