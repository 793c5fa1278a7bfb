"""A policy change that fails to load is visible to operators, not only in a log line: ``/readyz``
says degraded (with the error and the revision still in force) and ``/metrics`` counts it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_support import observed_server, scrape, value

from tether.runtime import Runtime, RuntimeConfig, open_runtime, packaged_policies
from tether.service.clock import ManualClock

BROKEN = 'permit(principal, action == Action::"read", resource'


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(packaged_policies(), target)
    return target


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock, policy_dir: Path) -> Iterator[Runtime]:
    config = RuntimeConfig(data_dir=tmp_path / "data", policy_dir=policy_dir, environ={})
    rt = open_runtime(config, clock=clock)
    yield rt
    rt.close()


@pytest.fixture
def base_url(runtime: Runtime) -> Iterator[str]:
    with observed_server(runtime) as url:
        yield url


def write(path: Path, text: str) -> None:
    """Write ``text`` and move mtime forward, so the change shows on coarse clocks too."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1_000_000))


def ready(base_url: str) -> httpx.Response:
    return httpx.get(f"{base_url}/readyz", timeout=10)


def test_a_failed_reload_is_degraded_in_readyz_and_counted_in_metrics(
    runtime: Runtime, base_url: str, policy_dir: Path
) -> None:
    good = runtime.policy.revision
    before = ready(base_url)
    assert before.status_code == 200
    assert before.json() == {"status": "ready", "policy_revision": good}
    samples = scrape(base_url)
    assert value(samples, "tether_policy_reload_failures_total") == 0
    assert value(samples, "tether_policy_revision_info", revision=good) == 1
    assert value(samples, "tether_policy_reload_failing") == 0

    write(policy_dir / "wiki.cedar", BROKEN)
    result = runtime.policy.check_for_changes()  # what the housekeeping sweep calls
    assert result is not None and not result.ok

    degraded = ready(base_url)
    assert degraded.status_code == 200  # still deciding, on the last good policies
    body = degraded.json()
    assert body["status"] == "degraded"
    assert body["policy_revision"] == good
    assert body["policy_error"]["code"] == "policy_invalid"
    assert "wiki.cedar" in body["policy_error"]["message"]
    samples = scrape(base_url)
    assert value(samples, "tether_policy_reload_failures_total") == 1
    assert value(samples, "tether_policy_revision_info", revision=good) == 1
    assert value(samples, "tether_policy_reload_failing") == 1

    write(policy_dir / "wiki.cedar", BROKEN + ";;")  # a second bad edit counts again
    runtime.policy.check_for_changes()
    assert value(scrape(base_url), "tether_policy_reload_failures_total") == 2

    write(
        policy_dir / "wiki.cedar",
        '@id("wiki")\npermit(principal, action == Action::"read", resource == Tool::"wiki.read");',
    )
    fixed = runtime.policy.check_for_changes()
    assert fixed is not None and fixed.ok and fixed.changed
    after = ready(base_url)
    assert after.json() == {"status": "ready", "policy_revision": fixed.revision}
    samples = scrape(base_url)
    assert value(samples, "tether_policy_reload_failures_total") == 2  # a counter never resets
    assert value(samples, "tether_policy_revision_info", revision=fixed.revision) == 1
    assert value(samples, "tether_policy_revision_info", revision=good) is None
    assert value(samples, "tether_policy_reload_failing") == 0
