"""Where a download may go: http(s) only, no credentials in URLs, private and metadata addresses refused
unless --allow-private (checked after DNS and on every redirect), loops and long chains stopped.
The addresses outside 127.0.0.0/8 are only ever given to the address check, never connected to."""

from __future__ import annotations

import pytest

from document_it.fetch import FetchLimits, fetch
from document_it.models import DocRef
from document_it.netguard import check_url

ALLOW = FetchLimits(connect_timeout=2, read_timeout=2, max_redirects=3, allow_private=True)
STRICT = FetchLimits(connect_timeout=2, read_timeout=2, max_redirects=3, allow_private=False)


def _resolve_to(address):
    return lambda host, port, **kw: [(2, 1, 6, "", (address, port))]


@pytest.mark.parametrize("url, fragment", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://127.0.0.1/x", "only http and https"),
    ("data:text/html,<script>alert(1)</script>", "only http and https"),
    ("gopher://127.0.0.1/x", "only http and https"),
    ("http://user:hunter2@127.0.0.1/x", "carries credentials"),
    ("http://:hunter2@127.0.0.1/x", "carries credentials"),
])
def test_schemes_and_credentials_are_refused_even_with_allow_private(url, fragment):
    reason = check_url(url, allow_private=True)
    assert reason is not None and fragment in reason and "hunter2" not in reason


@pytest.mark.parametrize("address, kind", [("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
                                           ("127.0.0.1", "loopback"), ("::1", "loopback"),
                                           ("fd00::1", "private"), ("100.64.0.1", "carrier-grade NAT")])
def test_private_and_metadata_addresses_are_refused_after_dns(address, kind):
    reason = check_url("http://docs.example.test/page", allow_private=False, resolve=_resolve_to(address))
    assert reason is not None and kind in reason and "--allow-private" in reason


def test_credentials_never_reach_the_server(site):
    got = fetch(DocRef(site.url("page.html").replace("://", "://reader:hunter2@")), ALLOW)
    assert not got.ok and "carries credentials" in got.error and "hunter2" not in got.error
    assert site.hits == 0


def test_loopback_is_refused_without_allow_private_and_redirects_are_checked(site, tmp_path):
    (tmp_path / "page.html").write_text("<html><body><p>hi</p></body></html>")
    got = fetch(DocRef(site.url("page.html")), STRICT)
    assert not got.ok and "loopback" in got.error and site.hits == 0
    hop = fetch(DocRef(site.url("_redirect-to?url=file:///etc/passwd")), ALLOW)
    assert not hop.ok and "non-http" in hop.error


def test_redirect_loops_and_long_chains_stop_with_a_reason(site):
    loop = fetch(DocRef(site.url("_redirect-loop")), ALLOW)
    assert not loop.ok and loop.error.startswith("redirect loop")
    chain = fetch(DocRef(site.url("_redirect-chain?n=10")), ALLOW)
    assert not chain.ok and "too many redirects" in chain.error
    assert site.hits <= 1 + 4  # the loop's first hop and its repeat, then at most max_redirects + 1 hops


def test_the_size_cap_counts_decoded_bytes_so_a_gzip_bomb_is_stopped(site):
    limits = FetchLimits(connect_timeout=5, read_timeout=5, max_bytes=1024 * 1024, allow_private=True)
    got = fetch(DocRef(site.url("_gzip-bomb?mb=200")), limits)  # about 200 KB on the wire, 200 MB inflated
    assert not got.ok and "too large" in got.error and got.content == b""

