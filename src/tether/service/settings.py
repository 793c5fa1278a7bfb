"""Limits and defaults the use cases enforce. Every input tether accepts is bounded."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.core.callcheck import CallLimits


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    #: Grant lifetime when the task asks for none, and the cap on what it may ask for.
    default_ttl_seconds: int = 600
    max_ttl_seconds: int = 3600
    min_ttl_seconds: int = 10
    #: Bounds on what one request may carry.
    max_scopes: int = 64
    max_intent_field: int = 512
    max_args_bytes: int = 64 * 1024
    max_args_depth: int = 8
    max_recipients: int = 1000
    #: Argument names whose values are recorded in clear in the audit log; every other value is
    #: HMAC'd (keyed, so auditors can correlate equal values without reading them).
    plain_audit_args: frozenset[str] = field(default_factory=frozenset)
    #: How many hops of delegation a grant may be from its root grant.
    max_delegation_depth: int = 3
    #: How long an approval waits for a human before it expires (expiry means deny).
    approval_ttl_seconds: int = 900
    #: How many expired tasks the reaper ends per sweep.
    reap_batch: int = 500

    @property
    def call_limits(self) -> CallLimits:
        """What the enforcement entry lets one call carry."""
        return CallLimits(max_args_bytes=self.max_args_bytes, max_args_depth=self.max_args_depth)
