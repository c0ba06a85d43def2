"""`proxy-config all` (`PrintFullSummary`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyambient.proxyconfig import bootstrap, cluster, eds, listener, route, secret
from pyambient.proxyconfig.dump import ConfigDump


def summary(
    dump: ConfigDump,
    cflt: cluster.ClusterFilter,
    lflt: listener.ListenerFilter,
    rflt: route.RouteFilter,
    eflt: eds.EndpointFilter,
    with_headers: bool = False,
    write: Callable[[str], None] | None = None,
    now: dt.datetime | None = None,
) -> str:
    """The whole summary; each section is also passed to `write` as soon as it is rendered."""
    out: list[str] = []

    def emit(text: str) -> None:
        out.append(text)
        if write is not None:
            write(text)

    sections: list[tuple[str, Callable[[], str]]] = [
        ("BOOTSTRAP", lambda: bootstrap.summary(dump)),
        ("CLUSTER", lambda: cluster.summary(dump, cflt, include_type=True)),
        ("LISTENER", lambda: listener.summary(dump, lflt, include_type=True)),
        ("ROUTE", lambda: route.summary(dump, rflt, include_type=True)),
        ("SECRET", lambda: secret.summary(dump, include_type=True, now=now)),
        ("ENDPOINTS", lambda: eds.summary(dump, eflt, include_type=True)),
    ]
    for i, (title, render) in enumerate(sections):
        if i:
            emit("\n")
        if with_headers:
            emit(f"------ {title} INFO ------\n\n")
        emit(render())
    return "".join(out)
