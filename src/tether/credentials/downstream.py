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
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.configfile import (
    PositiveInt,
    Problem,
    ProblemsError,
    Text,
    YamlDocument,
    YamlModel,
    read_yaml_file,
    share,
    shared,
    validate,
)
from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.lease import IssuerKind, Lease
from tether.core.scope import is_valid_name
from tether.core.verdict import IssuedCredential
from tether.credentials.jwt_lease import MAX_TOKEN_TTL, ScopedJwtIssuer
from tether.credentials.postgres import (
    PostgresDatasets,
    PostgresRoleIssuer,
    TableRef,
    role_prefix_problem,
)

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


# -- credentials.yaml ---------------------------------------------------------------------------


def _issuer_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError("must be lower-case letters, digits, '_' or '-' (at most 63)")
    return name


def _tool_pattern(pattern: str) -> str:
    try:
        ToolMatcher([pattern])
    except ConfigurationError as error:
        raise ValueError(error.message) from None
    return pattern


def _table_ref(value: str) -> str:
    try:
        TableRef.parse(value)
    except ConfigurationError as error:
        raise ValueError(error.message) from None
    return value


def _dataset_name(name: str) -> str:
    if not is_valid_name(name, 128):
        raise ValueError(f"{name!r} is not a valid dataset name")
    return name


def _role_prefix(prefix: str) -> str:
    why = role_prefix_problem(prefix)
    if why is not None:
        raise ValueError(why)
    return prefix


IssuerName = Annotated[str, Strict(), AfterValidator(_issuer_name)]
ToolPattern = Annotated[str, Strict(), AfterValidator(_tool_pattern)]
DatasetName = Annotated[str, Strict(), AfterValidator(_dataset_name)]
TableName = Annotated[str, Strict(), AfterValidator(_table_ref)]


def _unique(name: str, info: ValidationInfo) -> str:
    names = shared(info, "issuer names")
    if isinstance(names, list) and names.count(name) > 1:
        raise ValueError(f"{names.count(name)} issuers are named {name!r}; names are unique")
    return name


class _IssuerModel(YamlModel):
    name: Annotated[IssuerName, AfterValidator(_unique)]
    tools: Annotated[list[ToolPattern], Field(min_length=1)]
    ttl_seconds: PositiveInt | None = None


class ScopedJwtModel(_IssuerModel):
    """An issuer of ``kind: scoped_jwt``."""

    kind: Literal["scoped_jwt"]
    audience: Annotated[str, Strict(), Field(min_length=1, max_length=512)]
    ttl_seconds: (
        Annotated[int, Strict(), Field(gt=0, le=int(MAX_TOKEN_TTL.total_seconds()))] | None
    ) = None


class PostgresRoleModel(_IssuerModel):
    """An issuer of ``kind: postgres_role``."""

    kind: Literal["postgres_role"]
    admin_dsn_env: Text
    datasets: Annotated[
        dict[DatasetName, Annotated[list[TableName], Field(min_length=1)]], Field(min_length=1)
    ]
    max_ttl_seconds: PositiveInt | None = None

    @field_validator("max_ttl_seconds")
    @classmethod
    def _longer(cls, seconds: int | None, info: ValidationInfo) -> int | None:
        ttl = info.data.get("ttl_seconds") or int(_DEFAULT_TTL.total_seconds())
        if seconds is not None and not ttl <= seconds <= _LONGEST_PG_TTL.total_seconds():
            raise ValueError("must be between ttl_seconds and 12 hours (43200)")
        return seconds

    role_prefix: Annotated[str, Strict(), AfterValidator(_role_prefix)] = "tether_l_"


class CredentialsFile(YamlModel):
    """The whole of ``credentials.yaml``."""

    issuers: list[Annotated[ScopedJwtModel | PostgresRoleModel, Field(discriminator="kind")]]

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any, info: ValidationInfo) -> Any:
        issuers = data.get("issuers") if isinstance(data, dict) else None
        if isinstance(issuers, list):
            names = [i.get("name") for i in issuers if isinstance(i, dict)]
            share(info, "issuer names", names)
        return data


def load_downstreams(
    policy_dir: Path, *, signer: ScopedJwtIssuer, environ: Mapping[str, str]
) -> list[Downstream]:
    """The issuers ``credentials.yaml`` in ``policy_dir`` configures (none without the file);
    raises ``ConfigurationError(POLICY_INVALID)`` listing every problem at ``file:line:col``."""
    path = policy_dir / CREDENTIALS_FILE
    if not path.exists():
        return []
    return _downstreams(_read(path, CREDENTIALS_FILE), signer=signer, environ=environ)


def check_credentials_file(path: Path) -> list[Problem]:
    """Every problem of the ``credentials.yaml`` at ``path``, named by ``path`` (for ``tether
    policy validate``): its YAML and its schema. Not the environment: the variables naming the
    admin DSNs are the deployment's, checked when tether starts."""
    try:
        _issuers(_read(path, str(path)))
    except ProblemsError as error:
        return list(error.problems)
    return []


def _read(path: Path, file: str) -> YamlDocument:
    return read_yaml_file(path, file=file, max_bytes=_MAX_FILE_BYTES, code=ErrorCode.POLICY_INVALID)


def parse_downstreams(
    raw: object, *, signer: ScopedJwtIssuer, environ: Mapping[str, str]
) -> list[Downstream]:
    """The issuers of ``credentials.yaml`` given as data already parsed."""
    doc = YamlDocument.of(raw, file=CREDENTIALS_FILE, code=ErrorCode.POLICY_INVALID)
    return _downstreams(doc, signer=signer, environ=environ)


def _downstreams(
    doc: YamlDocument, *, signer: ScopedJwtIssuer, environ: Mapping[str, str]
) -> list[Downstream]:
    return [
        _downstream(doc, index, issuer, signer=signer, environ=environ)
        for index, issuer in enumerate(_issuers(doc))
    ]


def _issuers(doc: YamlDocument) -> Sequence[ScopedJwtModel | PostgresRoleModel]:
    """The file's issuers, as checked by its schema (none in an empty file)."""
    return () if doc.data is None else validate(doc, CredentialsFile).issuers


def _downstream(
    doc: YamlDocument,
    index: int,
    issuer: ScopedJwtModel | PostgresRoleModel,
    *,
    signer: ScopedJwtIssuer,
    environ: Mapping[str, str],
) -> Downstream:
    matcher = ToolMatcher(issuer.tools)
    ttl = timedelta(seconds=issuer.ttl_seconds) if issuer.ttl_seconds else _DEFAULT_TTL
    if isinstance(issuer, ScopedJwtModel):
        return ScopedJwtDownstream(issuer.name, issuer.audience, ttl, matcher, signer)
    max_ttl = timedelta(seconds=issuer.max_ttl_seconds) if issuer.max_ttl_seconds else ttl
    dsn = environ.get(issuer.admin_dsn_env)
    if not dsn:
        where = doc.problem(
            ("issuers", index, "admin_dsn_env"),
            f"issuer {issuer.name!r} reads its admin DSN from ${issuer.admin_dsn_env}, which is "
            "not set",
        )
        raise ConfigurationError(str(where), code=ErrorCode.CONFIGURATION)
    try:
        roles = PostgresRoleIssuer(dsn, role_prefix=issuer.role_prefix)
    except ConfigurationError as error:  # the DSN (the prefix is checked above)
        where = doc.problem(("issuers", index, "admin_dsn_env"), error.message)
        raise ConfigurationError(str(where), code=ErrorCode.CONFIGURATION) from None
    return PostgresDownstream(
        issuer.name, ttl, max_ttl, matcher, PostgresDatasets(issuer.datasets), roles
    )
