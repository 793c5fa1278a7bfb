"""The fast paths of argument provenance find and fingerprint exactly what the reference
paths do: a URL's normal form taken apart by hand against ``urllib.parse.urlsplit``."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tether.core import provenance_extract as pe

_SCHEMES = st.sampled_from(["http", "https", "ftp", "HTTP", "Https", "fTp", "é", "h1", ""])
_NETLOC = st.text(alphabet="aZ09.-_@:[]%é\t", max_size=12)
_TAIL = st.text(alphabet="/?#a.%:@é\t\n", max_size=12)


@settings(max_examples=2000, deadline=None)
@given(_SCHEMES, st.sampled_from(["://", ":/", ":"]), _NETLOC, _TAIL)
@example("https", "://", "Example.COM.", "")
@example("https", "://", ".", "/x")
@example("http", "://", "a.com", "?")
@example("http", "://", "a.com", "?q#f?g")
@example("http", "://", "a.com", "#f?g")
@example("http", "://", "a.b", "/p\tq")
def test_a_urls_normal_form_is_the_one_urlsplit_gives(
    scheme: str, sep: str, netloc: str, tail: str
) -> None:
    raw = f"{scheme}{sep}{netloc}{tail}"
    assert pe._url(raw) == pe._url_parsed(raw)
