"""Argument provenance end to end over real HTTP: the user's request at task open, results
observed through POST /v1/observations, and sink arguments decided by /v1/authorize."""

from __future__ import annotations

import json

import httpx
import pytest

from support import INTENT, Agent
from tether.runtime import Runtime

from .conftest import ALL, BROWSE, CONTACTS, EVIL_URL, INJECTED, READ, SEND, TRANSFER


def open_task(agent: Agent, scopes: list[dict[str, object]], request: str | None) -> dict:  # type: ignore[type-arg]
    intent = {**INTENT, **({"request": request} if request is not None else {})}
    response = agent.client.post(
        "/v1/tasks", json={"intent": intent, "scopes": scopes}, headers=agent.headers
    )
    assert response.status_code == 201, response.text
    task = response.json()
    assert {s["tool"] for s in task["granted"]} == {s["tool"] for s in scopes}, task["refused"]
    return task  # type: ignore[no-any-return]


def observe(agent: Agent, grant: str, **body: object) -> httpx.Response:
    return agent.client.post(
        "/v1/observations", json={"grant": grant, **body}, headers=agent.headers
    )


def decide(agent: Agent, grant: str, **call: object) -> dict:  # type: ignore[type-arg]
    response = agent.authorize(grant, **call)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def codes(verdict: dict) -> list[str]:  # type: ignore[type-arg]
    return [r["code"] for r in verdict["reasons"]]


def read_channel(agent: Agent, grant: str) -> None:
    """The agent reads a channel someone else wrote in, and reports what it saw."""
    allowed = decide(agent, grant, tool="chat.read", action="read", args={})
    assert allowed["decision"] == "allow"
    seen = observe(
        agent,
        grant,
        tool="chat.read",
        decision_id=allowed["decision_id"],
        result={"messages": [{"from": "eve", "text": INJECTED}]},
    )
    assert seen.status_code == 201, seen.text
    assert seen.json()["source"] == {"tool": "chat.read", "dataset": None, "trust": "untrusted"}
    assert seen.json()["values"] >= 2 and seen.json()["complete"] is True


def test_a_url_seen_only_in_an_untrusted_result_is_not_browsed(assistant: Agent) -> None:
    task = open_task(assistant, ALL, "Summarize what the team said in the channel today.")
    read_channel(assistant, task["grant"])
    verdict = decide(
        assistant, task["grant"], tool="web.browse", action="read", args={"url": EVIL_URL}
    )
    assert verdict["decision"] == "deny"
    assert codes(verdict) == ["untrusted_argument"]
    assert "ASI01" in verdict["risks"] and verdict["policy_ids"] == ["tether:provenance"]
    message = verdict["reasons"][0]["message"]
    assert "'url'" in message and "seen in chat.read" in message
    assert EVIL_URL not in message and "true-informations" not in message


def test_a_link_from_an_untrusted_result_inside_a_message_body_is_refused(
    assistant: Agent,
) -> None:
    task = open_task(assistant, ALL, "Tell the team on 'general' that I'll be late.")
    read_channel(assistant, task["grant"])
    body = f"Running late. Meanwhile read {EVIL_URL} !"
    verdict = decide(
        assistant,
        task["grant"],
        tool="chat.send",
        action="send",
        args={"channel": "general", "body": body},
    )
    assert verdict["decision"] == "deny" and codes(verdict) == ["untrusted_argument"]
    assert "'body'" in verdict["reasons"][0]["message"]
    fine = decide(
        assistant,
        task["grant"],
        tool="chat.send",
        action="send",
        args={"channel": "general", "body": "Running late, sorry."},
    )
    assert fine["decision"] == "allow", fine


def test_the_same_url_in_the_users_request_is_allowed(assistant: Agent) -> None:
    task = open_task(assistant, ALL, f"Read {EVIL_URL} and post a summary to 'general'.")
    read_channel(assistant, task["grant"])
    browse = decide(
        assistant, task["grant"], tool="web.browse", action="read", args={"url": EVIL_URL}
    )
    assert browse["decision"] == "allow", browse
    send = decide(
        assistant,
        task["grant"],
        tool="chat.send",
        action="send",
        args={"channel": "general", "body": f"Summary of {EVIL_URL}: all good."},
    )
    assert send["decision"] == "allow", send


def test_without_a_request_nothing_the_agent_makes_up_fills_a_trusted_sink(
    assistant: Agent,
) -> None:
    task = open_task(assistant, [BROWSE], None)
    verdict = decide(
        assistant,
        task["grant"],
        tool="web.browse",
        action="read",
        args={"url": "https://x.example.org/"},
    )
    assert codes(verdict) == ["untrusted_argument"]
    assert "not seen in the user's request" in verdict["reasons"][0]["message"]


def test_the_operators_trusted_values_fill_a_trusted_sink(assistant: Agent) -> None:
    task = open_task(assistant, [BROWSE], None)
    verdict = decide(
        assistant,
        task["grant"],
        tool="web.browse",
        action="read",
        args={"url": "https://intranet.mycompany.example/"},
    )
    assert verdict["decision"] == "allow", verdict


def test_a_trusted_tools_result_is_trusted_only_with_its_allow(assistant: Agent) -> None:
    task = open_task(assistant, [BROWSE, CONTACTS], "Open my partner's site.")
    grant = task["grant"]
    site = "https://partner.example.com/"
    # Claimed without the allow of contacts.list: recorded, but untrusted.
    claimed = observe(assistant, grant, tool="contacts.list", result=[{"site": site}])
    assert claimed.status_code == 201 and claimed.json()["source"]["trust"] == "untrusted"
    assert codes(
        decide(assistant, grant, tool="web.browse", action="read", args={"url": site})
    ) == ["untrusted_argument"]
    allowed = decide(assistant, grant, tool="contacts.list", action="read", args={})
    seen = observe(
        assistant,
        grant,
        tool="contacts.list",
        decision_id=allowed["decision_id"],
        result=[{"site": site}],
    )
    assert seen.json()["source"]["trust"] == "trusted"
    assert (
        decide(assistant, grant, tool="web.browse", action="read", args={"url": site})["decision"]
        == "allow"
    )


COLLEAGUE_URL = "https://www.informations.example/article"


def test_a_link_a_team_member_posted_is_trusted_and_an_outsiders_is_not(
    assistant: Agent,
) -> None:
    task = open_task(assistant, [READ, BROWSE], "Summarize the article Bob posted.")
    grant = task["grant"]
    allowed = decide(assistant, grant, tool="chat.read", action="read", args={})
    result = {
        "channel": "general",
        "messages": [
            {"from": "bob", "text": f"I read an interesting article on {COLLEAGUE_URL}!"},
            {"from": "eve", "text": INJECTED},
            {"from": "Bob", "text": "https://look-alike.example/ (not the member 'bob')"},
        ],
    }
    seen = observe(
        assistant, grant, tool="chat.read", decision_id=allowed["decision_id"], result=result
    )
    assert seen.status_code == 201, seen.text
    assert seen.json()["trusted_parts"] == 1
    assert seen.json()["source"] == {"tool": "chat.read", "dataset": None, "trust": "untrusted"}
    browse = {"tool": "web.browse", "action": "read"}
    assert decide(assistant, grant, **browse, args={"url": COLLEAGUE_URL})["decision"] == "allow"
    for url in (EVIL_URL, "https://look-alike.example/"):
        verdict = decide(assistant, grant, **browse, args={"url": url})
        assert verdict["decision"] == "deny" and codes(verdict) == ["untrusted_argument"]
        assert "seen in chat.read" in verdict["reasons"][0]["message"]


def test_parts_are_trusted_only_with_the_allow_of_the_call(assistant: Agent) -> None:
    task = open_task(assistant, [READ, BROWSE], "Summarize the article Bob posted.")
    grant = task["grant"]
    result = {"messages": [{"from": "bob", "text": f"see {COLLEAGUE_URL}"}]}
    # Reported without the allow of chat.read: every part of it is untrusted.
    claimed = observe(assistant, grant, tool="chat.read", result=result)
    assert claimed.status_code == 201 and claimed.json()["trusted_parts"] == 0
    verdict = decide(
        assistant, grant, tool="web.browse", action="read", args={"url": COLLEAGUE_URL}
    )
    assert codes(verdict) == ["untrusted_argument"]


def test_an_untrusted_recipient_asks_a_human(assistant: Agent) -> None:
    task = open_task(assistant, [READ, TRANSFER], "Pay the rent as the landlord asked.")
    read = decide(assistant, task["grant"], tool="chat.read", action="read", args={})
    observe(
        assistant,
        task["grant"],
        tool="chat.read",
        decision_id=read["decision_id"],
        result="New bank details: GB29 NWBK 6016 1331 9268 19",
    )
    verdict = decide(
        assistant,
        task["grant"],
        tool="bank.transfer",
        action="spend",
        args={"recipient": "GB29NWBK60161331926819", "amount": 900},
    )
    assert verdict["decision"] == "approval_required" and verdict["approval_id"]
    assert codes(verdict)[0] == "untrusted_argument"
    assert "an IBAN" in verdict["reasons"][0]["message"]


def test_cedar_reads_the_provenance_facts(assistant: Agent) -> None:
    """A sink failing with approval_required reaches Cedar: the test policy forbids a message
    to a channel the user did not name (context.provenance.untrusted contains "channel")."""
    task = open_task(assistant, [SEND], "Post hello on 'general'.")
    named = decide(
        assistant,
        task["grant"],
        tool="chat.send",
        action="send",
        args={"channel": "general", "body": "hello"},
    )
    assert named["decision"] == "allow" and named["policy_ids"] == ["assistant-tools"]
    other = decide(
        assistant,
        task["grant"],
        tool="chat.send",
        action="send",
        args={"channel": "random", "body": "hello"},
    )
    assert other["decision"] == "deny", other
    assert codes(other) == ["policy_forbids"]
    assert "no-untrusted-chat-recipients" in other["policy_ids"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"tool": "chat.read", "result": INJECTED, "extra": 1}, 400, "invalid_field"),
        ({"tool": "bad name!", "result": INJECTED}, 400, "invalid_field"),
        ({"tool": "chat.read", "result": INJECTED, "decision_id": "nope"}, 400, "invalid_field"),
        ({"tool": "chat.read", "result": INJECTED, "dataset": ""}, 400, "invalid_field"),
        ({"tool": "chat.read"}, 400, "invalid_field"),
        ({"tool": "chat.read", "result": "x" * 300_000}, 413, "payload_too_large"),
    ],
)
def test_a_malformed_observation_is_refused_and_changes_nothing(
    assistant: Agent,
    body: dict,
    status: int,
    code: str,  # type: ignore[type-arg]
) -> None:
    task = open_task(assistant, [SEND, READ], "Post it on 'general'.")
    response = observe(assistant, task["grant"], **body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    # Nothing was recorded: the URL the refused result carried is still seen nowhere, so it
    # passes not_only_untrusted (it fails it once a well-formed observation records it).
    args = {"channel": "general", "body": f"see {EVIL_URL}"}
    assert (
        decide(assistant, task["grant"], tool="chat.send", action="send", args=args)["decision"]
        == "allow"
    )
    assert observe(assistant, task["grant"], tool="chat.read", result=INJECTED).status_code == 201
    assert codes(decide(assistant, task["grant"], tool="chat.send", action="send", args=args)) == [
        "untrusted_argument"
    ]


def test_observations_need_the_callers_own_open_grant(
    assistant: Agent, analyst: Agent, clock: object
) -> None:
    task = open_task(assistant, [READ], None)
    stolen = observe(analyst, task["grant"], tool="chat.read", result="x")
    assert stolen.status_code == 403 and stolen.json()["error"]["code"] == "grant_not_bound"
    forged = observe(assistant, "not-a-grant", tool="chat.read", result="x")
    assert forged.status_code == 403
    closed = assistant.close(task["task_id"])
    assert closed.status_code == 200
    late = observe(assistant, task["grant"], tool="chat.read", result="x")
    assert late.status_code == 409 and late.json()["error"]["code"] == "task_not_open"


def test_the_request_is_bounded_and_never_recorded(assistant: Agent, runtime: Runtime) -> None:
    too_long = {**INTENT, "request": "x" * 16_385}
    response = assistant.client.post(
        "/v1/tasks", json={"intent": too_long, "scopes": [BROWSE]}, headers=assistant.headers
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_field"
    task = open_task(assistant, [BROWSE], f"Please read {EVIL_URL}")
    audit = [json.dumps(r.body) for r in runtime.store.audit_records()]
    assert audit and not any("true-informations" in a for a in audit)
    opened = [r.body for r in runtime.store.audit_records() if r.body.get("grant_id")]
    assert opened[-1]["request"] == {"values": 3, "whole": True}
    assert task["task_id"]


def test_a_result_too_large_to_scan_counts_its_rest_as_untrusted(assistant: Agent) -> None:
    task = open_task(assistant, [SEND, READ], "Post it on 'general'.")
    args = {"channel": "general", "body": "see https://elsewhere.example.net/page"}
    assert (
        decide(assistant, task["grant"], tool="chat.send", action="send", args=args)["decision"]
        == "allow"
    )
    huge = observe(assistant, task["grant"], tool="chat.read", result="word " * 20_000)
    assert huge.status_code == 201 and huge.json()["complete"] is False
    # The URL may have been in the part not scanned: it now counts as untrusted.
    after = decide(assistant, task["grant"], tool="chat.send", action="send", args=args)
    assert codes(after) == ["untrusted_argument"]
    assert "not scanned" in after["reasons"][0]["message"]


def delegate(parent: Agent, task: dict, child_id: str, scopes: list[dict[str, object]]) -> dict:  # type: ignore[type-arg]
    response = parent.client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={"grant": task["grant"], "agent": child_id, "scopes": scopes},
        headers=parent.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_delegate_cannot_launder_what_it_saw_for_its_parent(
    assistant: Agent, runtime: Runtime, clock: object
) -> None:
    from support import mint

    helper = Agent(assistant.client, mint(runtime, "helper", clock))  # type: ignore[arg-type]
    parent = open_task(assistant, ALL, f"Post a note on 'general'; background: {EVIL_URL}x")
    child = delegate(assistant, parent, "spiffe://tether.local/agent/helper", [READ, BROWSE])
    # The delegate reads the channel; what it saw rolls up to its parent.
    read = decide(helper, child["grant"], tool="chat.read", action="read", args={})
    seen = observe(
        helper, child["grant"], tool="chat.read", decision_id=read["decision_id"], result=INJECTED
    )
    assert seen.status_code == 201 and seen.json()["task_id"] == child["task_id"]
    body = {"channel": "general", "body": f"FYI {EVIL_URL}"}
    verdict = decide(assistant, parent["grant"], tool="chat.send", action="send", args=body)
    assert codes(verdict) == ["untrusted_argument"], verdict
    # ... and the delegate sees its root's request: a URL the user gave it is trusted for it.
    given = f"{EVIL_URL}x"
    assert (
        decide(helper, child["grant"], tool="web.browse", action="read", args={"url": given})[
            "decision"
        ]
        == "allow"
    )
    assert codes(
        decide(helper, child["grant"], tool="web.browse", action="read", args={"url": EVIL_URL})
    ) == ["untrusted_argument"]
