"""Composition root: unlock the cache and build the objects every part of the app shares.

Nothing here is global: ``open_workstation`` returns a ``Workstation`` that the entry points pass
down. The CLI, the GUI and the tests all build it the same way.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from app.cache.engine import rekey_pragma
from app.cache.store import Cache, check_writable, key_check_value
from app.config import Paths, Settings, load_settings, workstation_id
from app.errors import CacheDamaged, WrongKey
from app.security.audit import AuditLog
from app.security.keys import KeyStore, choose_store, new_key
from app.security.users import UserDirectory

logger = logging.getLogger(__name__)


@dataclass
class Workstation:
    paths: Paths
    settings: Settings
    workstation_id: str
    cache: Cache
    audit: AuditLog
    users: UserDirectory
    keys: KeyStore

    def embedded_hub_key(self) -> bytes:
        """The key of demo mode's embedded service database, kept beside the cache key."""
        key = self.keys.load("hub")
        if key is None:
            key = new_key()
            self.keys.save(key, "hub")
        return key

    def close(self) -> None:
        self.cache.close()


def _read_key_check(paths: Paths) -> str | None:
    try:
        return paths.key_check.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _write_key_check(paths: Paths, key: bytes) -> None:
    tmp = paths.key_check.with_suffix(".tmp")
    tmp.write_text(key_check_value(key) + "\n", encoding="ascii")
    os.replace(tmp, paths.key_check)


def key_store(paths: Paths, settings: Settings, passphrase: str | None = None) -> KeyStore:
    passphrase = passphrase if passphrase is not None else os.environ.get("CAREOPS_PASSPHRASE")
    return choose_store(paths.home, paths.key_file, settings.key_backend, passphrase)


def unlock_cache(paths: Paths, store: KeyStore) -> Cache:
    """Open the cache with the stored key, creating both on first use.

    A rotation interrupted after the rekey is finished here: the pending key opens the cache and is
    promoted.
    """
    key = store.load("current")
    if key is None:
        if paths.cache.exists():
            raise WrongKey("The cache exists but this workstation has no key for it.")
        key = new_key()
        store.save(key)
        _write_key_check(paths, key)
    try:
        key_check = _read_key_check(paths)
        cache = Cache.open(paths.cache, key, key_check=key_check)
        if key_check is None:  # e.g. after `careops cache reset`
            _write_key_check(paths, key)
        return cache
    except (WrongKey, CacheDamaged):
        # After an interrupted rotation the key check still names the old key, so the file
        # looks damaged under it: the pending key decides.
        pending = store.load("pending")
        if pending is None:
            raise
        cache = Cache.open(paths.cache, pending, key_check=key_check_value(pending))
        _promote(paths, store, pending)
        logger.info("finished an interrupted key rotation")
        return cache


def _promote(paths: Paths, store: KeyStore, key: bytes) -> None:
    _write_key_check(paths, key)
    store.save(key, "current")
    store.delete("pending")


def rotate_key(paths: Paths, store: KeyStore, cache: Cache, new_store: KeyStore | None = None) -> None:
    """Re-encrypt the cache under a fresh key (``careops rekey``), crash-safe at every step.

    ``new_store`` wraps the new key differently (a new passphrase); defaults to ``store``. The
    ``cache`` object is closed afterwards (its connections carry the old key): reopen it.
    """
    target = new_store or store
    key = new_key()
    target.save(key, "pending")
    cache.engine.dispose()  # rekey needs the only connection
    raw = cache.engine.raw_connection()
    try:
        raw.driver_connection.execute(rekey_pragma(key))
    finally:
        raw.close()
    cache.engine.dispose()
    _promote(paths, target, key)


def open_workstation(home: Path, *, passphrase: str | None = None, store: KeyStore | None = None) -> Workstation:
    paths = Paths(home)
    check_writable(paths.home)
    settings = load_settings(paths)
    store = store or key_store(paths, settings, passphrase)
    cache = unlock_cache(paths, store)
    ws_id = workstation_id(paths)
    return Workstation(
        paths=paths,
        settings=settings,
        workstation_id=ws_id,
        cache=cache,
        audit=AuditLog(cache, ws_id),
        users=UserDirectory(cache, ws_id),
        keys=store,
    )
