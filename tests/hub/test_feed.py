"""GET /v1/changes (paging, role filtering) and GET /v1/changes/wait (the long poll)."""

from __future__ import annotations

import threading
import time

from tests.hub import change, login, push_ok, referral


def _seed(client, n_referrals=5, n_vendors=3):
    coord, supply = login(client, "coord"), login(client, "supply")
    push_ok(client, coord, *[change(f"r{i}", f"r{i}", referral(f"r{i}")) for i in range(n_referrals)])
    vendors = [change(f"v{i}", f"v{i}", {"name": f"Vendor {i}"}, entity="vendors") for i in range(n_vendors)]
    push_ok(client, supply, *vendors)
    push_ok(client, coord, change("r-last", "r-last", referral("r-last")))


def test_paging_by_since_and_limit(client):
    _seed(client)
    h = login(client, "analyst")  # reads referrals and vendors
    seen, since, pages = [], 0, 0
    while True:
        r = client.get(f"/v1/changes?since={since}&limit=3", headers=h).json()
        pages += 1
        seen += [c["seq"] for c in r["changes"]]
        since = r["last_seq"]
        if not r["more"]:
            break
    assert seen == list(range(1, 10)) and since == 9 and pages == 3
    assert client.get("/v1/changes?since=9", headers=h).json() == {"changes": [], "last_seq": 9, "more": False}


def test_feed_only_has_what_the_role_may_read(client):
    _seed(client)
    coord = client.get("/v1/changes?since=0", headers=login(client, "coord")).json()
    assert {c["entity"] for c in coord["changes"]} == {"referrals"}
    assert coord["last_seq"] == 9  # the cursor moves past the vendors too
    supply = client.get("/v1/changes?since=0&limit=2", headers=login(client, "supply")).json()
    assert [c["entity_id"] for c in supply["changes"]] == ["v0", "v1"] and supply["more"]
    rest = client.get(f"/v1/changes?since={supply['last_seq']}&limit=2", headers=login(client, "supply")).json()
    assert [c["entity_id"] for c in rest["changes"]] == ["v2"] and not rest["more"] and rest["last_seq"] == 9
    charge = client.get("/v1/changes?since=0", headers=login(client, "charge")).json()
    assert charge == {"changes": [], "last_seq": 9, "more": False}


def test_bad_paging_parameters(client):
    h = login(client, "coord")
    for q in ("since=-1", "limit=0", "limit=1001", "since=abc", f"since={2**64}"):
        assert client.get(f"/v1/changes?{q}", headers=h).status_code == 422, q


def test_wait_returns_early_when_a_change_lands(client, make_client):
    other = make_client()  # the change arrives through another instance
    h = login(client, "coord")
    pusher = threading.Thread(target=lambda: (time.sleep(0.3), push_ok(other, h, change("k1", "r1", referral("r1")))))
    started = time.monotonic()
    pusher.start()
    try:
        r = client.get("/v1/changes/wait?since=0&timeout=10", headers=h)
    finally:
        pusher.join()
    took = time.monotonic() - started
    assert r.status_code == 200 and r.json() == {"last_seq": 1}
    assert 0.25 < took < 3


def test_wait_returns_at_once_when_behind_and_on_timeout_otherwise(client):
    h = login(client, "coord")
    push_ok(client, h, change("k1", "r1", referral("r1")))
    started = time.monotonic()
    assert client.get("/v1/changes/wait?since=0&timeout=10", headers=h).json() == {"last_seq": 1}
    assert time.monotonic() - started < 1
    started = time.monotonic()
    assert client.get("/v1/changes/wait?since=1&timeout=0.4", headers=h).json() == {"last_seq": 1}
    assert 0.35 < time.monotonic() - started < 2


def test_wait_ignores_changes_the_role_cannot_read(client):
    push_ok(client, login(client, "supply"), change("v1", "v1", {"name": "Acme"}, entity="vendors"))
    started = time.monotonic()
    r = client.get("/v1/changes/wait?since=0&timeout=0.3", headers=login(client, "coord")).json()
    assert r == {"last_seq": 1} and time.monotonic() - started >= 0.25


def test_wait_limits(client):
    h = login(client, "coord")
    assert client.get("/v1/changes/wait?since=0&timeout=31", headers=h).status_code == 422
    assert client.get("/v1/changes/wait?since=0&timeout=1").status_code == 401


def test_health(client):
    r = client.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["db"] in ("sqlite", "postgresql") and body["seq"] == 0
