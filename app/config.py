"""Paths and typed settings, resolved from CAREOPS_HOME.

Preferences live in ``CAREOPS_HOME/config.toml`` (hand-edited or written by the CLI);
everything has a default so that an empty data folder starts in demo mode.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import ConfigError

MAX_IDLE_LOCK_MINUTES = 15


def default_home() -> Path:
    """The data folder: CAREOPS_HOME, else the platform's per-user data dir."""
    env = os.environ.get("CAREOPS_HOME")
    if env:
        return Path(env).expanduser()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif os.uname().sysname == "Darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "careops-desk"


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def cache(self) -> Path:
        return self.home / "cache.db"

    @property
    def key_file(self) -> Path:
        return self.home / "cache.key"

    @property
    def key_check(self) -> Path:
        return self.home / "cache.keycheck"

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @property
    def workstation(self) -> Path:
        return self.home / "workstation.id"

    @property
    def embedded_hub_db(self) -> Path:
        return self.home / "hub.db"

    @property
    def logs(self) -> Path:
        return self.home / "logs"


@dataclass(frozen=True)
class EhrSettings:
    """The ``[ehr]`` table: which EHR this workstation reads and writes, and how it signs in."""

    base_url: str = ""  # empty: no EHR connection (demo data comes from resources/demo)
    vendor: str = "generic"  # generic, epic, oracle, athena (sync/fhir/profiles.py)
    auth: str = "none"  # none, backend (SMART Backend Services), launch (SMART App Launch)
    client_id: str = ""
    scope: str = "system/*.read"
    key_alg: str = "RS384"  # RS384 or ES384, for Backend Services
    practice: str = ""  # athenahealth practice id; searches are scoped by it
    pull_minutes: float = 15.0
    ca_file: str = ""  # an extra CA bundle for a hospital's own certificate authority

    def __post_init__(self) -> None:
        if self.auth not in ("none", "backend", "launch"):
            raise ConfigError("ehr.auth must be one of none, backend, launch")
        if self.key_alg not in ("RS384", "ES384"):
            raise ConfigError("ehr.key_alg must be RS384 or ES384")
        if self.pull_minutes <= 0:
            raise ConfigError("ehr.pull_minutes must be more than 0")


@dataclass(frozen=True)
class TriageSettings:
    """The ``[triage]`` table: when a referral's suggested urgency may skip the human triage queue.

    A suggestion goes to the human queue below ``threshold`` (its calibrated confidence), and a
    suggestion of "routine" needs ``routine_threshold``, because missing an urgent referral costs
    more than looking at a routine one twice. The defaults are what ``python -m services.triage.train``
    recommends from out-of-scenario predictions on synthetic referrals (never the evaluation set):
    the lowest human-queue share with at least 0.99 of urgent and emergent referrals kept safe.
    ``endpoint`` names an external model; it is refused
    unless it is also listed in ``baa_endpoints`` (services/triage/policy.py checks that).
    """

    threshold: float = 0.50
    routine_threshold: float = 0.93
    endpoint: str = ""  # empty: the local model only, nothing leaves the machine

    def __post_init__(self) -> None:
        for name in ("threshold", "routine_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise ConfigError(f"triage.{name} must be a number more than 0 and at most 1")
        if self.routine_threshold < self.threshold:
            raise ConfigError("triage.routine_threshold must be at least triage.threshold")


@dataclass(frozen=True)
class ReferralSettings:
    """The ``[referrals]`` table: an organisation's overrides of the referral workflow.

    Empty or None means "the default of ``services.referral_workflow``", where every default
    lives (one place); the workflow checks the codes used here when the settings are built.

    ``column_titles`` and ``sla_days`` are sub-tables (``[referrals.sla_days]`` with ``urgent = 10``;
    keys: emergent, urgent, routine, untriaged). ``preauth_payers`` lists the payers (organisation
    id or name) that need a pre-authorization, ``"*"`` meaning every payer;
    ``preauth_exempt_payers`` the ones that never do. ``auto_accept_triage``: whether a triage
    suggestion from the automatic queue sets the urgency of an untriaged referral.
    """

    column_titles: dict[str, str] = field(default_factory=dict)
    sla_days: dict[str, float] = field(default_factory=dict)
    preauth_payers: tuple[str, ...] | None = None
    preauth_exempt_payers: tuple[str, ...] = ()
    auto_accept_triage: bool | None = None

    def __post_init__(self) -> None:
        overridden = (self.column_titles, self.sla_days, self.preauth_exempt_payers,
                      self.preauth_payers is not None, self.auto_accept_triage is not None)
        if any(overridden):
            # Deferred: the codes and defaults live with the workflow, not here.
            from services.referral_workflow import check_settings

            check_settings(self)


def _table(cls: type, raw: object, name: str) -> object:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name} must be a table")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown settings in {name}: {', '.join(unknown)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"invalid settings in {name}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Preferences. Unknown keys in config.toml are refused so typos do not pass silently."""

    idle_lock_minutes: float = 10.0
    full_login_hours: float = 12.0
    # "auto" uses the OS keychain when an accepted one exists, else a passphrase-wrapped key file.
    key_backend: str = "auto"
    break_glass_minutes: float = 30.0
    demo: bool = True
    # The central service; empty means demo mode's embedded one (loopback, SQLite in the data folder).
    hub_url: str = ""
    baa_endpoints: tuple[str, ...] = field(default_factory=tuple)
    ehr: EhrSettings = field(default_factory=EhrSettings)
    referrals: ReferralSettings = field(default_factory=ReferralSettings)
    triage: TriageSettings = field(default_factory=TriageSettings)

    def __post_init__(self) -> None:
        if not 0 < self.idle_lock_minutes <= MAX_IDLE_LOCK_MINUTES:
            raise ConfigError(
                f"idle_lock_minutes must be more than 0 and at most {MAX_IDLE_LOCK_MINUTES}"
            )
        if self.key_backend not in ("auto", "keyring", "passphrase"):
            raise ConfigError("key_backend must be one of auto, keyring, passphrase")
        if not 0 < self.full_login_hours <= 12:
            raise ConfigError("full_login_hours must be more than 0 and at most 12")


def load_settings(paths: Paths) -> Settings:
    if not paths.config.exists():
        return Settings()
    try:
        raw = tomllib.loads(paths.config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {paths.config.name}: {exc}") from None
    if "baa_endpoints" in raw:
        raw["baa_endpoints"] = tuple(raw["baa_endpoints"])
    if "ehr" in raw:
        raw["ehr"] = _table(EhrSettings, raw["ehr"], f"{paths.config.name} [ehr]")
    if "referrals" in raw:
        ref = raw["referrals"]
        if isinstance(ref, dict):
            for key in ("preauth_payers", "preauth_exempt_payers"):
                if isinstance(ref.get(key), list):
                    ref[key] = tuple(ref[key])
        raw["referrals"] = _table(ReferralSettings, ref, f"{paths.config.name} [referrals]")
    if "triage" in raw:
        raw["triage"] = _table(TriageSettings, raw["triage"], f"{paths.config.name} [triage]")
    return _table(Settings, raw, paths.config.name)  # type: ignore[return-value]


def workstation_id(paths: Paths) -> str:
    """A stable id for this workstation, created on first use (not secret, not PHI)."""
    try:
        return paths.workstation.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        value = f"ws-{uuid.uuid4().hex[:12]}"
        paths.home.mkdir(parents=True, exist_ok=True)
        paths.workstation.write_text(value + "\n", encoding="ascii")
        return value
