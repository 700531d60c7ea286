"""No state in process memory: instances over one database agree, and the feed never skips."""

from __future__ import annotations

import threading
import time

from tests.hub import change, login, push_ok, referral


def test_two_instances_agree(make_client, client):
    a, b = client, make_client()
    token = login(a, "coord")  # issued by A ...
    assert b.get("/v1/changes", headers=token).status_code == 200  # ... accepted by B
    first = push_ok(a, token, change("k1", "r1", referral("r1")))[0]
    assert b.get("/v1/changes", headers=token).json()["changes"][0]["entity_id"] == "r1"
    retry = push_ok(b, token, change("k1", "r1", referral("r1")))[0]
    assert retry["status"] == "duplicate" and retry["seq"] == first["seq"]
    assert push_ok(b, token, change("k2", "r1", referral("r1", status="x"), fields=["status"], base="1"))[0]["version"] == 2
    assert a.get("/v1/health").json()["seq"] == b.get("/v1/health").json()["seq"] == 2


def test_concurrent_pushers_give_a_gap_free_feed_a_reader_never_skips(make_client, pg_url):
    """PostgreSQL: 6 writers on 2 instances, a reader polling all along; it must see every seq."""
    from sync.hub.auth import add_user

    a = make_client(pg_url)
    b = make_client(pg_url)
    add_user(a.app.state.engine, "coord", "Coord", "coordinator", "pw-coord")
    writers, batches, per_batch = 6, 8, 15
    tokens = [login(a, "coord", f"ws-{w}") for w in range(writers)]
    pushed: list[int] = []
    lock = threading.Lock()
    done = threading.Event()
    seen: list[int] = []
    errors: list[str] = []

    def writer(w: int) -> None:
        try:
            client = a if w % 2 else b
            for n in range(batches):
                batch = [change(f"w{w}-{n}-{i}", f"w{w}-{n}-{i}", referral(f"w{w}-{n}-{i}")) for i in range(per_batch)]
                results = push_ok(client, tokens[w], *batch, workstation=f"ws-{w}")
                with lock:
                    pushed.extend(r["seq"] for r in results)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    def reader() -> None:
        since = 0
        h = tokens[0]
        while True:
            finished = done.is_set()
            page = b.get(f"/v1/changes?since={since}&limit=37", headers=h).json()
            seen.extend(c["seq"] for c in page["changes"])
            since = page["last_seq"]
            if finished and not page["more"]:
                return
            if not page["changes"]:
                time.sleep(0.005)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    r.join()
    assert not errors
    total = writers * batches * per_batch
    assert sorted(pushed) == list(range(1, total + 1))  # gap-free, each seq once
    assert seen == list(range(1, total + 1))  # strictly increasing, nothing skipped


def test_sqlite_file_shared_by_two_instances(tmp_path, make_client):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    from sync.hub.auth import add_user

    a, b = make_client(url), make_client(url)
    add_user(a.app.state.engine, "coord", "Coord", "coordinator", "pw-coord")
    h = login(b, "coord")
    results = []

    def send(client, prefix):
        for n in range(5):
            ids = [f"{prefix}{n}-{i}" for i in range(10)]
            results.extend(push_ok(client, h, *[change(x, x, referral(x)) for x in ids]))

    threads = [threading.Thread(target=send, args=(c, p)) for c, p in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["seq"] for r in results) == list(range(1, 101))
    assert a.get("/v1/changes?since=0&limit=1000", headers=h).json() == b.get(
        "/v1/changes?since=0&limit=1000", headers=h
    ).json()
