"""The secure port's own certificate, renewed at half life while the port keeps serving.

grpcio's dynamic server credentials ask `fetch` at every new TLS handshake; it answers None (keep
the current certificate) until half the lifetime has passed, then issues a new one from our CA and
hands it over. Connections already open keep their session; new ones get the new certificate. The
serving certificate is only ever used in a handshake, so renewing at the first handshake after half
life is renewing at half life.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable

import grpc

from xds.ca import IssuedCertificate

log = logging.getLogger("pyambient.xds")


def renewal_due(issued_at: datetime.datetime, not_after: datetime.datetime, now: datetime.datetime) -> bool:
    """Half way from issue to expiry (counted from issue: the CA backdates `not_before` for clock skew)."""
    return now >= issued_at + (not_after - issued_at) / 2


class RotatingServingCertificate:
    """The current serving certificate; `issue` makes a fresh one (new key) from the CA."""

    def __init__(
        self,
        issue: Callable[[], IssuedCertificate],
        *,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._issue = issue
        self._clock = clock
        self._lock = threading.Lock()  # grpc calls `fetch` from its own threads
        self.current = issue()
        self.issued_at = clock()
        self.renewals = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._configuration(), self.fetch)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """grpc's certificate_configuration_fetcher: a new configuration when renewed, else None."""
        with self._lock:
            if not renewal_due(self.issued_at, self.current.not_after, self._clock()):
                return None
            try:
                self.current = self._issue()
            except Exception:  # noqa: BLE001 - keep serving the old one; retried at the next handshake
                log.exception("renewing the secure port's serving certificate failed; keeping the current one")
                return None
            self.issued_at = self._clock()
            self.renewals += 1
            log.info("secure port serving certificate renewed; valid until %s", self.current.not_after.isoformat())
            return self._configuration()

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.current.key_pem, self.current.cert_pem)])
