"""The lease domain value: TTL, max TTL, renewal caps, idempotent revocation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.errors import Conflict, ErrorCode, InvalidRequest
from tether.core.ids import GrantId, TaskId
from tether.core.lease import (
    IssuerKind,
    Lease,
    LeaseNotRenewable,
    LeaseState,
    credential_obligation,
    expire,
    is_lease_id,
    new_lease_id,
    open_lease,
    renew,
    revoke,
)
from tether.core.scope import Scope
from tether.core.verdict import ObligationKind
from tether.service.clock import ManualClock

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def make(
    now: datetime = T0,
    *,
    ttl: timedelta = 5 * MINUTE,
    max_ttl: timedelta = 30 * MINUTE,
    grant_expires_at: datetime | None = None,
    renewable: bool = True,
) -> Lease:
    return open_lease(
        lease_id=new_lease_id(bytes(16)),
        task_id=TaskId("tsk_0123456789abcdefghjkmnpqrs"),
        grant_id=GrantId("grt_0123456789abcdefghjkmnpqrs"),
        agent="spiffe://example.org/agent/analyst",
        issuer=IssuerKind.POSTGRES_ROLE,
        scope=Scope.of("crm.query", ["read"], ["crm"]),
        now=now,
        ttl=ttl,
        max_ttl=max_ttl,
        grant_expires_at=grant_expires_at or now + timedelta(hours=1),
        renewable=renewable,
    )


def test_lease_ids_have_their_own_prefix() -> None:
    lease_id = new_lease_id(bytes(range(16)))
    assert lease_id.startswith("lse_") and len(lease_id) == 30
    assert is_lease_id(lease_id)
    assert not is_lease_id("tsk_" + lease_id[4:])
    assert not is_lease_id('lse_x"; DROP ROLE postgres; --')
    with pytest.raises(ValueError):
        new_lease_id(bytes(15))


def test_open_caps_expiry_and_maximum_at_the_grant() -> None:
    lease = make(grant_expires_at=T0 + 2 * MINUTE)
    assert lease.state is LeaseState.ACTIVE
    assert lease.issued_at == T0
    assert lease.expires_at == lease.max_expires_at == T0 + 2 * MINUTE
    with pytest.raises(Conflict):
        make(grant_expires_at=T0)
    with pytest.raises(InvalidRequest):
        make(ttl=timedelta(0))
    with pytest.raises(InvalidRequest):
        make(now=datetime(2026, 11, 28, 12, 0))


def test_renew_moves_expiry_from_now_within_max_ttl() -> None:
    clock = ManualClock(T0)
    lease = make()
    clock.advance(4 * 60)
    renewed = renew(lease, clock.now(), 5 * MINUTE, T0 + timedelta(hours=1))
    assert renewed.expires_at == T0 + 9 * MINUTE
    clock.advance(4 * 60)
    renewed = renew(renewed, clock.now(), timedelta(hours=2), T0 + timedelta(hours=1))
    assert renewed.expires_at == renewed.max_expires_at == T0 + 30 * MINUTE


def test_renew_never_passes_the_grant_s_expiry() -> None:
    lease = make(max_ttl=timedelta(hours=2), grant_expires_at=T0 + timedelta(hours=3))
    renewed = renew(lease, T0 + MINUTE, timedelta(hours=1), T0 + 10 * MINUTE)
    assert renewed.expires_at == T0 + 10 * MINUTE


@pytest.mark.parametrize(
    "ended",
    [
        lambda lease: revoke(lease, T0 + MINUTE),
        lambda lease: expire(lease, T0 + 6 * MINUTE),
        lambda lease: lease,  # active in the record, but its expiry has passed
    ],
)
def test_renew_refuses_ended_leases(ended: object) -> None:
    lease = ended(make())  # type: ignore[operator]
    with pytest.raises(LeaseNotRenewable) as caught:
        renew(lease, T0 + 6 * MINUTE, MINUTE, T0 + timedelta(hours=1))
    assert isinstance(caught.value, Conflict)
    assert caught.value.code is ErrorCode.LEASE_NOT_RENEWABLE
    assert lease.lease_id in caught.value.message


def test_renew_refuses_non_renewable_leases_and_exhausted_caps() -> None:
    with pytest.raises(LeaseNotRenewable, match="not renewable"):
        renew(make(renewable=False), T0 + MINUTE, MINUTE, T0 + timedelta(hours=1))
    lease = make(grant_expires_at=T0 + 10 * MINUTE)
    with pytest.raises(LeaseNotRenewable, match="maximum TTL"):
        renew(lease, T0 + MINUTE, MINUTE, T0 + MINUTE)  # the grant ends now
    with pytest.raises(InvalidRequest):
        renew(lease, T0 + MINUTE, timedelta(0), T0 + 10 * MINUTE)


def test_revoke_is_idempotent() -> None:
    lease = make()
    once = revoke(lease, T0 + MINUTE)
    assert once.state is LeaseState.REVOKED and once.ended_at == T0 + MINUTE
    assert revoke(once, T0 + 2 * MINUTE) == once
    expired = expire(lease, T0 + 10 * MINUTE)
    assert expired.state is LeaseState.EXPIRED and expired.ended_at == lease.expires_at
    assert revoke(expired, T0 + 11 * MINUTE) == expired


def test_state_at_reads_an_overdue_active_lease_as_expired() -> None:
    lease = make()
    assert lease.is_active_at(T0 + 4 * MINUTE)
    assert not lease.is_active_at(T0 + 5 * MINUTE)
    assert lease.state_at(T0 + 5 * MINUTE) is LeaseState.EXPIRED
    assert expire(lease, T0 + 4 * MINUTE) == lease


def test_a_lease_never_holds_inconsistent_times() -> None:
    lease = make()
    with pytest.raises(InvalidRequest):
        replace(lease, expires_at=lease.max_expires_at + MINUTE)
    with pytest.raises(InvalidRequest):
        replace(lease, expires_at=lease.issued_at - MINUTE)


def test_the_obligation_names_the_lease() -> None:
    lease = make()
    obligation = credential_obligation(lease, "permit-crm-read")
    assert obligation.kind is ObligationKind.CREDENTIAL
    assert obligation.value == lease.lease_id
    assert lease.to_json()["state"] == "active"
    assert lease.to_json()["scope"] == lease.scope.to_json()


seconds = st.integers(min_value=1, max_value=48 * 3600)


@given(
    ttl=seconds,
    max_ttl=seconds,
    grant_after=seconds,
    renew_after=st.integers(min_value=0, max_value=48 * 3600),
    requested=seconds,
    grant_at_renewal=st.integers(min_value=-3600, max_value=48 * 3600),
)
def test_renew_never_extends_past_max_ttl_or_the_grant(
    ttl: int,
    max_ttl: int,
    grant_after: int,
    renew_after: int,
    requested: int,
    grant_at_renewal: int,
) -> None:
    lease = make(
        ttl=timedelta(seconds=ttl),
        max_ttl=timedelta(seconds=max_ttl),
        grant_expires_at=T0 + timedelta(seconds=grant_after),
    )
    now = T0 + timedelta(seconds=renew_after)
    grant_expires_at = T0 + timedelta(seconds=grant_at_renewal)
    assert lease.expires_at <= lease.max_expires_at <= T0 + timedelta(seconds=grant_after)
    try:
        renewed = renew(lease, now, timedelta(seconds=requested), grant_expires_at)
    except LeaseNotRenewable:
        assert now >= lease.expires_at or min(lease.max_expires_at, grant_expires_at) <= now
        return
    # INVARIANT: a renewed lease never outlives its maximum TTL nor its grant.
    assert now < renewed.expires_at <= min(lease.max_expires_at, grant_expires_at)
    assert renewed.max_expires_at == lease.max_expires_at
    assert renewed.state is LeaseState.ACTIVE
