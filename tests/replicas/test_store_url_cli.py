"""``--store-url`` / ``TETHER_DATABASE_URL`` on ``tether serve`` and ``tether audit``: the same
commands, on the replicas' database, never showing its password."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from replicas.harness import CRM, READ, Agents, Replica, open_task
from tether.cli.main import app

runner = CliRunner()


def _traffic(agents: Callable[[str], Agents]) -> None:
    analyst = agents("analyst")
    task = open_task(analyst.on[0], [CRM])
    for agent in analyst.on:
        assert agent.authorize(task["grant"], **READ).json()["decision"] == "allow"
    assert analyst.on[1].close(task["task_id"]).status_code == 200


def test_audit_export_and_tail_read_the_shared_chain(
    pair: list[Replica], agents: Callable[[str], Agents], store_url: str, tmp_path: Path
) -> None:
    _traffic(agents)
    exported = tmp_path / "audit.jsonl"
    # The export is signed with the replicas' audit key, in the data directory they share.
    shared = ["--data-dir", str(tmp_path / "data")]
    done = runner.invoke(
        app, ["audit", "export", "--store-url", store_url, *shared, "-o", str(exported)]
    )
    assert done.exit_code == 0, done.output
    *lines, signed = exported.read_text().splitlines()
    # Each replica's partition, in the log's order: the records share one (test) time, so by
    # partition, then seq: a opened the task and decided once, b decided and closed it.
    written = [json.loads(line) for line in lines]
    assert [(r["partition"], r["seq"], r["kind"]) for r in written] == [
        ("a", 1, "task_opened"),
        ("a", 2, "decision"),
        ("b", 1, "decision"),
        ("b", 2, "task_closed"),
    ]
    checkpoint = json.loads(signed)["checkpoint"]
    assert checkpoint["size"] == len(lines)
    assert [(p["partition"], p["size"]) for p in checkpoint["partitions"]] == [("a", 2), ("b", 2)]
    verified = runner.invoke(app, ["audit", "verify", "--file", str(exported), *shared])
    assert verified.exit_code == 0, verified.output
    tail = runner.invoke(app, ["audit", "tail", "-n", "2"], env={"TETHER_DATABASE_URL": store_url})
    assert tail.exit_code == 0, tail.output
    rows = [line.split("\t") for line in tail.output.splitlines()[1:]]  # a header, then rows
    shown = [(row[0], row[2]) for row in rows]
    assert shown == [("b/1", "decision"), ("b/2", "task_closed")]


def test_audit_verify_names_the_first_bad_record_and_never_the_password(
    pair: list[Replica], agents: Callable[[str], Agents], store_url: str
) -> None:
    _traffic(agents)
    url = make_url(store_url)
    # The database owner rewrites history (a replica's runtime role could not).
    with psycopg.connect(
        host=url.host, port=url.port, dbname=url.database, user=url.username, password=url.password
    ) as owner:
        owner.execute(
            "UPDATE audit SET body = replace(body, 'allow', 'deny') "
            "WHERE partition_id = 'a' AND seq = 2"
        )
    result = runner.invoke(app, ["audit", "verify", "--store-url", store_url])
    assert result.exit_code == 1
    assert "chain_broken" in result.output and "record 2 of partition 'a'" in result.output
    assert "(postgresql store)" in result.output
    assert str(url.password) not in result.output and str(url.port) not in result.output


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_replica_pointed_at_a_dead_database_refuses_to_start(tmp_path: Path) -> None:
    dead = f"postgresql://tether:s3cret-pw@127.0.0.1:{_closed_port()}/tether"
    for command in (["serve", "-d", str(tmp_path)], ["audit", "verify"]):
        result = runner.invoke(app, command, env={"TETHER_DATABASE_URL": dead})
        assert result.exit_code == 3, result.output  # unavailable
        assert "store_unavailable" in result.output and "cannot connect" in result.output
        assert "s3cret-pw" not in result.output
    assert not (tmp_path / "tether.db").exists()  # no silent fall-back to SQLite


def test_a_url_tether_cannot_use_is_a_configuration_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["audit", "verify", "--store-url", "mysql://root:hunter2@db/tether"]
    )
    assert result.exit_code == 2
    assert "configuration" in result.output and "hunter2" not in result.output


def test_the_operator_kill_switch_and_reports_reach_the_replicas_database(
    pair: list[Replica], agents: Callable[[str], Agents], store_url: str
) -> None:
    analyst = agents("analyst")
    task = open_task(analyst.on[0], [CRM])
    assert analyst.on[1].authorize(task["grant"], **READ).json()["decision"] == "allow"
    data = str(pair[0].runtime.config.data_dir)
    agent = "spiffe://tether.local/agent/analyst"

    revoked = runner.invoke(
        app, ["agents", "revoke", agent, "-r", "drill", "-d", data, "--store-url", store_url]
    )

    assert revoked.exit_code == 0, revoked.output
    assert "1 open task(s) ended" in revoked.output
    for replica in analyst.on:
        assert replica.authorize(task["grant"], **READ).json()["decision"] == "deny"
    listed = runner.invoke(
        app, ["agents", "list", "-d", data], env={"TETHER_DATABASE_URL": store_url}
    )
    # The revocation, with its reason, is read back from the shared database.
    assert listed.exit_code == 0 and "drill" in listed.output and "operator:" in listed.output
    report = runner.invoke(app, ["report", "risks", "--json", "--store-url", store_url])
    assert report.exit_code == 0, report.output
    assert json.loads(report.output)["decisions"] >= 1
    assert make_url(store_url).password not in report.output
