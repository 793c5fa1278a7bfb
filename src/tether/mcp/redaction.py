"""The secrets the gateway gives its upstreams, and taking them back out of everything an upstream
sends towards an agent (issue: no secret ever returned).

    gateway start   every secret gateway.yaml names (``secret_env``, ``credential``) is read from
                    tether's encrypted secret store: a missing one, or one under 8 bytes, stops
                    the gateway with an error naming it (never its value)
    upstream spawn  the connection reads its secrets again through :meth:`SecretBook.reveal`
                    (a value rotated since is added; the old one is still redacted, since
                    upstreams started earlier hold it)
    every answer    tools/call results (content, structuredContent, _meta), resources/read
                    contents, prompts/get messages, list results (tool, resource and prompt
                    descriptors), progress and log messages:
                    each secret, in any form :mod:`tether.core.redact` knows, becomes
                    ``[redacted:NAME]``, and a ``secret_redacted`` audit record names the
                    upstream, the tool (or prompt, resource), the secret's name and the forms
                    found, never the value. What cannot be redacted in place is withheld.
    on disk         the tool listing kept for a warm start never holds a descriptor carrying a
                    secret (:mod:`tether.mcp.warmstart`)

Upstream JSON-RPC errors never reach an agent as sent: the gateway answers with its own message
(``<method> answered with error <code>``), so there is nothing of the upstream's to redact there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from mcp.shared.dispatcher import ProgressFnT

from tether.core.audit import AuditKind
from tether.core.redact import Found, Redacted, Redactor, Unredactable, audit_body, merge
from tether.core.scope import JSONValue
from tether.core.secret import Secret
from tether.logs import get_logger
from tether.mcp.config import GatewayConfig, HttpUpstream, StdioUpstream
from tether.mcp.pdp import AuditSink

log = get_logger("tether.mcp.redaction")

SecretSource = Callable[[str], Secret]

#: Where in the traffic a secret was found (the audit record's ``where``).
RESULT: Final = "result"
PROGRESS: Final = "progress"
LOG_MESSAGE: Final = "log_message"
LISTING: Final = "listing"
#: What stands for a value that held a secret where it could not be redacted in place.
WITHHELD: Final = "[redacted]"


def configured_secrets(config: GatewayConfig) -> list[str]:
    """The names of every secret ``config`` gives an upstream, in order, once each."""
    names: list[str] = []
    for upstream in config.upstreams:
        if isinstance(upstream, StdioUpstream):
            names += [secret for _, secret in upstream.secret_env]
        elif isinstance(upstream, HttpUpstream) and upstream.credential is not None:
            names.append(upstream.credential.secret)
    return list(dict.fromkeys(names))


class SecretBook:
    """The secrets given to upstreams, by name; the redactor that finds them; redacting what
    reaches an agent, each redaction audited through ``audit``."""

    def __init__(self, source: SecretSource, audit: AuditSink) -> None:
        self._source = source
        self._audit = audit
        self._values: list[tuple[str, bytes]] = []
        self._redactor: Redactor | None = None

    def __repr__(self) -> str:
        return f"SecretBook(secrets={len(self._values)})"

    def load(self, names: Iterable[str]) -> None:
        """Read each of ``names`` now (at gateway start): an error names the first secret that
        is missing, unreadable or too short to be told from ordinary text."""
        for name in names:
            self.reveal(name)

    def reveal(self, name: str) -> Secret:
        """The secret ``name``, from the store, remembered to be redacted from then on (the
        source the upstream connections read their credentials through)."""
        secret = self._source(name)
        value = (name, secret.reveal().encode("utf-8"))
        if value not in self._values:
            # Built before it is kept: a value the redactor refuses is never handed out.
            self._redactor = Redactor([*self._values, value])
            self._values.append(value)
        return secret

    @property
    def redactor(self) -> Redactor | None:
        return self._redactor

    def redact(self, value: dict[str, Any], wire: bytes | None = None) -> Redacted:
        """``value`` with every secret replaced (raises ``Unredactable``, see
        :meth:`tether.core.redact.Redactor.redact_json`)."""
        redactor = self._redactor
        return Redacted(value) if redactor is None else redactor.redact_json(value, wire)

    def redact_text(self, text: str | None) -> tuple[str | None, tuple[Found, ...]]:
        redactor = self._redactor
        if text is None or redactor is None:
            return text, ()
        return redactor.redact_text(text)

    def redact_any(self, value: Any) -> tuple[Any, tuple[Found, ...]]:
        """A JSON value of any kind (a log message's ``data``); one that cannot be redacted in
        place becomes :data:`WITHHELD` alone."""
        redactor = self._redactor
        if redactor is None:
            return value, ()
        try:
            redacted = redactor.redact_json(value)
        except Unredactable:
            return WITHHELD, (Found(WITHHELD, ("unredactable",), 1),)
        return redacted.value, redacted.found

    def holds(self, value: Any) -> bool:
        """Whether ``value`` (JSON) carries a secret, in any form (what must not be written
        to disk, e.g. a tool listing kept for a warm start)."""
        redactor = self._redactor
        if redactor is None:
            return False
        try:
            return bool(redactor.redact_json(value).found)
        except Unredactable:
            return True

    # -- on the way to an agent ----------------------------------------------------------------

    async def listing(self, method: str, listing: dict[str, Any], agent: str) -> Redacted:
        """A listing (``tools/list``, ``resources/list``, ``prompts/list``: ``{key: items}``)
        with every secret redacted and audited; one that cannot be redacted in place is
        answered empty."""
        try:
            redacted = self.redact(listing)
        except Unredactable:
            redacted = Redacted(
                {key: [] for key in listing}, (Found(WITHHELD, ("unredactable",), 1),)
            )
        if redacted.found:
            await self.record("*", method, LISTING, redacted.found, None, agent)
        return redacted

    async def record(
        self,
        upstream: str,
        name: str | None,
        where: str,
        found: tuple[Found, ...],
        decision_id: str | None,
        agent: str | None,
    ) -> None:
        """Audit one redaction through the gateway's audit path (the store's hash chain)."""
        log.warning(
            "secret_redacted",
            upstream=upstream,
            tool=name,
            where=where,
            secrets=[f.name for f in found],
        )
        await self._audit.append_async(
            AuditKind.SECRET_REDACTED,
            redacted_body(upstream, name, where, found, decision_id),
            agent=agent,
        )

    def progress(
        self,
        forward: ProgressFnT,
        upstream: str,
        name: str,
        decision_id: str | None,
        agent: str | None,
    ) -> ProgressFnT:
        """``forward`` with each progress message's secrets redacted (and audited)."""

        async def passed(progress: float, total: float | None, message: str | None) -> None:
            message, found = self.redact_text(message)
            await forward(progress, total, message)  # first: it must go before the result
            if found:
                await self.record(upstream, name, PROGRESS, found, decision_id, agent)

        return passed

    async def log_message(
        self, upstream: str, agent: str, data: Any, logger: str | None
    ) -> tuple[Any, str | None]:
        """A log message's data and logger name with secrets redacted (and audited)."""
        data, found = self.redact_any(data)
        logger, named = self.redact_text(logger)
        if found or named:
            await self.record(upstream, None, LOG_MESSAGE, merge(found + named), None, agent)
        return data, logger


def redacted_body(
    upstream: str, name: str | None, where: str, found: tuple[Found, ...], decision_id: str | None
) -> dict[str, JSONValue]:
    """The ``secret_redacted`` audit record: names and forms, never a value (the shape every
    door writes, :func:`tether.core.redact.audit_body`)."""
    return audit_body(upstream, name, where, found, decision_id)
