"""Errors of the proxy. Each carries the HTTP status a CONNECT gets for it and ztunnel's response flag."""

from __future__ import annotations


class ProxyError(Exception):
    status: int = 503
    flag: str = "CONNECT"


class BadRequest(ProxyError):
    """Non-CONNECT method, unparsable authority, authority IP not the local socket IP."""

    status = 400
    flag = "CONNECT"


class Denied(ProxyError):
    """RBAC denied (L4 AuthorizationPolicy or STRICT PeerAuthentication)."""

    status = 401
    flag = "DENY"


class Unavailable(ProxyError):
    """Unknown local workload, no healthy upstream, illegal port, upstream connect failed."""

    status = 503
    flag = "CONNECT"


class SelfCall(Unavailable):
    pass


class NoHealthyUpstream(Unavailable):
    pass


class ConfigError(ValueError):
    """A config file or xDS resource is invalid; the message names the file/resource and the field."""

    def __init__(self, where: str, field: str, problem: str) -> None:
        super().__init__(f"{where}: {field}: {problem}")
        self.where = where
        self.field = field
        self.problem = problem


class UnknownSource(ProxyError):
    """A captured connection from an address that is not a workload of this node (and no default is set)."""


class MissingCertificate(ConnectionError):
    """No certificate of this workload's own identity (yet): nothing is proxied under another identity."""
