"""An HTTP client that signs in to the approval page as a browser does (``tether demo``, tests).

The page's session cookie is ``__Host-`` and so ``Secure``. Browsers send ``Secure`` cookies to
http://127.0.0.1 and http://localhost (loopback is a secure context); Python's cookie jar sends
them over https only. :func:`browser_client` does what a browser does, and nothing more: a
``Secure`` cookie that a loopback host set over http goes back to that host (cookies are
host-only), and no other. The CSRF token is read from the page's hidden form field, as a browser
submits it.
"""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_CSRF_FIELD: Final = re.compile(r'<input type="hidden" name="csrf" value="([A-Za-z0-9_-]+)">')


def browser_client(base_url: str, **options: Any) -> httpx.Client:
    """An ``httpx.Client`` on ``base_url`` keeping cookies as a browser would."""
    client = httpx.Client(base_url=base_url, **options)

    def loopback_is_secure(response: httpx.Response) -> None:
        url = response.request.url
        if url.scheme != "http" or url.host not in LOOPBACK:
            return
        # The jar would never send these over http; a browser does, to loopback only.
        for cookie in client.cookies.jar:
            if cookie.secure and cookie.domain in LOOPBACK:
                cookie.secure = False

    client.event_hooks = {"request": [], "response": [loopback_is_secure]}
    return client


def page_csrf(page: str) -> str:
    """The anti-forgery token of a page's forms."""
    found = _CSRF_FIELD.search(page)
    if found is None:
        raise ValueError("the page has no anti-forgery field")
    return found.group(1)
