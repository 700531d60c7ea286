"""POST /v1/audit: the chain must continue; resends are idempotent; the head is acknowledged."""

from __future__ import annotations

import dataclasses

from app.security.audit import EXPORT_FIELDS, GENESIS, entry_hash
from tests.hub import WS, login


def chain(n: int, start: int = 1, prev: str = GENESIS, workstation: str = WS) -> list[dict]:
    out = []
    for seq in range(start, start + n):
        e = {
            "seq": seq, "at": f"2026-01-01T00:00:{seq % 60:02d}.000000+00:00", "user": "coord", "role": "coordinator",
            "workstation": workstation, "action": "referral.read", "entity": "referrals", "record_ids": [f"r{seq}"],
            "detail": "", "break_glass": False, "prev_hash": prev,
        }  # fmt: skip
        e["hash"] = entry_hash(**{k: e[k] for k in e if k != "hash"})
        prev = e["hash"]
        out.append(e)
    return out


def post(client, headers, entries, workstation=WS):
    return client.post("/v1/audit", json={"workstation": workstation, "entries": entries}, headers=headers)


def test_ingest_acknowledges_head_and_resend_is_idempotent(client):
    h = login(client, "charge")
    entries = chain(5)
    r = post(client, h, entries[:3])
    assert r.status_code == 200 and r.json() == {"acknowledged_seq": 3, "acknowledged_hash": entries[2]["hash"]}
    # the reply was lost: everything again, plus two new ones
    r = post(client, h, entries)
    assert r.json() == {"acknowledged_seq": 5, "acknowledged_hash": entries[4]["hash"]}
    assert post(client, h, entries).json()["acknowledged_seq"] == 5
    assert post(client, h, []).json()["acknowledged_seq"] == 5  # ask for the anchor


def test_a_break_in_the_chain_is_refused(client):
    h = login(client, "coord")
    entries = chain(6)
    post(client, h, entries[:3])
    # a gap: entry 4 is missing
    r = post(client, h, entries[4:])
    assert r.status_code == 409 and "missing" in r.json()["detail"]
    assert r.json()["acknowledged_seq"] == 3
    # a chain that does not continue from the acknowledged head (e.g. a truncated and rewritten log)
    forged = chain(2, start=4, prev="f" * 64)
    r = post(client, h, forged)
    assert r.status_code == 409 and "does not continue" in r.json()["detail"]
    # an already acknowledged entry that now differs
    rewritten = chain(3, prev=GENESIS)
    rewritten[1] = {**rewritten[1], "detail": "changed"}
    rewritten[1]["hash"] = entry_hash(**{k: rewritten[1][k] for k in rewritten[1] if k != "hash"})
    rewritten[2] = chain(1, start=3, prev=rewritten[1]["hash"])[0]
    r = post(client, h, rewritten)
    assert r.status_code == 409 and "differs" in r.json()["detail"]
    assert post(client, h, []).json()["acknowledged_seq"] == 3


def test_malformed_entries_are_refused(client):
    h = login(client, "coord")
    e = chain(2)
    altered = [{**e[0], "action": "something.else"}]
    r = post(client, h, altered)
    assert r.status_code == 422 and "hash" in r.json()["detail"]
    r = post(client, h, [e[1], e[0]])
    assert r.status_code == 422
    assert post(client, h, [{**e[0], "seq": "1"}]).status_code == 422
    assert post(client, h, [{**e[0], "workstation": "elsewhere"}]).status_code == 422
    assert post(client, h, "nope").status_code == 422
    assert post(client, h, []).json() == {"acknowledged_seq": 0, "acknowledged_hash": GENESIS}


def test_only_the_tokens_workstation(client):
    h = login(client, "coord", "ws-a")
    r = post(client, h, chain(1, workstation="ws-b"), workstation="ws-b")
    assert r.status_code == 403
    assert client.post("/v1/audit", json={"workstation": WS, "entries": []}).status_code == 401


def test_chains_are_per_workstation(client):
    a, b = login(client, "coord", "ws-a"), login(client, "fnurse", "ws-b")
    assert post(client, a, chain(2, workstation="ws-a"), workstation="ws-a").json()["acknowledged_seq"] == 2
    assert post(client, b, chain(3, workstation="ws-b"), workstation="ws-b").json()["acknowledged_seq"] == 3


def test_real_workstation_log_is_accepted(client, ws):
    """Entries exactly as the workstation's AuditLog writes them."""
    for i in range(3):
        ws.audit.record(user="coord", role="coordinator", action="patient.read", entity="patients", record_ids=[f"p{i}"])
    events = ws.audit.entries()
    entries = [{f: (list(v) if isinstance(v := getattr(e, f), tuple) else v) for f in EXPORT_FIELDS} for e in events]
    assert set(EXPORT_FIELDS) <= {f.name for f in dataclasses.fields(events[0])}
    h = login(client, "coord", ws.workstation_id)
    r = post(client, h, entries, workstation=ws.workstation_id)
    assert r.status_code == 200, r.text
    assert r.json() == {"acknowledged_seq": events[-1].seq, "acknowledged_hash": events[-1].hash}
