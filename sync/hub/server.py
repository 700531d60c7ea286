"""Running the central service with uvicorn: plain HTTP on loopback only, TLS 1.2+ everywhere else."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from pathlib import Path

import uvicorn

from app.errors import KnownError
from sync.hub.api import create_app
from sync.hub.db import normalize_url

logger = logging.getLogger(__name__)


class ServeError(KnownError):
    remedy = (
        "Serve on 127.0.0.1 for this machine only, or pass --tls-cert and --tls-key (PEM files) "
        "to serve other machines over TLS."
    )


def is_loopback(host: str) -> bool:
    """Only addresses that cannot leave this machine. Names other than localhost are not trusted."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(host: str, tls_cert: str | None, tls_key: str | None) -> bool:
    """Whether TLS is on; refuses plain HTTP beyond loopback and half or missing TLS settings."""
    if bool(tls_cert) != bool(tls_key):
        raise ServeError("TLS needs both a certificate (--tls-cert) and its private key (--tls-key).")
    if not tls_cert:
        if not is_loopback(host):
            raise ServeError(
                f"Refusing to serve on {host} without TLS: plain HTTP is allowed only on loopback "
                "(127.0.0.1, ::1, localhost), because tokens and patient data would cross the network unencrypted."
            )
        return False
    for label, path in (("certificate", tls_cert), ("private key", tls_key)):
        if not Path(path).is_file():
            raise ServeError(f"The TLS {label} file {path} does not exist.")
    return True


class _Config(uvicorn.Config):
    """uvicorn's config with TLS 1.2 as the floor (uvicorn itself does not set one)."""

    def load(self) -> None:
        try:
            super().load()
        except (ssl.SSLError, OSError) as exc:
            raise ServeError(f"The TLS certificate or key cannot be used ({type(exc).__name__}).") from None
        if self.ssl is not None:
            self.ssl.minimum_version = ssl.TLSVersion.TLSv1_2


def build_config(
    db_url: str, host: str = "127.0.0.1", port: int = 8765, tls_cert: str | None = None, tls_key: str | None = None
) -> uvicorn.Config:
    """A checked, loaded uvicorn config serving ``create_app(db_url)``."""
    tls = check_transport(host, tls_cert, tls_key)
    app = create_app(db_url)
    config = _Config(
        app, host=host, port=port, ssl_certfile=tls_cert if tls else None, ssl_keyfile=tls_key if tls else None,
        log_config=None,  # uvicorn's records go through the application's handlers and PHI filter
        proxy_headers=False, server_header=False, timeout_keep_alive=35,  # longer than a long poll
    )  # fmt: skip
    config.load()
    return config


def serve(
    db_url: str, host: str = "127.0.0.1", port: int = 8765, tls_cert: str | None = None, tls_key: str | None = None
) -> None:
    """Serve until interrupted. Raises ServeError (a KnownError) for settings that are not safe."""
    check_transport(host, tls_cert, tls_key)
    config = build_config(db_url, host, port, tls_cert, tls_key)
    scheme = "https" if config.ssl is not None else "http"
    shown_host = f"[{host}]" if ":" in host else host
    backend = normalize_url(db_url).get_backend_name()
    print(f"CareOps central service on {scheme}://{shown_host}:{port} (database: {backend}); Ctrl+C stops it", flush=True)
    logger.info("hub serving on port %d over %s with %s", port, scheme, backend)
    uvicorn.Server(config).run()
