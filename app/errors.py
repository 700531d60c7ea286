"""Error classes, split the way a user experiences them.

A ``KnownError`` is a condition the user can act on (wrong passphrase, full disk): it carries a
message written for a person and, where there is one, the way out. Anything else is a bug and goes
to the crash handler. Messages never contain PHI.
"""

from __future__ import annotations


class KnownError(Exception):
    """An error with a message meant for the user, and optionally what to do about it."""

    remedy: str = ""

    def __init__(self, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        if remedy is not None:
            self.remedy = remedy

    @property
    def message(self) -> str:
        return str(self)

    def user_text(self) -> str:
        return f"{self}\n\n{self.remedy}" if self.remedy else str(self)


class ConfigError(KnownError):
    remedy = "Correct config.toml in the data folder, or remove it to use the defaults."


class KeyError_(KnownError):
    """Base for problems with the database key (named to avoid the builtin)."""


class WrongPassphrase(KeyError_):
    remedy = "Enter the passphrase again. If it is lost, restore from the central service."


class KeychainUnavailable(KeyError_):
    remedy = (
        "Unlock the system keychain, or set key_backend = \"passphrase\" in config.toml "
        "and provide CAREOPS_PASSPHRASE."
    )


class WrongKey(KeyError_):
    remedy = (
        "The cache was encrypted with another key. Restore the matching key, or move the cache "
        "aside and re-sync from the central service (careops cache reset)."
    )


class CacheDamaged(KnownError):
    remedy = (
        "The local cache file is damaged. Move it aside and re-sync from the central service "
        "(careops cache reset); the damaged file is kept for investigation."
    )


class DataFolderUnwritable(KnownError):
    remedy = "Make the data folder writable (CAREOPS_HOME) or choose another one."


class DiskFull(KnownError):
    remedy = "Free disk space; the last change was not saved, everything before it is kept."


class AccessDenied(KnownError):
    remedy = "Ask an administrator for the role, or use emergency access with a reason."


class NotAuthenticated(KnownError):
    remedy = "Log in again."


class AuditUnavailable(KnownError):
    remedy = "The action was not carried out because its audit entry could not be written."


class ValidationError(KnownError):
    pass
