"""A webhook that tells a chat bridge (or anything) an approval is waiting.

Posts happen on a background thread from a bounded queue, so a slow or dead receiver never delays
a decision; a full queue or a failed post is logged, never raised. The payload carries the
deterministic summary and ids, never argument values beyond what the summary shows.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import httpx

from tether.core.approval import Approval
from tether.core.scope import JSONValue
from tether.logs import get_logger

log = get_logger("tether.notify")


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        *,
        approval_page: str | None = None,
        timeout: float = 5.0,
        capacity: int = 1000,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the webhook URL must be http(s)")
        self._url = url
        self._page = approval_page
        self._timeout = timeout
        self._queue: queue.Queue[dict[str, JSONValue] | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="tether-webhook", daemon=True)
        self._thread.start()

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
        try:
            response = client.post(self._url, json=payload)
            if response.status_code >= 300:
                log.warning("webhook_rejected", status=response.status_code)
        except httpx.HTTPError as error:
            log.warning("webhook_failed", error_type=type(error).__name__)
