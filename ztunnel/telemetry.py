"""Istio-style logs and metrics.

Logs: `<RFC3339 µs Z>\t<level>\t<target>\t<message>` (ztunnel `src/telemetry.rs`), e.g.
`2026-11-22T23:00:00.000000Z\tinfo\tproxy::outbound\tproxying to 127.0.0.3:8080 using HBONE via
127.0.0.3:15008 type Direct`.

Metrics: `istio_tcp_connections_opened_total`, `_closed_total`, `istio_tcp_received_bytes_total` (client →
server), `istio_tcp_sent_bytes_total` (server → client), `istio_tcp_connections_failed_total`, with Istio's
label set (ztunnel `CommonTrafficLabels`, in order); missing values are "unknown".
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from ztunnel.identity import Identity
from ztunnel.state import Service, Workload

LABELS = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_service",
    "destination_service_namespace",
    "destination_service_name",
    "destination_workload",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
)


class IstioFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        level = {"WARNING": "warn"}.get(record.levelname, record.levelname.lower())
        msg = record.getMessage()
        if record.exc_info:
            msg += " " + self.formatException(record.exc_info).replace("\n", " | ")
        return f"{ts}\t{level}\t{record.name}\t{msg}"


def setup_logging(level: str = "info") -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(IstioFormatter())
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(level.upper())


def _u(v: str | None) -> str:
    return v if v else "unknown"


_LABEL_CACHE: dict[tuple[Any, ...], tuple[Any, Any, Any, dict[str, str]]] = {}


def traffic_labels(
    *,
    reporter: str,
    src: Workload | None,
    src_identity: Identity | None,
    dst: Workload | None,
    dst_identity: Identity | None,
    service: Service | None,
    flags: str = "-",
    mtls: bool = True,
) -> dict[str, str]:
    """The 23 labels, built once per (reporter, workloads, identities, service, flags, mtls) and shared:
    workloads and services are immutable snapshots, keyed by identity and kept alive by the cache entry so
    an id is never reused while cached. Callers must not mutate the returned dict."""
    key = (reporter, id(src), src_identity, id(dst), dst_identity, id(service), flags, mtls)
    hit = _LABEL_CACHE.get(key)
    if hit is not None:
        return hit[3]
    labels = _build_labels(
        reporter=reporter,
        src=src,
        src_identity=src_identity,
        dst=dst,
        dst_identity=dst_identity,
        service=service,
        flags=flags,
        mtls=mtls,
    )
    if len(_LABEL_CACHE) >= 4096:
        _LABEL_CACHE.clear()
    _LABEL_CACHE[key] = (src, dst, service, labels)
    return labels


def _build_labels(
    *,
    reporter: str,
    src: Workload | None,
    src_identity: Identity | None,
    dst: Workload | None,
    dst_identity: Identity | None,
    service: Service | None,
    flags: str = "-",
    mtls: bool = True,
) -> dict[str, str]:
    def w(x: Workload | None, attr: str) -> str:
        return _u(getattr(x, attr) if x is not None else None)

    def s(attr: str) -> str:
        return _u(getattr(service, attr) if service is not None else None)

    src_ns = src.namespace if src else (src_identity.namespace if src_identity else None)
    return {
        "reporter": reporter,
        "source_workload": _u((src.workload_name or src.name) if src else None),
        "source_canonical_service": w(src, "canonical_name"),
        "source_canonical_revision": w(src, "canonical_revision"),
        "source_workload_namespace": _u(src_ns),
        "source_principal": _u(str(src_identity) if src_identity else None),
        "source_app": w(src, "canonical_name"),
        "source_version": w(src, "canonical_revision"),
        "source_cluster": w(src, "cluster_id"),
        "destination_service": s("hostname"),
        "destination_service_namespace": s("namespace"),
        "destination_service_name": s("name"),
        "destination_workload": _u((dst.workload_name or dst.name) if dst else None),
        "destination_canonical_service": w(dst, "canonical_name"),
        "destination_canonical_revision": w(dst, "canonical_revision"),
        "destination_workload_namespace": w(dst, "namespace"),
        "destination_principal": _u(str(dst_identity) if dst_identity else None),
        "destination_app": w(dst, "canonical_name"),
        "destination_version": w(dst, "canonical_revision"),
        "destination_cluster": w(dst, "cluster_id"),
        "request_protocol": "tcp",
        "response_flags": flags,
        "connection_security_policy": "mutual_tls" if mtls else "unknown",
    }


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # ztunnel exports no `*_created` series
        self.registry = CollectorRegistry()
        r = self.registry
        self.opened = Counter("istio_tcp_connections_opened", "Opened TCP connections", LABELS, registry=r)
        self.closed = Counter("istio_tcp_connections_closed", "Closed TCP connections", LABELS, registry=r)
        self.failed = Counter("istio_tcp_connections_failed", "Failed TCP connections", LABELS, registry=r)
        self.received = Counter("istio_tcp_received_bytes", "Bytes client to server", LABELS, registry=r)
        self.sent = Counter("istio_tcp_sent_bytes", "Bytes server to client", LABELS, registry=r)
        self.sockets = Gauge("istio_tcp_sockets_open", "Open proxied sockets", ["reporter"], registry=r)
        self.build = Gauge("istio_build", "Build info", ["component", "tag"], registry=r)
        # connections closed for a protocol error, an abuse limit or a handshake deadline, by reason
        # (docs/ztunnel.md "Limits"); one count per connection, whatever the number of frames it sent
        self.closed_for = Counter(
            "ztunnel_hbone_connections_closed", "Connections closed for an error or abuse", ["reason"], registry=r
        )
        self.build.labels("ztunnel", "pyambient-0.1.0").set(1)
        self._cache: dict[tuple[str, ...], tuple[Any, Any, Any, Any, Any]] = {}

    def _children(self, labels: dict[str, str]) -> tuple[Any, Any, Any, Any, Any]:
        """The counters' label children, resolved once per label set (as ztunnel pre-resolves its counters).
        Held as the children's value `inc` methods: a labelled child is always observable and our amounts are
        never negative, so `Counter.inc`'s per-call checks are skipped (prometheus-client is pinned)."""
        key = tuple(labels.values())
        ch = self._cache.get(key)
        if ch is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            ch = self._cache[key] = (
                self.opened.labels(**labels)._value.inc,
                self.closed.labels(**labels)._value.inc,
                self.received.labels(**labels)._value.inc,
                self.sent.labels(**labels)._value.inc,
                self.sockets.labels(labels["reporter"])._value.inc,
            )
        return ch

    def conn_opened(self, labels: dict[str, str]) -> None:
        ch = self._children(labels)
        ch[0](1)
        ch[4](1)

    def conn_closed(self, labels: dict[str, str], received: int, sent: int) -> None:
        ch = self._children(labels)
        ch[1](1)
        ch[4](-1)
        if received:
            ch[2](received)
        if sent:
            ch[3](sent)

    def connection_closed_for(self, reason: str) -> None:
        self.closed_for.labels(reason).inc()

    def conn_failed(self, labels: dict[str, str]) -> None:
        self.failed.labels(**labels).inc()
