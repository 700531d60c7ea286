"""Fail on surprises: unexpected log warnings and leaked threads (STYLE.md, "Tests")."""

from __future__ import annotations

import logging
import threading

import pytest


@pytest.fixture(autouse=True)
def _fail_on_unexpected_warnings(caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest):
    """A WARNING or worse logged during a test fails it, unless the test marks it expected."""
    yield
    if request.node.get_closest_marker("allow_log_warnings"):
        return
    bad = [r for r in caplog.get_records("call") if r.levelno >= logging.WARNING]
    if bad:
        pytest.fail("unexpected log warnings: " + "; ".join(f"{r.name}: {r.getMessage()}" for r in bad[:5]))


@pytest.fixture(autouse=True)
def _no_leaked_threads():
    before = set(threading.enumerate())
    yield
    leaked = [
        t for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.daemon and not t.name.startswith(("Dummy", "QThread"))
    ]  # fmt: skip
    for t in leaked:
        t.join(timeout=2)
    still = [t.name for t in leaked if t.is_alive()]
    if still:
        pytest.fail(f"threads leaked: {still}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_log_warnings: the test expects warnings in the log")
