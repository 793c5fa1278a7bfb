"""Operating the egress proxy: ``GET /metrics`` with the metric names of ``tether serve``, served
by the proxy itself and never routed to an upstream (``--no-metrics`` hands the path back to the
routes); ``--log-format json`` makes every stderr line one JSON object, never a token."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

import httpx
import typer
import yaml
from typer.testing import CliRunner

from metrics_support import assert_one_allow_and_one_deny, door_process
from proxy.harness import CRM_QUERY, LEGACY_SECRET, Env, LegacyService, proxy_config, serve
from support import INTENT, make_runtime, mint
from tether.cli.proxy import proxy
from tether.core.scope import Scope as GrantScope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.proxy import load_config, open_proxy
from tether.runtime import RuntimeConfig, open_runtime, packaged_policies
from tether.service.clock import ManualClock


def test_metrics_count_the_proxys_decisions_and_never_reach_an_upstream(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    allowed = analyst.call("GET", "/legacy/customers/c-77")
    assert allowed.status_code == 200, allowed.text
    denied = analyst.call("PUT", "/legacy/tickets/T-1", json={"discount": 5})
    assert denied.status_code == 403, denied.text
    hits = env.legacy.hits

    response = env.client.get("/metrics")  # no Authorization header
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert_one_allow_and_one_deny(response.text)
    for secret in (analyst.svid, analyst.grant, LEGACY_SECRET):
        assert secret not in response.text

    # With the agent's credentials too, /metrics is the scrape, not a call to forward.
    scraped = analyst.call("GET", "/metrics")
    assert scraped.status_code == 200 and "tether_decisions_total" in scraped.text
    refused = analyst.call("POST", "/metrics", json={})
    assert refused.status_code == 405
    assert refused.json()["error"]["code"] == "method_not_allowed"
    assert env.legacy.hits == hits  # nothing of the scrape reached the legacy service


def _metrics_upstream_config(path: Path, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "upstreams": {"metrics": {"url": f"{url}/api"}},
                "routes": [
                    {
                        "upstream": "metrics",
                        "method": "GET",
                        "path": "/customers/{id}",
                        "tool": "crm.query",
                        "action": "read",
                        "dataset": "crm",
                    }
                ],
            }
        )
    )
    return path


def test_an_upstream_named_metrics_is_refused_while_the_proxy_serves_metrics(
    tmp_path: Path,
) -> None:
    config = _metrics_upstream_config(tmp_path / "proxy.yaml", "http://127.0.0.1:9")
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    app = typer.Typer()
    app.command("proxy")(proxy)
    app.command("unused", hidden=True)(lambda: None)
    started = runner.invoke(app, ["proxy", "--proxy-config", str(config), *data])
    assert started.exit_code == 2
    text = " ".join(started.output.split())
    assert "'metrics' would be shadowed" in text and "--no-metrics" in text


def test_without_metrics_the_path_is_an_ordinary_route(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    config = RuntimeConfig(
        data_dir=tmp_path / "data", policy_dir=packaged_policies(), environ={}, metrics=False
    )
    runtime = open_runtime(config, clock=clock)
    legacy = LegacyService()
    try:
        with serve(legacy) as legacy_url:
            loaded = load_config(_metrics_upstream_config(tmp_path / "proxy.yaml", legacy_url))
            _, app = open_proxy(loaded, runtime)
            with serve(app) as url:
                bare = httpx.get(f"{url}/metrics", timeout=15)
                assert bare.status_code == 401, bare.text  # the proxy's pipeline, not a scrape
                svid = mint(runtime, "analyst", clock)
                workload = runtime.verifier.verify(svid, clock.now())
                opened = runtime.tasks.open_task(
                    workload, Intent(**INTENT), [GrantScope.from_json(CRM_QUERY)], 600
                )
                headers = {"Authorization": f"Bearer {svid}", "X-Tether-Grant": opened.token}
                routed = httpx.get(f"{url}/metrics/customers/c-5", headers=headers, timeout=15)
        # The legacy service demands a secret this upstream does not hold: what matters is
        # that the call was decided and forwarded.
        assert routed.status_code == 401 and legacy.seen[-1].raw_path == "/api/customers/c-5"
    finally:
        runtime.close()


def test_a_proxy_process_logs_json_lines_and_counts_its_decisions(tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))  # the proxy process runs on the system clock
    data = tmp_path / "data"
    runtime = make_runtime(data, clock)
    try:
        svid = mint(runtime, "analyst", clock)
        workload = runtime.verifier.verify(svid, clock.now())
        opened = runtime.tasks.open_task(
            workload, Intent(**INTENT), [GrantScope.from_json(CRM_QUERY)], 600
        )
    finally:
        runtime.close()
    SecretStore(data, environ={}).set("legacy-key", Secret(LEGACY_SECRET))
    legacy = LegacyService()
    stderr = tmp_path / "proxy.stderr"
    with serve(legacy) as legacy_url:
        config = tmp_path / "proxy.yaml"
        full = proxy_config(legacy_url, legacy_url)
        legacy_only = {
            "upstreams": {"legacy": full["upstreams"]["legacy"]},
            "routes": [r for r in full["routes"] if r["upstream"] == "legacy"],
        }
        config.write_text(yaml.safe_dump(legacy_only))
        args = ["proxy", "--proxy-config", str(config), "-d", str(data), "--log-format", "json"]
        with door_process(args, stderr) as base:
            headers = {"Authorization": f"Bearer {svid}", "X-Tether-Grant": opened.token}
            allowed = httpx.get(f"{base}/legacy/customers/c-3", headers=headers, timeout=15)
            assert allowed.status_code == 200, allowed.text
            denied = httpx.put(
                f"{base}/legacy/tickets/T-1", headers=headers, json={"discount": 5}, timeout=15
            )
            assert denied.status_code == 403, denied.text
            scraped = httpx.get(f"{base}/metrics", timeout=15)
            assert scraped.status_code == 200
            assert_one_allow_and_one_deny(scraped.text)
            # A request uvicorn itself refuses: its own log line must be JSON too.
            with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), 10) as raw:
                raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                raw.recv(1024)

    entries = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
    assert all(isinstance(entry, dict) for entry in entries)  # every line is one JSON object
    events = [entry["event"] for entry in entries]
    assert "proxy_listening" in events and "proxy_forwarded" in events
    decided = [e for e in entries if e["event"] == "decision"]
    assert [d["decision"] for d in decided] == ["allow", "deny"]
    assert any(e.get("logger") == "uvicorn.error" for e in entries)
    text = stderr.read_text()
    for secret in (svid, opened.token, LEGACY_SECRET):
        assert secret not in text
