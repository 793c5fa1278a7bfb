"""The options ``tether serve``, ``tether mcp-gateway`` and ``tether proxy`` share, defined once:
the data directory, the policies, the identity and store options, and logging.

Each is made from its key of ``tether.yaml`` (:func:`~tether.cli.config_schema.option`), so the
three commands take the same flags, read the same environment variables and the same keys.
:class:`Shared` carries them from a command's signature to the runtime it opens.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from tether.cli.config_file import ConfigOption
from tether.cli.config_schema import LogFormat, LogLevel, option
from tether.identity import DEFAULT_MAX_LIFETIME_SECONDS
from tether.identity.dev_issuer import DEFAULT_AUDIENCE, DEFAULT_TRUST_DOMAIN
from tether.logs import wants_json
from tether.runtime import RuntimeConfig, packaged_policies

#: The default of ``--data-dir`` (``TETHER_DATA_DIR`` is read by click, not here).
DEFAULT_DATA_DIR = Path(".tether")

DataDir = Annotated[Path, option("data_dir", "--data-dir", "-d", file_okay=False)]
Policies = Annotated[
    Path | None, option("policies", "--policies", "-p", file_okay=False, exists=True)
]
TrustBundle = Annotated[
    Path | None, option("identity.trust_bundle", "--trust-bundle", dir_okay=False)
]
TrustDomain = Annotated[str, option("identity.trust_domain", "--trust-domain")]
Audience = Annotated[str, option("identity.audience", "--audience")]
OidcIssuer = Annotated[str | None, option("identity.oidc_issuer", "--oidc-issuer")]
OidcJwks = Annotated[str | None, option("identity.oidc_jwks", "--oidc-jwks")]
MaxTokenLifetime = Annotated[int, option("identity.max_token_lifetime", "--max-token-lifetime")]
StoreUrl = Annotated[str | None, option("store.url", "--store-url", show_default=False)]
RedisUrl = Annotated[str | None, option("store.redis_url", "--redis-url", show_default=False)]
ReplicaId = Annotated[str | None, option("store.replica_id", "--replica-id", show_default=False)]
LogLevelOption = Annotated[LogLevel, option("log.level", "--log-level", case_sensitive=False)]
LogFormatOption = Annotated[LogFormat, option("log.format", "--log-format")]


def blank_is_none(value: str | None) -> str | None:
    """An option's value, or ``None`` when it is empty (an empty variable unsets it)."""
    if value is None:
        return None
    return value.strip() or None


@dataclass(frozen=True, slots=True)
class Shared:
    """The shared options as one command resolved them."""

    data_dir: Path
    policies: Path | None
    trust_bundle: Path | None
    trust_domain: str
    audience: str
    oidc_issuer: str | None
    oidc_jwks: str | None
    max_token_lifetime: int
    #: Kept out of repr (below): these URLs may carry passwords.
    store_url: str | None
    redis_url: str | None
    replica_id: str | None
    log_level: LogLevel
    log_format: LogFormat

    def __repr__(self) -> str:
        return f"Shared(data_dir={self.data_dir!r}, policies={self.policies!r})"

    @property
    def json_logs(self) -> bool:
        return wants_json(self.log_format.value)

    def runtime_config(self, **extra: Any) -> RuntimeConfig:
        """The runtime's configuration from these options (and ``extra`` of the command's)."""
        return RuntimeConfig(
            data_dir=self.data_dir,
            policy_dir=self.policies or packaged_policies(),
            environ=dict(os.environ),
            trust_bundle=self.trust_bundle,
            trust_domain=self.trust_domain,
            audience=self.audience,
            oidc_issuer=blank_is_none(self.oidc_issuer),
            oidc_jwks=blank_is_none(self.oidc_jwks),
            max_token_lifetime_seconds=self.max_token_lifetime,
            store_url=blank_is_none(self.store_url),
            redis_url=blank_is_none(self.redis_url),
            replica_id=blank_is_none(self.replica_id),
            **extra,
        )


def _shared_options(
    config: ConfigOption = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    policies: Policies = None,
    trust_bundle: TrustBundle = None,
    trust_domain: TrustDomain = DEFAULT_TRUST_DOMAIN,
    audience: Audience = DEFAULT_AUDIENCE,
    oidc_issuer: OidcIssuer = None,
    oidc_jwks: OidcJwks = None,
    max_token_lifetime: MaxTokenLifetime = DEFAULT_MAX_LIFETIME_SECONDS,
    store_url: StoreUrl = None,
    redis_url: RedisUrl = None,
    replica_id: ReplicaId = None,
    log_level: LogLevelOption = LogLevel.INFO,
    log_format: LogFormatOption = LogFormat.AUTO,
) -> None:
    """The shared options with their defaults, as typer reads them from a signature."""


_SHARED: Final = tuple(inspect.signature(_shared_options, eval_str=True).parameters.values())


def with_shared_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the shared options first in its signature (``--config``, then the data
    directory, policies, identity, store and logging); it receives them as ``shared``."""
    own = inspect.signature(command, eval_str=True)
    names = [parameter.name for parameter in _SHARED]

    @functools.wraps(command)
    def run(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name in names}
        del values["config"]  # read by its callback: the file's keys are the defaults
        command(shared=Shared(**values), **kwargs)

    rest = [parameter for parameter in own.parameters.values() if parameter.name != "shared"]
    run.__signature__ = own.replace(parameters=[*_SHARED, *rest])  # type: ignore[attr-defined]
    return run
