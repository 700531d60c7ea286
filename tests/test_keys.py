"""The database key: keychain or passphrase-wrapped file, rotation that survives a crash."""

from __future__ import annotations

import json

import keyring
import pytest
from keyring.backend import KeyringBackend
from sqlalchemy import select

from app.cache.models import Patient
from app.config import Paths, Settings
from app.errors import KeychainUnavailable, WrongKey, WrongPassphrase
from app.security.keys import KeyringKeyStore, PassphraseKeyStore, choose_store
from app.workstation import key_store, open_workstation, rotate_key, unlock_cache


class MemoryKeyring(KeyringBackend):
    """An in-memory stand-in for a real secret store."""

    priority = 1
    careops_accept = True

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.data.get((service, username))

    def set_password(self, service, username, password):
        self.data[(service, username)] = password

    def delete_password(self, service, username):
        self.data.pop((service, username), None)


class PlaintextLikeKeyring(MemoryKeyring):
    careops_accept = False


def _add_patient(ws, name="Keytest Person"):
    with ws.cache.unit_of_work(user="t") as s:
        s.add(Patient(mrn="MRN1234567", name=name))


def test_key_file_never_holds_the_key_in_plain_text(home):
    ws = open_workstation(home)
    ws.close()
    sealed = json.loads(ws.paths.key_file.read_text())
    assert set(sealed) == {"current"} and sealed["current"]["kdf"] == "scrypt"
    key = PassphraseKeyStore(ws.paths.key_file, "correct horse battery staple").load()
    raw = ws.paths.key_file.read_bytes()
    assert key.hex().encode() not in raw and key not in raw


def test_wrong_passphrase_is_clear_and_changes_nothing(home):
    open_workstation(home).close()
    before = Paths(home).key_file.read_bytes()
    with pytest.raises(WrongPassphrase) as err:
        open_workstation(home, passphrase="not it")
    assert "passphrase is wrong" in str(err.value)
    assert Paths(home).key_file.read_bytes() == before


def test_no_keychain_and_no_passphrase(home, monkeypatch):
    monkeypatch.delenv("CAREOPS_PASSPHRASE")
    with pytest.raises(WrongPassphrase):
        open_workstation(home)
    with pytest.raises(KeychainUnavailable):
        choose_store(home, home / "cache.key", "keyring", None)


def test_keychain_backend_used_when_a_real_one_exists(home, monkeypatch):
    monkeypatch.delenv("CAREOPS_PASSPHRASE")
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    ws = open_workstation(home)
    _add_patient(ws)
    ws.close()
    assert not Paths(home).key_file.exists()
    assert len(ring.data) == 1
    ws = open_workstation(home)
    with ws.cache.reader() as s:
        assert s.scalars(select(Patient.name)).all() == ["Keytest Person"]
    ws.close()


def test_unaccepted_keyring_backend_is_not_trusted(home):
    keyring.set_keyring(PlaintextLikeKeyring())
    assert not KeyringKeyStore.usable()
    store = choose_store(home, home / "cache.key", "auto", "pw")
    assert isinstance(store, PassphraseKeyStore)


def test_lost_keychain_entry_is_a_wrong_key_not_a_new_empty_cache(home, monkeypatch):
    monkeypatch.delenv("CAREOPS_PASSPHRASE")
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    open_workstation(home).close()
    ring.data.clear()
    with pytest.raises(WrongKey):
        open_workstation(home)


def test_rekey_rotates_and_old_key_no_longer_opens(home):
    ws = open_workstation(home)
    _add_patient(ws)
    store = key_store(ws.paths, ws.settings)
    old = store.load()
    rotate_key(ws.paths, store, ws.cache)
    new = store.load()
    assert new != old
    ws = open_workstation(home)
    with ws.cache.reader() as s:
        assert s.scalars(select(Patient.name)).all() == ["Keytest Person"]
    ws.close()
    store.save(old)  # put the old key back as current: it must be refused as the wrong key
    with pytest.raises(WrongKey):
        unlock_cache(ws.paths, store)


def test_rekey_with_new_passphrase(home, monkeypatch):
    ws = open_workstation(home)
    _add_patient(ws)
    store = key_store(ws.paths, ws.settings)
    rotate_key(ws.paths, store, ws.cache, key_store(ws.paths, ws.settings, "a new passphrase"))
    with pytest.raises(WrongPassphrase):
        open_workstation(home)  # the old passphrase from the environment
    open_workstation(home, passphrase="a new passphrase").close()


def test_rotation_interrupted_after_rekey_is_finished_on_next_open(home, monkeypatch):
    """Crash between re-encrypting and promoting the new key: the pending key opens the cache."""
    ws = open_workstation(home)
    _add_patient(ws)
    store = key_store(ws.paths, ws.settings)
    import app.workstation as wsmod

    def crash(*_a, **_k):
        raise SystemExit("killed")

    monkeypatch.setattr(wsmod, "_promote", crash)
    with pytest.raises(SystemExit):
        rotate_key(ws.paths, store, ws.cache)
    monkeypatch.undo()
    monkeypatch.setenv("CAREOPS_HOME", str(home))
    monkeypatch.setenv("CAREOPS_PASSPHRASE", "correct horse battery staple")
    ws = open_workstation(home)
    with ws.cache.reader() as s:
        assert s.scalars(select(Patient.name)).all() == ["Keytest Person"]
    ws.close()
    assert store.load("pending") is None


def test_rotation_interrupted_before_rekey_keeps_old_key(home, monkeypatch):
    ws = open_workstation(home)
    _add_patient(ws)
    store = key_store(ws.paths, ws.settings)
    import app.workstation as wsmod

    monkeypatch.setattr(wsmod, "rekey_pragma", lambda key: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        rotate_key(ws.paths, store, ws.cache)
    monkeypatch.undo()
    open_workstation(home, passphrase="correct horse battery staple").close()


def test_settings_refuse_idle_lock_over_fifteen_minutes(tmp_path):
    from app.config import load_settings
    from app.errors import ConfigError

    with pytest.raises(ConfigError):
        Settings(idle_lock_minutes=20)
    p = Paths(tmp_path)
    p.config.write_text("idle_lock_minute = 5\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings(p)
    p.config.write_text("idle_lock_minutes = 5\n")
    assert load_settings(p).idle_lock_minutes == 5


def test_ehr_settings_are_a_checked_table(tmp_path):
    from app.config import load_settings
    from app.errors import ConfigError

    p = Paths(tmp_path)
    p.config.write_text('[ehr]\nbase_url = "https://ehr.example.org/fhir/r4"\nvendor = "epic"\nauth = "backend"\n')
    ehr = load_settings(p).ehr
    assert (ehr.base_url, ehr.vendor, ehr.auth, ehr.key_alg) == ("https://ehr.example.org/fhir/r4", "epic", "backend", "RS384")
    p.config.write_text('[ehr]\nbase = "https://ehr.example.org"\n')
    with pytest.raises(ConfigError, match=r"unknown settings in config.toml \[ehr\]: base"):
        load_settings(p)
    p.config.write_text('[ehr]\nauth = "password"\n')
    with pytest.raises(ConfigError, match="ehr.auth"):
        load_settings(p)
    p.config.write_text('ehr = "epic"\n')
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings(p)
