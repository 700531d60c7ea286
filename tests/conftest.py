"""Shared fixtures: a fresh encrypted workstation per test, synthetic data only."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from app.workstation import Workstation, open_workstation  # noqa: E402

TEST_PASSPHRASE = "correct horse battery staple"
# The real FHIR server process (fixtures real_fhir_server, fresh_fhir_server) for any test that asks.
pytest_plugins = ["tests.fhir.real_server"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("CAREOPS_HOME", str(h))
    monkeypatch.setenv("CAREOPS_PASSPHRASE", TEST_PASSPHRASE)
    return h


@pytest.fixture
def ws(home: Path):
    w: Workstation = open_workstation(home)
    yield w
    w.close()


@pytest.fixture(autouse=True)
def _no_real_keychain(monkeypatch: pytest.MonkeyPatch):
    """Tests never touch a developer's real keychain: no keychain unless a test installs one."""
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A real, tiny filesystem (tmpfs) so full-disk and read-only paths hit the real errors.

    Needs root (CI and the dev machines run as root); otherwise the test is skipped with a reason.
    """
    import subprocess

    mounted: list[Path] = []

    def make(size: str = "2m") -> Path:
        mnt = tmp_path / f"fs{len(mounted)}"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root): " + r.stderr.decode(errors="replace").strip())
        mounted.append(mnt)
        return mnt

    yield make
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture(autouse=True)
def _fresh_phi_registry():
    """Each test starts with no PHI tokens registered by earlier tests' data."""
    from app.logs import phi_registry

    phi_registry.clear()
    yield
