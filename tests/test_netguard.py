"""check_url() / blocked_reason(): private, loopback and other non-public addresses are refused.

Every test uses a fake resolver: no DNS lookup, no socket, no connection.
"""

from __future__ import annotations

import socket

import pytest

from document_it.netguard import blocked_reason, check_url


def fake_resolver(table: dict[str, list[str]]):
    """A getaddrinfo stand-in answering from `table` and recording each call."""
    calls: list[tuple[str, int, int]] = []

    def resolve(host: str, port: int, type: int = 0):
        calls.append((host, port, type))
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in table[host]]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def no_dns(*args, **kwargs):
    raise AssertionError("an IP literal must be checked without resolving it")


REFUSED = [
    ("169.254.169.254", "link-local"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("0.0.0.0", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "private"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::127.0.0.1", "loopback"),          # IPv4-compatible form
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("2002:7f00:1::", "loopback"),         # 6to4 wrapping 127.0.0.1
    ("64:ff9b::a00:1", "private"),         # NAT64 wrapping 10.0.0.1
]
PUBLIC = ["93.184.216.34", "2606:4700::1", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("ip, kind", REFUSED)
def test_non_public_addresses_are_named_by_kind(ip, kind):
    assert blocked_reason(ip) == kind


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip):
    assert blocked_reason(ip) is None


@pytest.mark.parametrize("ip, kind", REFUSED)
def test_url_with_non_public_literal_is_refused_without_dns(ip, kind):
    host = f"[{ip}]" if ":" in ip else ip
    url = f"http://{host}/x"
    reason = check_url(url, allow_private=False, resolve=no_dns)
    assert reason is not None
    assert reason.startswith(f"refused http://{host}/x: ")
    assert f" {kind} address" in reason
    assert "--allow-private" in reason


def test_reason_reads_as_one_sentence():
    reason = check_url("http://10.0.0.5/x", allow_private=False, resolve=no_dns)
    assert reason == ("refused http://10.0.0.5/x: 10.0.0.5 is a private address "
                      "(pass --allow-private to fetch from private networks)")
    assert "\n" not in reason


@pytest.mark.parametrize("ip", PUBLIC)
def test_url_with_public_literal_passes(ip):
    host = f"[{ip}]" if ":" in ip else ip
    assert check_url(f"https://{host}:8443/docs/", allow_private=False, resolve=no_dns) is None


def test_zone_written_the_rfc_6874_way_is_still_link_local():
    reason = check_url("http://[fe80::1%25eth0]/", allow_private=False, resolve=no_dns)
    assert reason is not None and "link-local" in reason


def test_name_resolving_to_public_addresses_passes():
    resolve = fake_resolver({"docs.example.org": ["93.184.216.34", "2606:4700::1"]})
    assert check_url("https://docs.example.org/guide", allow_private=False, resolve=resolve) is None
    assert resolve.calls == [("docs.example.org", 443, socket.SOCK_STREAM)]


def test_name_resolving_to_public_and_private_is_refused():
    resolve = fake_resolver({"mixed.example.org": ["93.184.216.34", "10.1.2.3"]})
    reason = check_url("http://mixed.example.org:8080/a", allow_private=False, resolve=resolve)
    assert reason is not None
    assert "mixed.example.org resolves to 10.1.2.3, a private address" in reason
    assert "--allow-private" in reason
    assert resolve.calls == [("mixed.example.org", 8080, socket.SOCK_STREAM)]


def test_name_resolving_to_metadata_address_is_refused():
    resolve = fake_resolver({"metadata.internal": ["169.254.169.254"]})
    reason = check_url("http://metadata.internal/latest/", allow_private=False, resolve=resolve)
    assert reason is not None and "link-local" in reason


def test_numeric_shorthand_host_goes_through_the_resolver():
    # "127.1" is not an IP literal for ipaddress, but the system resolver reads it as 127.0.0.1
    resolve = fake_resolver({"127.1": ["127.0.0.1"]})
    reason = check_url("http://127.1/", allow_private=False, resolve=resolve)
    assert reason is not None and "loopback" in reason


def test_allow_private_lets_loopback_through_without_resolving():
    assert check_url("http://127.0.0.1:8123/docs/", allow_private=True, resolve=no_dns) is None
    assert check_url("http://intranet.local/", allow_private=True, resolve=no_dns) is None


@pytest.mark.parametrize("url", ["ftp://example.org/file.txt", "file:///etc/passwd", "gopher://127.0.0.1/"])
@pytest.mark.parametrize("allow_private", [False, True])
def test_other_schemes_are_refused(url, allow_private):
    reason = check_url(url, allow_private=allow_private, resolve=no_dns)
    assert reason is not None and "only http and https URLs are followed" in reason


@pytest.mark.parametrize("error", [socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                                   OSError("network is unreachable")])
def test_resolution_failure_is_left_to_the_download(error):
    def failing(*args, **kwargs):
        raise error

    assert check_url("https://no-such-host.example/", allow_private=False, resolve=failing) is None


def test_credentials_are_not_repeated_in_the_reason():
    reason = check_url("http://user:s3cret@10.0.0.5/", allow_private=False, resolve=no_dns)
    assert reason is not None and "s3cret" not in reason and "10.0.0.5" in reason


@pytest.mark.parametrize("url", ["http://[::1", "http:///x", "http://", "https://:443/", "http://a:99999/",
                                 "http://a:port/", "", "not a url", "http://[not-an-ip]/"])
def test_malformed_urls_give_a_reason_not_an_exception(url):
    reason = check_url(url, allow_private=False, resolve=fake_resolver({}))
    assert isinstance(reason, str) and reason.startswith("refused ")


def test_non_ip_text_is_not_a_public_address():
    assert blocked_reason("example.org") == "not an IP address"
