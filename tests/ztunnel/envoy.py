"""Real Envoy as an HBONE peer: configs with the same shapes as the perf anchor (facts, not copied files).

- `hbone_client_config`: tcp_proxy with tunneling_config → one HTTP/2 CONNECT per downstream connection
  (`:authority` = target) over a pooled TLS 1.3 mTLS connection, ALPN h2, server SPIFFE SAN checked.
- `hbone_server_config`: port 15008, client cert required (SAN checked), HCM terminating CONNECT, an
  ORIGINAL_DST cluster keyed on `x-envoy-original-dst-host` set from `:authority`.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pyambient.runtime.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
ENVOY = ROOT / ".venv" / "bin" / "envoy"

_DOWNSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_TLS13 = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}


def _tls_context(cert: str, key: str, root: str, peer_san: str) -> dict[str, Any]:
    return {
        "tls_params": _TLS13,
        "alpn_protocols": ["h2"],
        "tls_certificates": [{"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}],
        "validation_context": {
            "trusted_ca": {"filename": root},
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": peer_san}}],
        },
    }


def hbone_client_config(
    *,
    admin: tuple[str, int],
    listeners: list[tuple[str, int, str]],
    peer: tuple[str, int],
    cert: str,
    key: str,
    root: str,
    peer_san: str,
) -> dict[str, Any]:
    """listeners: (ip, port, CONNECT authority) each tunnelled to `peer` (an HBONE :15008)."""
    return {
        "admin": {"address": {"socket_address": {"address": admin[0], "port_value": admin[1]}}},
        "static_resources": {
            "listeners": [
                {
                    "name": f"outbound_{port}",
                    "address": {"socket_address": {"address": ip, "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.tcp_proxy",
                                    "typed_config": {
                                        "@type": _TCP_PROXY,
                                        "stat_prefix": f"outbound_{port}",
                                        "cluster": "hbone",
                                        "tunneling_config": {"hostname": authority},
                                    },
                                }
                            ]
                        }
                    ],
                }
                for ip, port, authority in listeners
            ],
            "clusters": [
                {
                    "name": "hbone",
                    "type": "STATIC",
                    "connect_timeout": "5s",
                    "load_assignment": {
                        "cluster_name": "hbone",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": peer[0], "port_value": peer[1]}}
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                            "common_tls_context": _tls_context(cert, key, root, peer_san),
                        },
                    },
                }
            ],
        },
    }


def hbone_server_config(
    *,
    admin: tuple[str, int],
    listen: tuple[str, int],
    cert: str,
    key: str,
    root: str,
    peer_san: str,
) -> dict[str, Any]:
    return {
        "admin": {"address": {"socket_address": {"address": admin[0], "port_value": admin[1]}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "hbone_inbound",
                    "address": {"socket_address": {"address": listen[0], "port_value": listen[1]}},
                    "filter_chains": [
                        {
                            "transport_socket": {
                                "name": "envoy.transport_sockets.tls",
                                "typed_config": {
                                    "@type": _DOWNSTREAM_TLS,
                                    "require_client_certificate": True,
                                    "common_tls_context": _tls_context(cert, key, root, peer_san),
                                },
                            },
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": _HCM,
                                        "stat_prefix": "hbone_inbound",
                                        "codec_type": "HTTP2",
                                        "http2_protocol_options": {"allow_connect": True},
                                        "upgrade_configs": [{"upgrade_type": "CONNECT"}],
                                        "route_config": {
                                            "name": "hbone",
                                            "virtual_hosts": [
                                                {
                                                    "name": "any",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"connect_matcher": {}},
                                                            "route": {
                                                                "cluster": "original_dst",
                                                                "timeout": "0s",
                                                                "upgrade_configs": [
                                                                    {"upgrade_type": "CONNECT", "connect_config": {}}
                                                                ],
                                                            },
                                                            "request_headers_to_add": [
                                                                {
                                                                    "header": {
                                                                        "key": "x-envoy-original-dst-host",
                                                                        "value": "%REQ(:AUTHORITY)%",
                                                                    },
                                                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                                                }
                                                            ],
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": _ROUTER},
                                            }
                                        ],
                                    },
                                }
                            ],
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "original_dst",
                    "type": "ORIGINAL_DST",
                    "lb_policy": "CLUSTER_PROVIDED",
                    "connect_timeout": "5s",
                    "original_dst_lb_config": {"use_http_header": True},
                }
            ],
        },
    }


class EnvoyProc:
    def __init__(self, config: dict[str, Any], path: Path, admin: tuple[str, int], concurrency: int = 1) -> None:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.admin = admin
        self.log_path = path.with_suffix(".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(ENVOY), "-c", str(path), "--disable-hot-restart", "--concurrency", str(concurrency), "-l", "warning"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited {self.proc.returncode}: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.admin[0]}:{self.admin[1]}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("envoy not ready")

    def stats(self) -> str:
        with urllib.request.urlopen(f"http://{self.admin[0]}:{self.admin[1]}/stats", timeout=5) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
