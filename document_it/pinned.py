"""HTTP connections that connect only to the address they checked, so a host name cannot resolve to a
public address for the check and to a private one for the connection (DNS rebinding)."""

from __future__ import annotations

import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError, NewConnectionError

from .netguard import blocked_reason, refusal

__all__ = ["PinnedAdapter", "BlockedAddress", "guarded_session", "blocked_by"]


class BlockedAddress(NewConnectionError):
    """The host resolved to an address document-it does not fetch from without --allow-private."""


class _Pinned:
    """Resolve once, refuse if any address is not public, connect to the address that was checked."""

    host: str
    port: int
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        for info in infos:
            kind = blocked_reason(str(info[4][0]))
            if kind:
                raise BlockedAddress(self, refusal(self.host, str(info[4][0]), kind))  # type: ignore[arg-type]
        name = self._dns_host
        self._dns_host = str(infos[0][4][0])  # TLS still checks the certificate against self.host
        try:
            return super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = name


class _PinnedHTTP(_Pinned, HTTPConnection):
    pass


class _PinnedHTTPS(_Pinned, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPS


class PinnedAdapter(HTTPAdapter):
    """A requests adapter whose direct connections go only to public addresses (proxies are the user's)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def guarded_session(allow_private: bool) -> requests.Session:
    """A session that refuses private addresses at connect time, unless they are allowed."""
    session = requests.Session()
    if not allow_private:
        session.mount("http://", PinnedAdapter())
        session.mount("https://", PinnedAdapter())
    return session


def blocked_by(exc: BaseException) -> str | None:
    """The refusal inside a requests ConnectionError, if that is what it was."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, BlockedAddress):
            return str(item).split(": ", 1)[-1]
        todo += [getattr(item, "reason", None), item.__cause__, item.__context__,
                 *(arg for arg in getattr(item, "args", ()) if isinstance(arg, BaseException))]
    return None
