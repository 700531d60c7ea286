"""`careops users`, `careops cache reset`, `careops rekey`, and clear errors instead of tracebacks."""

from __future__ import annotations

import pytest

from app.cli import main
from app.errors import NotAuthenticated
from app.security.idle import IdlePolicy
from app.workstation import open_workstation


def test_users_add_list_and_login(home, monkeypatch, capsys):
    monkeypatch.setenv("CAREOPS_NEW_USER_PASSWORD", "s3cret-pass")
    assert main(["users", "add", "jdoe", "--role", "charge_nurse", "--name", "Jo Doe"]) == 0
    assert main(["users", "list"]) == 0
    assert "jdoe" in capsys.readouterr().out
    ws = open_workstation(home)
    session = ws.users.authenticate("jdoe", "s3cret-pass")
    assert session.role.value == "charge_nurse"
    with pytest.raises(NotAuthenticated):
        ws.users.authenticate("jdoe", "wrong")
    with pytest.raises(NotAuthenticated):
        ws.users.authenticate("nobody", "s3cret-pass")
    assert [e.action for e in ws.audit.entries()] == ["users.add"]
    ws.close()


def test_wrong_passphrase_prints_message_not_traceback(home, monkeypatch, capsys):
    open_workstation(home).close()
    monkeypatch.setenv("CAREOPS_PASSPHRASE", "wrong one")
    assert main(["audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert "passphrase is wrong" in err and "Traceback" not in err


def test_damaged_cache_then_reset(home, capsys):
    ws = open_workstation(home)
    ws.close()
    ws.paths.cache.write_bytes(b"\0" * 4096 + b"garbage" * 1000)
    assert main(["audit", "verify"]) == 2
    assert "damaged" in capsys.readouterr().err
    assert main(["cache", "reset"]) == 0
    assert "cache.db.aside-" in capsys.readouterr().out
    assert main(["audit", "verify"]) == 0  # a fresh cache under the same key


def test_rekey_command(home, capsys):
    open_workstation(home).close()
    assert main(["rekey"]) == 0
    assert main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "rotated" in out and "intact: 1 entries" in out


def test_idle_policy_on_a_monotonic_clock():
    now = [0.0]
    policy = IdlePolicy(idle_minutes=10, clock=lambda: now[0])
    now[0] = 599
    assert not policy.should_lock()
    policy.touch()
    now[0] = 599 + 600
    assert policy.should_lock()
    assert IdlePolicy(idle_minutes=60, clock=lambda: 0.0).idle_seconds == 15 * 60  # capped
    now[0] = 12 * 3600 + 1
    assert policy.full_login_due()


def test_reset_restores_the_key_check(home):
    open_workstation(home).close()
    assert main(["cache", "reset"]) == 0
    ws = open_workstation(home)
    ws.close()
    assert ws.paths.key_check.exists()


def test_sign_in_is_throttled_after_repeated_failures(home):
    now = [0.0]
    ws = open_workstation(home)
    ws.users._clock = lambda: now[0]
    ws.users.ensure_demo_users()
    for _ in range(5):
        with pytest.raises(NotAuthenticated, match="wrong password"):
            ws.users.authenticate("demo-admin", "guess")
    with pytest.raises(NotAuthenticated, match="Too many failed sign-ins"):
        ws.users.authenticate("demo-admin", "demo")  # even the right password, for a while
    now[0] += 61
    assert ws.users.authenticate("demo-admin", "demo").username == "demo-admin"
    ws.close()
