"""Login, bearer tokens and their checks on every request."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import update

from sync.hub import db
from sync.hub.auth import InvalidToken, TokenSigner, load_signing_key
from tests.hub import WS, login


def test_login_ok(client):
    r = client.post("/v1/login", json={"username": "coord", "password": "pw-coord", "workstation": WS})
    assert r.status_code == 200
    body = r.json()
    assert body["expires_in"] == 900
    assert body["user"] == {"username": "coord", "display_name": "Coord (test)", "role": "coordinator"}
    assert body["token"].startswith("v1.")


def test_wrong_password_and_unknown_user_get_the_same_answer(client):
    wrong = client.post("/v1/login", json={"username": "coord", "password": "nope", "workstation": WS})
    unknown = client.post("/v1/login", json={"username": "nobody", "password": "pw-coord", "workstation": WS})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Unknown user or wrong password."}


def test_login_needs_all_fields(client):
    r = client.post("/v1/login", json={"username": "coord", "password": "pw-coord"})
    assert r.status_code == 422 and "workstation" in r.json()["detail"]
    assert client.post("/v1/login", content=b"{not json").status_code == 400


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer v1.e30.AAAA", "Bearer garbage"])
def test_missing_or_bad_token_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    r = client.get("/v1/changes", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_tampered_token_is_401(client):
    token = login(client, "analyst")["Authorization"].removeprefix("Bearer ")
    prefix, body, mac = token.split(".")
    # claim to be the coordinator with the analyst's signature
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "coord"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    r = client.get("/v1/changes", headers={"Authorization": f"Bearer {prefix}.{forged}.{mac}"})
    assert r.status_code == 401


def test_expired_token_is_401(make_client, client):
    now = [1_000_000.0]
    timed = make_client(clock=lambda: now[0], token_ttl=60)
    headers = login(timed, "coord")
    assert timed.get("/v1/changes", headers=headers).status_code == 200
    now[0] += 61
    r = timed.get("/v1/changes", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_deactivated_user_loses_access_at_once(client):
    headers = login(client, "coord")
    with client.app.state.engine.begin() as conn:
        conn.execute(update(db.users).where(db.users.c.username == "coord").values(active=False))
    assert client.get("/v1/changes", headers=headers).status_code == 401
    r = client.post("/v1/login", json={"username": "coord", "password": "pw-coord", "workstation": WS})
    assert r.status_code == 401


def test_role_change_applies_to_existing_tokens(client):
    headers = login(client, "analyst")
    assert client.get("/v1/changes", headers=headers).status_code == 200
    with client.app.state.engine.begin() as conn:
        conn.execute(update(db.users).where(db.users.c.username == "analyst").values(role="coordinator"))
    r = client.post("/v1/changes", json={"workstation": WS, "changes": []}, headers=headers)
    assert r.status_code == 200  # analysts may not push; the coordinator it now is may


def test_signer_round_trip_and_tamper():
    now = [100.0]
    signer = TokenSigner(b"k" * 32, ttl=10, clock=lambda: now[0])
    token = signer.issue("coord", "ws-1")
    claims = signer.verify(token)
    assert (claims.username, claims.workstation, claims.expires_at) == ("coord", "ws-1", 110)
    with pytest.raises(InvalidToken):
        TokenSigner(b"x" * 32).verify(token)
    with pytest.raises(InvalidToken):
        signer.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])
    now[0] = 110
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token)


def test_signing_key_is_created_once_across_racing_instances(db_url):
    engine = db.open_database(db_url)
    engines = [db.create_engine(db_url) for _ in range(4)]
    keys: list[bytes] = []
    barrier = threading.Barrier(len(engines))

    def grab(e):
        barrier.wait()
        keys.append(load_signing_key(e))

    threads = [threading.Thread(target=grab, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(keys) == 4 and len(set(keys)) == 1
        assert load_signing_key(engine) == keys[0]
    finally:
        for e in [engine, *engines]:
            e.dispose()
