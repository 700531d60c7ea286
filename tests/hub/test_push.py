"""POST /v1/changes: applied, duplicate, conflict, merge, delete, rejected, and the role checks."""

from __future__ import annotations

import json
import threading

import pytest

from tests.hub import WS, change, login, push, push_ok, referral


def feed(client, headers, since=0, limit=500):
    r = client.get(f"/v1/changes?since={since}&limit={limit}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_create_then_retry_is_duplicate_and_applied_once(client):
    h = login(client, "coord")
    c = change("k1", "r1", referral("r1"))
    first = push_ok(client, h, c)
    assert first == [{
        "idempotency_key": "k1", "status": "applied", "version": 1, "seq": 1, "merged": False,
        "server": None, "reason": None,
    }]  # fmt: skip
    again = push_ok(client, h, c)
    assert again[0]["status"] == "duplicate"
    assert (again[0]["version"], again[0]["seq"]) == (1, 1)
    page = feed(client, h)
    assert [(x["seq"], x["entity_id"], x["version"], x["user"], x["workstation"]) for x in page["changes"]] == [
        (1, "r1", 1, "coord", WS)
    ]
    assert page["changes"][0]["data"] == referral("r1")
    assert page["changes"][0]["changed_fields"] == ["patient_id", "specialty", "status"]


def test_same_key_twice_in_one_push(client):
    h = login(client, "coord")
    c = change("k1", "r1", referral("r1"))
    results = push_ok(client, h, c, c)
    assert [r["status"] for r in results] == ["applied", "duplicate"]
    assert len(feed(client, h)["changes"]) == 1


def test_update_at_current_version_applies(client):
    h = login(client, "coord")
    push_ok(client, h, change("k1", "r1", referral("r1")))
    r = push_ok(client, h, change("k2", "r1", referral("r1", status="triaged"), fields=["status"], base="1"))[0]
    assert (r["status"], r["version"], r["merged"]) == ("applied", 2, False)
    last = feed(client, h)["changes"][-1]
    assert last["changed_fields"] == ["status"] and last["data"]["status"] == "triaged"


def test_overlapping_fields_conflict_with_server_state(client):
    a, b = login(client, "coord", "ws-a"), login(client, "coord", "ws-b")
    push_ok(client, a, change("k1", "r1", referral("r1")), workstation="ws-a")
    push_ok(client, a, change("k2", "r1", referral("r1", status="triaged"), fields=["status"], base="1"), workstation="ws-a")
    stale = change("k3", "r1", referral("r1", status="closed"), fields=["status"], base="1")
    r = push_ok(client, b, stale, workstation="ws-b")[0]
    assert r["status"] == "conflict"
    assert "status" in r["reason"]
    assert r["server"] == {"version": 2, "data": referral("r1", status="triaged"), "deleted": False}
    assert feed(client, a)["last_seq"] == 2  # nothing overwritten
    # a conflict is not remembered under its key: the same change sent again is answered again
    assert push_ok(client, b, change("k3", "r1", referral("r1"), fields=["status"], base="1"), workstation="ws-b")[0][
        "status"
    ] == "conflict"


def test_disjoint_fields_merge(client):
    a, b = login(client, "coord", "ws-a"), login(client, "coord", "ws-b")
    push_ok(client, a, change("k1", "r1", referral("r1")), workstation="ws-a")
    push_ok(client, a, change("k2", "r1", referral("r1", status="triaged"), fields=["status"], base="1"), workstation="ws-a")
    # ws-b still has version 1 (status "new") and changes only the urgency
    r = push_ok(
        client, b, change("k3", "r1", referral("r1", urgency="urgent"), fields=["urgency"], base="1"), workstation="ws-b"
    )[0]
    assert (r["status"], r["version"], r["merged"]) == ("applied", 3, True)
    assert r["server"]["data"] == referral("r1", status="triaged", urgency="urgent")
    last = feed(client, a)["changes"][-1]
    assert last["changed_fields"] == ["urgency"]
    assert last["data"] == referral("r1", status="triaged", urgency="urgent")


def test_own_earlier_changes_are_not_a_conflict(client):
    """Offline: create, then edit, then delete, all before any version came back."""
    h = login(client, "coord")
    results = push_ok(
        client, h,
        change("k1", "r1", referral("r1")),
        change("k2", "r1", referral("r1", status="triaged"), fields=["status"]),
        change("k3", "r1", referral("r1", status="triaged", urgency="urgent"), fields=["urgency"], base="1"),
        change("k4", "r1", op="delete"),
    )  # fmt: skip
    assert [(r["status"], r["version"]) for r in results] == [("applied", 1), ("applied", 2), ("applied", 3), ("applied", 4)]


def test_create_of_existing_id(client):
    a, b = login(client, "coord", "ws-a"), login(client, "coord", "ws-b")
    push_ok(client, a, change("k1", "r1", referral("r1")), workstation="ws-a")
    same = push_ok(client, b, change("k2", "r1", referral("r1")), workstation="ws-b")[0]
    assert (same["status"], same["version"]) == ("applied", 1)
    other = push_ok(client, b, change("k3", "r1", referral("r1", specialty="oncology")), workstation="ws-b")[0]
    assert other["status"] == "conflict" and other["server"]["version"] == 1
    assert feed(client, a)["last_seq"] == 1


def test_delete_versus_edit(client):
    a, b = login(client, "coord", "ws-a"), login(client, "coord", "ws-b")
    push_ok(client, a, change("k1", "r1", referral("r1")), workstation="ws-a")
    push_ok(client, a, change("k2", "r1", referral("r1", status="triaged"), fields=["status"], base="1"), workstation="ws-a")
    # b deletes what it saw at version 1: the record changed since -> conflict
    r = push_ok(client, b, change("k3", "r1", op="delete", base="1"), workstation="ws-b")[0]
    assert r["status"] == "conflict" and r["server"]["deleted"] is False
    # a deletes at the current version -> applied
    r = push_ok(client, a, change("k4", "r1", op="delete", base="2"), workstation="ws-a")[0]
    assert (r["status"], r["version"]) == ("applied", 3)
    deleted = feed(client, a)["changes"][-1]
    assert (deleted["op"], deleted["data"]) == ("delete", None)
    # b edits the deleted record from its old version -> conflict
    edit = change("k5", "r1", referral("r1", urgency="urgent"), fields=["urgency"], base="1")
    r = push_ok(client, b, edit, workstation="ws-b")[0]
    assert r["status"] == "conflict" and r["server"]["deleted"] is True and "deleted" in r["reason"]
    # deleting again is harmless
    r = push_ok(client, b, change("k6", "r1", op="delete", base="3"), workstation="ws-b")[0]
    assert (r["status"], r["version"]) == ("applied", 3)


def test_restore_after_seeing_the_delete(client):
    a = login(client, "coord", "ws-a")
    b = login(client, "coord", "ws-b")
    push_ok(client, a, change("k1", "r1", referral("r1")), workstation="ws-a")
    push_ok(client, a, change("k2", "r1", op="delete", base="1"), workstation="ws-a")
    r = push_ok(client, b, change("k3", "r1", referral("r1"), base="2"), workstation="ws-b")[0]
    assert (r["status"], r["version"]) == ("applied", 3)


def test_base_version_ahead_of_server_is_a_conflict(client):
    h = login(client, "coord")
    push_ok(client, h, change("k1", "r1", referral("r1")))
    r = push_ok(client, h, change("k2", "r1", referral("r1", status="x"), fields=["status"], base="7"))[0]
    assert r["status"] == "conflict"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"payload": {"id": "r1", "no_such_field": 1}}, "does not have"),
        ({"op": "merge"}, "op must be"),
        ({"payload": [1, 2]}, "payload must be an object"),
        ({"payload": {"status": {"nested": 1}}}, "single value"),
        ({"payload": {"id": "other"}}, "id differs"),
        ({"payload": {"status": "a\u0000b"}}, "NUL"),
        ({"payload": {"status": "\ud800"}}, "Unicode"),
        ({"payload": {"status": 10**20}}, "out of range"),
        ({"changed_fields": ["nope"]}, "does not have"),
        ({"changed_fields": "status"}, "list of field names"),
        ({"entity_id": ""}, "entity_id"),
        ({"entity_id": "x" * 65}, "entity_id"),
    ],
)
def test_invalid_changes_are_rejected_with_a_reason(client, bad, reason):
    h = login(client, "coord")
    c = {**change("k1", "r1", referral("r1")), **bad}
    body = json.dumps({"workstation": WS, "changes": [c, change("k2", "r2", referral("r2"))]})  # ASCII escapes
    r = client.post("/v1/changes", content=body.encode(), headers=h)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["status"] == "rejected" and reason in results[0]["reason"]
    assert results[1]["status"] == "applied"  # the others still apply


def test_json_column_takes_objects(client):
    h = login(client, "coord")
    r = push_ok(
        client, h,
        change("k1", "ct1", {"referral_id": "r1", "checklist": {"a": [1, 2, {"b": None}]}}, entity="care_transitions"),
    )[0]  # fmt: skip
    assert r["status"] == "applied"


def test_analyst_may_not_push_anything(client):
    h = login(client, "analyst")
    r = push(client, h, change("k1", "r1", referral("r1")))
    assert r.status_code == 403 and "Operations analyst" in r.json()["detail"]
    assert push(client, h).status_code == 403  # not even an empty push


def test_supply_manager_may_not_push_referrals(client):
    h = login(client, "supply")
    ok = change("k1", "v1", {"name": "Acme"}, entity="vendors")
    results = push_ok(client, h, ok, change("k2", "r1", referral("r1")), change("k3", "x1", entity="no_such_table"))
    assert [r["status"] for r in results] == ["applied", "rejected", "rejected"]
    assert all("forbidden" in r["reason"] for r in results[1:])
    assert feed(client, login(client, "supply"))["last_seq"] == 1


def test_token_of_another_workstation_is_refused(client):
    h = login(client, "coord", "ws-a")
    r = push(client, h, change("k1", "r1", referral("r1")), workstation="ws-b")
    assert r.status_code == 403 and "another workstation" in r.json()["detail"]


def test_idempotency_key_of_another_workstation_is_not_answered(client):
    a, b = login(client, "coord", "ws-a"), login(client, "coord", "ws-b")
    push_ok(client, a, change("k1", "r1", referral("r1")), workstation="ws-a")
    r = push_ok(client, b, change("k1", "r1", referral("r1")), workstation="ws-b")[0]
    assert r["status"] == "rejected" and r["server"] is None


def test_limits(make_client, client):
    h = login(client, "coord")
    many = [change(f"k{i}", f"r{i}", referral(f"r{i}")) for i in range(501)]
    r = push(client, h, *many)
    assert r.status_code == 413 and "500" in r.json()["detail"]
    small = make_client(max_body_bytes=2000)
    r = push(small, h, *many[:50])
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    r = small.post("/v1/changes", content=b"x" * 3000, headers={**h, "Content-Length": "3000"})
    assert r.status_code == 413
    assert push(client, h, {"no": "key"}).status_code == 422
    assert client.post("/v1/changes", content=b"[" * 100 + b"]" * 100, headers=h).status_code == 400
    assert client.post("/v1/changes", content=b'{"a": NaN}', headers=h).status_code == 400
    assert client.post("/v1/changes", content=b'{"a": 1, "a": 2}', headers=h).status_code == 400
    not_a_list = json.dumps({"workstation": WS, "changes": 5}).encode()
    assert client.post("/v1/changes", content=not_a_list, headers=h).status_code == 422


def test_concurrent_retries_on_two_instances_apply_once(make_client, client):
    other = make_client()
    h = login(client, "coord")
    c = change("k1", "r1", referral("r1"))
    statuses: list[str] = []
    barrier = threading.Barrier(8)

    def send(target):
        barrier.wait()
        statuses.append(push_ok(target, h, c)[0]["status"])

    threads = [threading.Thread(target=send, args=(client if i % 2 else other,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["applied"] + ["duplicate"] * 7
    assert len(feed(client, h)["changes"]) == 1


def test_seqs_within_one_push(client):
    h = login(client, "coord")
    results = push_ok(
        client, h,
        change("k1", "r1", referral("r1")),
        change("k2", "r2", referral("r2")),
        change("k3", "r1", referral("r1")),  # the same data again under another key: nothing new
        change("k4", "r1", op="delete"),
        change("k5", "r1", op="delete"),
    )  # fmt: skip
    assert [(r["status"], r["version"], r["seq"]) for r in results] == [
        ("applied", 1, 1), ("applied", 1, 2), ("applied", 1, 1), ("applied", 2, 3), ("applied", 2, 3)
    ]  # fmt: skip
    assert [c["seq"] for c in feed(client, h)["changes"]] == [1, 2, 3]


def test_unique_key_still_guards_when_appliers_are_not_serialized(make_client, pg_url):
    """The advisory lock is the first guard; the unique idempotency key (+ retry) is the second."""
    from sync.hub.auth import add_user

    a, b = make_client(pg_url), make_client(pg_url)
    for c in (a, b):
        c.app.state.hub.backend = "postgresql (no lock)"  # skips pg_advisory_xact_lock in Hub._push
    add_user(a.app.state.engine, "coord", "Coord", "coordinator", "pw-coord")
    h = login(a, "coord")
    statuses: list[str] = []
    barrier = threading.Barrier(8)

    def send(target):
        barrier.wait()
        statuses.append(push_ok(target, h, change("k1", "r1", referral("r1")))[0]["status"])

    threads = [threading.Thread(target=send, args=(a if i % 2 else b,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == ["applied"] + ["duplicate"] * 7
    assert len(feed(a, h)["changes"]) == 1
