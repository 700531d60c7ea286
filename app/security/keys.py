"""The cache's database key: a random 256-bit key kept in the OS keychain or wrapped by a passphrase.

Backends follow one small interface (``KeyStore``). The keychain backend accepts only real secret
stores (Secret Service, macOS Keychain, Windows Credential Locker): a plaintext or "fail" backend
means there is no keychain, and with ``key_backend = "auto"`` the passphrase-wrapped key file is
used instead. The key file holds the key encrypted with AES-256-GCM under a scrypt-derived key;
nothing is ever written in plain text.

Rotation (``careops rekey``) is crash-safe: the new key is stored as *pending* before the database
is rekeyed, and promoted after. Opening tries the current key, then the pending one.
"""

from __future__ import annotations

import abc
import base64
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from app.errors import KeychainUnavailable, WrongPassphrase

KEY_BYTES = 32
KEYRING_SERVICE = "careops-desk"
ACCEPTED_KEYRING_BACKENDS = frozenset(
    {
        "keyring.backends.SecretService.Keyring",
        "keyring.backends.macOS.Keyring",
        "keyring.backends.Windows.WinVaultKeyring",
        "keyring.backends.libsecret.Keyring",
    }
)
# scrypt cost: about 100 ms here; interactive, and costly to brute-force.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


class KeyStore(abc.ABC):
    """Where the database key lives. ``slot`` is "current" or "pending" (during rotation)."""

    @abc.abstractmethod
    def load(self, slot: str = "current") -> bytes | None: ...

    @abc.abstractmethod
    def save(self, key: bytes, slot: str = "current") -> None: ...

    @abc.abstractmethod
    def delete(self, slot: str) -> None: ...


class KeyringKeyStore(KeyStore):
    """The OS keychain through ``keyring``; one entry per data folder and slot."""

    def __init__(self, home: Path, backend: object | None = None) -> None:
        import keyring

        self._keyring = backend or keyring.get_keyring()
        self._account = f"cache-key:{home.resolve()}"

    @staticmethod
    def backend_name(backend: object) -> str:
        cls = type(backend)
        return f"{cls.__module__}.{cls.__qualname__}"

    @classmethod
    def usable(cls, backend: object | None = None) -> bool:
        import keyring

        backend = backend or keyring.get_keyring()
        name = cls.backend_name(backend)
        return name in ACCEPTED_KEYRING_BACKENDS or getattr(backend, "careops_accept", False)

    def _name(self, slot: str) -> str:
        return self._account if slot == "current" else f"{self._account}:{slot}"

    def load(self, slot: str = "current") -> bytes | None:
        try:
            value = self._keyring.get_password(KEYRING_SERVICE, self._name(slot))
        except Exception as exc:  # keyring raises backend-specific errors (locked, no D-Bus)
            raise KeychainUnavailable(f"The system keychain cannot be read ({type(exc).__name__}).") from None
        return bytes.fromhex(value) if value else None

    def save(self, key: bytes, slot: str = "current") -> None:
        try:
            self._keyring.set_password(KEYRING_SERVICE, self._name(slot), key.hex())
        except Exception as exc:
            raise KeychainUnavailable(f"The system keychain cannot be written ({type(exc).__name__}).") from None

    def delete(self, slot: str) -> None:
        try:
            self._keyring.delete_password(KEYRING_SERVICE, self._name(slot))
        except Exception:  # absent already: nothing to delete
            pass


class PassphraseKeyStore(KeyStore):
    """A key file: the key sealed with AES-256-GCM under scrypt(passphrase)."""

    def __init__(self, key_file: Path, passphrase: str) -> None:
        if not passphrase:
            raise WrongPassphrase("A passphrase is required to unlock the cache key.")
        self._file = key_file
        self._passphrase = passphrase.encode("utf-8")

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            return json.loads(self._file.read_text(encoding="ascii"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, UnicodeDecodeError):
            raise WrongPassphrase("The key file is damaged and cannot be read.") from None

    def _kek(self, salt: bytes, n: int, r: int, p: int) -> bytes:
        return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(self._passphrase)

    def load(self, slot: str = "current") -> bytes | None:
        sealed = self._read().get(slot)
        if not sealed:
            return None
        try:
            salt = base64.b64decode(sealed["salt"])
            nonce = base64.b64decode(sealed["nonce"])
            ct = base64.b64decode(sealed["ct"])
            kek = self._kek(salt, int(sealed["n"]), int(sealed["r"]), int(sealed["p"]))
        except (KeyError, ValueError, TypeError):
            raise WrongPassphrase("The key file is damaged and cannot be read.") from None
        try:
            key = AESGCM(kek).decrypt(nonce, ct, b"careops-cache-key:" + slot.encode())
        except InvalidTag:
            raise WrongPassphrase("The passphrase is wrong.") from None
        return key

    def save(self, key: bytes, slot: str = "current") -> None:
        salt, nonce = os.urandom(16), os.urandom(12)
        kek = self._kek(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        ct = AESGCM(kek).encrypt(nonce, key, b"careops-cache-key:" + slot.encode())
        data = self._read()
        data[slot] = {
            "kdf": "scrypt",
            "n": str(SCRYPT_N),
            "r": str(SCRYPT_R),
            "p": str(SCRYPT_P),
            "salt": base64.b64encode(salt).decode(),
            "nonce": base64.b64encode(nonce).decode(),
            "ct": base64.b64encode(ct).decode(),
        }
        self._write(data)

    def delete(self, slot: str) -> None:
        data = self._read()
        if data.pop(slot, None) is not None:
            self._write(data)

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        tmp = self._file.with_name(self._file.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._file)


def choose_store(home: Path, key_file: Path, backend: str, passphrase: str | None) -> KeyStore:
    """The key store the settings ask for. ``auto``: the keychain if a real one exists.

    An existing key file always wins in ``auto`` mode, so a workstation set up headless keeps
    working when a keychain later appears.
    """
    if backend == "keyring" or (backend == "auto" and not key_file.exists() and KeyringKeyStore.usable()):
        if not KeyringKeyStore.usable():
            raise KeychainUnavailable("No usable system keychain was found.")
        return KeyringKeyStore(home)
    if passphrase is None:
        raise WrongPassphrase("A passphrase is required (no system keychain is available).")
    return PassphraseKeyStore(key_file, passphrase)
