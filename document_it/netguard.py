"""Refuse URLs that lead to loopback, private or otherwise non-public addresses (SSRF guard)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

__all__ = ["blocked_reason", "check_url", "refusal"]

Resolver = Callable[..., Iterable[tuple[Any, ...]]]
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HINT = "pass --allow-private to fetch from private networks"


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, 6to4, NAT64), if any."""
    if addr.ipv4_mapped or addr.sixtofour:
        return addr.ipv4_mapped or addr.sixtofour
    value = int(addr)
    if (value >> 32 == 0 and value > 1) or addr in _NAT64:  # ::a.b.c.d, but not :: or ::1
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def blocked_reason(ip: str) -> str | None:
    """Why `ip` is not a public internet address ("loopback", "private", ...), or None when it is."""
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return "not an IP address"
    if isinstance(addr, ipaddress.IPv6Address):
        addr = _embedded_v4(addr) or addr
    kinds = (
        ("unspecified", addr.is_unspecified), ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local), ("multicast", addr.is_multicast),
        ("shared (carrier-grade NAT)", addr.version == 4 and addr in _SHARED),
        ("reserved", addr.is_reserved), ("private", addr.is_private),
        ("site-local", getattr(addr, "is_site_local", False)),
    )
    for kind, hit in kinds:
        if hit:
            return kind
    return None if addr.is_global else "non-public"


def _is_ip_literal(host: str) -> bool:
    """True when `host` is written as an IP address rather than a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str, allow_private: bool, resolve: Resolver = socket.getaddrinfo) -> str | None:
    """None when `url` may be fetched, else a one-line reason written for the user."""
    try:
        parts = urlsplit(url)
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no credentials
        if parts.scheme not in ("http", "https"):
            return f"refused {shown}: only http and https URLs are followed"
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        return f"refused {url[:200]!r}: not a valid URL ({exc})"
    if not host:
        return f"refused {shown}: the URL names no host"
    if parts.username is not None or parts.password is not None:  # never sent, never written anywhere
        return f"refused {shown}: the URL carries credentials (user:password@), which document-it does not send"
    if allow_private:
        return None
    if _is_ip_literal(host):
        addresses = [host]
    else:
        try:
            infos = resolve(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
            addresses = [str(info[4][0]) for info in infos]
        except (OSError, UnicodeError, ValueError):  # unresolvable: the download reports it
            return None
    for address in addresses:
        kind = blocked_reason(address)
        if kind:
            return f"refused {shown}: {refusal(host, address, kind)}"
    return None


def refusal(host: str, address: str, kind: str) -> str:
    """'10.0.0.5 is a private address (pass --allow-private …)', or '<host> resolves to <address>, a …'."""
    article = "an" if kind[0] in "aeiou" else "a"
    what = f"{host} is" if address == host else f"{host} resolves to {address},"
    return f"{what} {article} {kind} address ({_HINT})"
