"""Replicas share the data directory's keys, and must: shown both ways."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from replicas.harness import CRM, READ, Replica, codes, open_task, race, running_replicas
from support import Agent, mint
from tether.runtime import _load_or_create_secret
from tether.service.clock import ManualClock


def test_replicas_first_starting_together_on_an_empty_directory_get_one_audit_key(
    tmp_path: Path,
) -> None:
    for attempt in range(20):
        path = tmp_path / f"run-{attempt}" / "keys" / "audit-hmac.key"
        keys = race([partial(_load_or_create_secret, path) for _ in range(8)])
        assert len(set(keys)) == 1
        assert path.read_bytes() == keys[0]
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["audit-hmac.key"]  # no temp left


def test_a_replica_with_keys_of_its_own_refuses_the_others_grants(
    pair: list[Replica], store_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    a = pair[0]
    # A misconfigured replica: same database, its own data directory. Give it the development
    # identity issuer's key so the agent authenticates, but not the grant or audit keys.
    stray_dir = tmp_path / "stray"
    (stray_dir / "keys").mkdir(parents=True)
    stray_dir.chmod(0o700)  # a data directory open to other users is refused
    shutil.copy2(a.runtime.config.data_dir / "keys" / "dev-issuer.pem", stray_dir / "keys")
    with running_replicas(stray_dir, store_url, clock, 1) as (stray,), stray.client() as client:
        svid = mint(a.runtime, "analyst", clock)
        with a.client() as home:
            task = open_task(Agent(home, svid), [CRM])
        refused = Agent(client, svid).authorize(task["grant"], **READ).json()
    # Fail-closed, but useless: every grant signed elsewhere is invalid here.
    assert refused["decision"] == "deny" and codes(refused)[0] == "grant_invalid"
