"""Unexpected failures: JSON answers, 503 for an unreachable database, and no values in the log."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from app.security.roles import Role
from sync.hub.auth import Authenticator, Identity
from tests.hub import login

CANARY = "Zebediah-Quackenbush-1957"


@pytest.mark.allow_log_warnings
def test_a_bug_is_a_json_500_and_the_log_has_no_values(client, monkeypatch, caplog):
    h = login(client, "coord")

    def boom(**_kw):
        raise RuntimeError(f"failed on patient {CANARY}")

    monkeypatch.setattr(client.app.state.hub, "feed", boom)
    r = client.get("/v1/changes", headers=h)
    assert r.status_code == 500 and "detail" in r.json()
    assert CANARY not in caplog.text and CANARY not in r.text
    assert "RuntimeError" in caplog.text


@pytest.mark.allow_log_warnings
def test_database_down_is_503(client, monkeypatch, caplog):
    h = login(client, "coord")

    def down(**_kw):
        raise OperationalError(f"SELECT ... WHERE name = '{CANARY}'", {}, Exception(CANARY))

    monkeypatch.setattr(client.app.state.hub, "feed", down)
    r = client.get("/v1/changes", headers=h)
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    monkeypatch.setattr(client.app.state.hub, "head", lambda: down())
    r = client.get("/v1/health")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert CANARY not in caplog.text


def test_feed_reset_shows_as_last_seq_below_since(client):
    r = client.get("/v1/changes?since=100", headers=login(client, "coord")).json()
    assert r == {"changes": [], "last_seq": 0, "more": False}


def test_another_authenticator_plugs_in(make_client, db_url):
    class SingleSignOn(Authenticator):
        def authenticate(self, username, secret):
            return Identity(username, "From SSO", Role.CHARGE_NURSE) if secret == f"id-token:{username}" else None

        def lookup(self, username):
            return Identity(username, "From SSO", Role.CHARGE_NURSE)

    c = make_client(db_url, authenticator=SingleSignOn())
    assert c.post("/v1/login", json={"username": "n1", "password": "wrong", "workstation": "ws"}).status_code == 401
    r = c.post("/v1/login", json={"username": "n1", "password": "id-token:n1", "workstation": "ws"})
    assert r.json()["user"]["role"] == "charge_nurse"
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    assert c.get("/v1/changes", headers=h).status_code == 200
