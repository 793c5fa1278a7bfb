"""Downstream systems as configured in ``credentials.yaml``: which calls get which credential.

The file sits beside the policies (it changes with them, through review)::

    issuers:
      - name: billing                    # a scoped JWT for an HTTP API
        kind: scoped_jwt
        tools: [billing.*]               # exact tool names, or a prefix ending in ".*"
        audience: https://billing.internal
        ttl_seconds: 120                 # at most 300
      - name: warehouse                  # a PostgreSQL login role per lease
        kind: postgres_role
        tools: [warehouse.query]
        admin_dsn_env: TETHER_WAREHOUSE_ADMIN_DSN   # the admin connection, from the environment
        ttl_seconds: 300
        datasets:                        # dataset → the tables that back it
          sales: [public.orders, public.order_lines]

An allowed call to a covered tool gets a lease for exactly that call's tool, action and dataset,
and the credential in its verdict. The admin DSN is never written in the file: it is named by an
environment variable, so the file can be reviewed and committed like the policies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import yaml

from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.lease import IssuerKind, Lease
from tether.core.scope import is_valid_name
from tether.core.verdict import IssuedCredential
from tether.credentials.jwt_lease import MAX_TOKEN_TTL, ScopedJwtIssuer
from tether.credentials.postgres import PostgresDatasets, PostgresRoleIssuer

CREDENTIALS_FILE: Final = "credentials.yaml"
_MAX_FILE_BYTES: Final = 256 * 1024
_NAME: Final = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_DEFAULT_TTL: Final = timedelta(seconds=300)
_LONGEST_PG_TTL: Final = timedelta(hours=12)


class ToolMatcher:
    """Exact tool names and ``prefix.*`` patterns."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, patterns: Sequence[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in patterns:
            if pattern.endswith(".*") and is_valid_name(pattern[:-2], 128):
                prefixes.append(pattern[:-1])
            elif is_valid_name(pattern, 128):
                exact.add(pattern)
            else:
                raise ConfigurationError(
                    f"{pattern!r} is not a tool name or a 'prefix.*' pattern",
                    code=ErrorCode.POLICY_INVALID,
                )
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __call__(self, tool: str) -> bool:
        return tool in self._exact or tool.startswith(self._prefixes)


@dataclass(frozen=True, slots=True)
class ScopedJwtDownstream:
    """An HTTP API that accepts tether's scoped lease tokens (verified with its JWKS)."""

    name: str
    audience: str
    ttl: timedelta
    matcher: ToolMatcher
    signer: ScopedJwtIssuer

    @property
    def kind(self) -> IssuerKind:
        return IssuerKind.SCOPED_JWT

    @property
    def max_ttl(self) -> timedelta:
        return self.ttl

    def covers(self, tool: str) -> bool:
        return self.matcher(tool)

    def mint(self, lease: Lease, *, now: datetime, actors: tuple[str, ...]) -> IssuedCredential:
        token = self.signer.issue_for_lease(
            lease,
            audience=self.audience,
            now=now,
            grant_expires_at=lease.max_expires_at,
            actors=actors,
        )
        return IssuedCredential(
            lease_id=lease.lease_id,
            issuer=self.name,
            kind=self.kind.value,
            expires_at=token.expires_at,
            value=token.token,
            audience=self.audience,
        )

    def release(self, lease: Lease) -> None:
        """Nothing to remove downstream: the token expires by itself, and an API that asks
        tether (introspection) learns at once that the lease has ended."""


@dataclass(frozen=True, slots=True)
class PostgresDownstream:
    """A PostgreSQL database whose datasets get a login role per lease."""

    name: str
    ttl: timedelta
    max_ttl: timedelta
    matcher: ToolMatcher
    datasets: PostgresDatasets
    roles: PostgresRoleIssuer

    @property
    def kind(self) -> IssuerKind:
        return IssuerKind.POSTGRES_ROLE

    def covers(self, tool: str) -> bool:
        return self.matcher(tool)

    def mint(self, lease: Lease, *, now: datetime, actors: tuple[str, ...]) -> IssuedCredential:
        credential = self.roles.issue(
            lease.lease_id, lease.scope, self.datasets.tables_for(lease.scope), lease.expires_at
        )
        return IssuedCredential(
            lease_id=lease.lease_id,
            issuer=self.name,
            kind=self.kind.value,
            expires_at=credential.valid_until,
            value=credential.reveal_conninfo(),
        )

    def release(self, lease: Lease) -> None:
        self.roles.revoke(lease.lease_id)


Downstream = ScopedJwtDownstream | PostgresDownstream


def load_downstreams(
    policy_dir: Path, *, signer: ScopedJwtIssuer, environ: Mapping[str, str]
) -> list[Downstream]:
    """The issuers ``credentials.yaml`` in ``policy_dir`` configures (none without the file)."""
    path = policy_dir / CREDENTIALS_FILE
    if not path.exists():
        return []
    data = path.read_bytes()
    if len(data) > _MAX_FILE_BYTES:
        raise _bad(f"the file is larger than {_MAX_FILE_BYTES // 1024} KiB")
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as error:
        raise _bad(f"not valid YAML ({type(error).__name__})") from None
    return parse_downstreams(raw, signer=signer, environ=environ)


def parse_downstreams(
    raw: object, *, signer: ScopedJwtIssuer, environ: Mapping[str, str]
) -> list[Downstream]:
    if raw is None:
        return []
    if not isinstance(raw, dict) or set(raw) != {"issuers"} or not isinstance(raw["issuers"], list):
        raise _bad("must be a mapping with one key, 'issuers', holding a list")
    out: list[Downstream] = []
    for index, entry in enumerate(raw["issuers"]):
        out.append(_one(entry, index, signer=signer, environ=environ))
    names = [d.name for d in out]
    if len(set(names)) != len(names):
        raise _bad("two issuers have the same name")
    return out


_COMMON: Final = {"name", "kind", "tools", "ttl_seconds"}
_KEYS: Final = {
    "scoped_jwt": _COMMON | {"audience"},
    "postgres_role": _COMMON | {"max_ttl_seconds", "admin_dsn_env", "datasets", "role_prefix"},
}


def _one(
    entry: object, index: int, *, signer: ScopedJwtIssuer, environ: Mapping[str, str]
) -> Downstream:
    where = f"issuer {index + 1}"
    if not isinstance(entry, dict):
        raise _bad(f"{where} must be a mapping")
    kind = entry.get("kind")
    if kind not in _KEYS:
        raise _bad(f"{where}: kind must be one of {', '.join(sorted(_KEYS))}")
    unknown = set(entry) - _KEYS[kind]
    if unknown:
        raise _bad(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _bad(f"{where}: name must be lower-case letters, digits, '_' or '-'")
    where = f"issuer {name!r}"
    tools = entry.get("tools")
    if not isinstance(tools, list) or not tools or not all(isinstance(t, str) for t in tools):
        raise _bad(f"{where}: tools must be a non-empty list of tool names")
    matcher = ToolMatcher(tools)
    ttl = _seconds(entry, "ttl_seconds", _DEFAULT_TTL, where)
    if kind == "scoped_jwt":
        audience = entry.get("audience")
        if not isinstance(audience, str) or not audience or len(audience) > 512:
            raise _bad(f"{where}: audience must name the API (its URL or id)")
        if ttl > MAX_TOKEN_TTL:
            raise _bad(f"{where}: ttl_seconds is at most {int(MAX_TOKEN_TTL.total_seconds())}")
        return ScopedJwtDownstream(name, audience, ttl, matcher, signer)
    max_ttl = _seconds(entry, "max_ttl_seconds", ttl, where)
    if max_ttl < ttl or max_ttl > _LONGEST_PG_TTL:
        raise _bad(f"{where}: max_ttl_seconds must be between ttl_seconds and 12 hours")
    env = entry.get("admin_dsn_env")
    if not isinstance(env, str) or not env:
        raise _bad(f"{where}: admin_dsn_env must name the environment variable with the DSN")
    dsn = environ.get(env)
    if not dsn:
        raise ConfigurationError(
            f"{CREDENTIALS_FILE}: {where} reads its admin DSN from ${env}, which is not set",
            code=ErrorCode.CONFIGURATION,
        )
    datasets = entry.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise _bad(f"{where}: datasets must map each dataset to its tables")
    prefix = entry.get("role_prefix", "tether_l_")
    if not isinstance(prefix, str):
        raise _bad(f"{where}: role_prefix must be a string")
    return PostgresDownstream(
        name,
        ttl,
        max_ttl,
        matcher,
        PostgresDatasets(datasets),
        PostgresRoleIssuer(dsn, role_prefix=prefix),
    )


def _seconds(entry: dict[str, Any], key: str, default: timedelta, where: str) -> timedelta:
    value = entry.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"{where}: {key} must be a positive whole number of seconds")
    return timedelta(seconds=value)


def _bad(message: str) -> ConfigurationError:
    return ConfigurationError(f"{CREDENTIALS_FILE}: {message}", code=ErrorCode.POLICY_INVALID)
