"""Tests of the central service (sync/hub) and the helpers they share."""

from __future__ import annotations

from typing import Any

from app.security.roles import Role

# username -> role; the password of each is "pw-" + username
USERS = {
    "coord": Role.COORDINATOR,
    "charge": Role.CHARGE_NURSE,
    "supply": Role.SUPPLY_MANAGER,
    "fnurse": Role.FOLLOWUP_NURSE,
    "analyst": Role.ANALYST,
    "admin": Role.ADMINISTRATOR,
}
WS = "ws-test-1"


def login(client, username: str, workstation: str = WS) -> dict[str, str]:
    r = client.post("/v1/login", json={"username": username, "password": f"pw-{username}", "workstation": workstation})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def change(
    key: str, entity_id: str, payload: dict[str, Any] | None = None, *, entity: str = "referrals",
    op: str = "upsert", fields: list[str] | None = None, base: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "idempotency_key": key, "entity": entity, "entity_id": entity_id, "op": op,
        "payload": payload if payload is not None else {}, "changed_fields": fields or [], "base_version": base,
    }  # fmt: skip


def push(client, headers: dict[str, str], *changes: dict[str, Any], workstation: str = WS):
    return client.post("/v1/changes", json={"workstation": workstation, "changes": list(changes)}, headers=headers)


def push_ok(client, headers: dict[str, str], *changes: dict[str, Any], workstation: str = WS) -> list[dict]:
    r = push(client, headers, *changes, workstation=workstation)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def referral(entity_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": entity_id, "patient_id": "p1", "status": "new", "specialty": "cardiology", **fields}
