"""A webhook that tells a chat bridge (or anything) an approval is waiting, signed as Standard
Webhooks specifies (standardwebhooks.com, v1 symmetric signatures).

Posts happen on a background thread from a bounded queue, so a slow or dead receiver never delays
a decision; a full queue or a failed post is logged, never raised. The payload carries the
deterministic summary and ids, never argument values beyond what the summary shows.

Every post carries ``webhook-id`` (one per event, the same on a resend: receivers deduplicate on
it), ``webhook-timestamp`` (integer seconds since the epoch, when it was sent) and
``webhook-signature``: ``v1,`` then the base64 HMAC-SHA256 of ``id.timestamp.body`` under the
shared secret. The secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes, the form
the spec gives; the receiver verifies with it (any Standard Webhooks library does) and refuses
timestamps too far from its own clock, which stops replays.
"""

from __future__ import annotations

import base64
import binascii
import json
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook

from tether.core.approval import Approval
from tether.core.errors import ConfigurationError
from tether.core.scope import JSONValue
from tether.logs import get_logger

log = get_logger("tether.notify")

SECRET_PREFIX: Final = "whsec_"
#: The spec: a secret SHOULD be between 24 bytes (192 bits) and 64 bytes (512 bits).
MIN_SECRET_BYTES: Final = 24
MAX_SECRET_BYTES: Final = 64
_GENERATE = 'generate one with: echo "whsec_$(openssl rand -base64 32)"'


def webhook_secret(value: str) -> bytes:
    """The key of a ``whsec_…`` secret; ``ConfigurationError`` (never repeating it) otherwise."""
    text = value.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ConfigurationError(f"the webhook secret must start with {SECRET_PREFIX}; {_GENERATE}")
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            f"the webhook secret is not {SECRET_PREFIX} followed by base64; {_GENERATE}"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigurationError(
            f"the webhook secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes; "
            f"{_GENERATE}"
        )
    return key


def _system_now() -> datetime:
    return datetime.now(UTC)


def signed_headers(
    signer: Webhook, message_id: str, sent_at: datetime, body: bytes
) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` sent at ``sent_at`` as message ``message_id``."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signer.sign(message_id, sent_at, body),
    }


class WebhookNotifier:
    """Posts signed ``approval_pending`` events; ``now`` stamps each post when it is sent."""

    def __init__(
        self,
        url: str,
        *,
        secret: str,
        approval_page: str | None = None,
        timeout: float = 5.0,
        capacity: int = 1000,
        now: Callable[[], datetime] = _system_now,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the webhook URL must be http(s)")
        # Only the signer keeps the key: nothing here can print it.
        self._signer = Webhook(webhook_secret(secret))
        self._now = now
        self._url = url
        self._page = approval_page
        self._timeout = timeout
        self._queue: queue.Queue[dict[str, JSONValue] | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="tether-webhook", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        # Not the URL: a chat bridge's webhook URL often carries its own token.
        return f"WebhookNotifier(host={urlsplit(self._url).hostname!r})"

    def approval_pending(self, approval: Approval) -> None:
        payload: dict[str, JSONValue] = {
            "event": "approval_pending",
            "approval_id": approval.approval_id,
            "agent": approval.agent,
            "task_id": approval.task_id,
            "tool": approval.tool,
            "action": approval.action.value,
            "required": approval.required,
            "expires_at": approval.expires_at.isoformat(),
            "summary": list(approval.summary),
            "text": "\n".join(approval.summary),
        }
        if self._page:
            payload["url"] = f"{self._page.rstrip('/')}/{approval.approval_id}"
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.warning("webhook_queue_full", approval_id=approval.approval_id)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was attempted (tests, shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self._timeout + 1)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout) as client:
            while True:
                item = self._queue.get()
                try:
                    if item is None:
                        return
                    self._post(client, item)
                finally:
                    self._queue.task_done()

    def _post(self, client: httpx.Client, payload: dict[str, Any]) -> None:
        # One event per approval, so the pair names the message; a resend would reuse it.
        message_id = f"{payload['event']}_{payload['approval_id']}"
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = signed_headers(self._signer, message_id, self._now(), body)
        try:
            response = client.post(self._url, content=body, headers=headers)
            if response.status_code >= 300:
                log.warning("webhook_rejected", status=response.status_code)
        except httpx.HTTPError as error:
            log.warning("webhook_failed", error_type=type(error).__name__)
