"""Demo mode's central service: the real hub on loopback, over SQLite in the data folder.

Everything that syncs in demo mode goes through the same HTTP protocol, engine and service as a
deployment; only the address is local.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import uvicorn

from app.security.users import DEMO_PASSWORD, DEMO_USERS
from sync.hub.api import create_app
from sync.hub.auth import PasswordAuthenticator, add_user
from sync.hub.db import open_database

logger = logging.getLogger(__name__)


class EmbeddedHub:
    """The hub on a free loopback port; its SQLite file is SQLCipher-encrypted with ``key``."""

    def __init__(self, db_path: Path, key: bytes) -> None:
        self.db_url = f"sqlite:///{db_path}"
        self._key = key
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        engine = open_database(self.db_url, self._key)
        try:
            known = PasswordAuthenticator(engine)
            for role, (username, name) in DEMO_USERS.items():
                if known.lookup(username) is None:  # scrypt per user: only the first time
                    add_user(engine, username, name, role, DEMO_PASSWORD)
        finally:
            engine.dispose()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.db_url, db_key=self._key), host="127.0.0.1", port=self.port, log_config=None, timeout_keep_alive=35
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="embedded-hub", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the embedded central service did not start")
            time.sleep(0.02)
        logger.info("embedded central service on port %d", self.port)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
