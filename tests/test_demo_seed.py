"""`careops demo-seed`: the demo set lands in the cache and no demo PHI is findable on disk."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.cache.models import CheckIn, Encounter, FollowUpPlan, OutboxEntry, Patient, Referral
from app.cli import main
from app.demo.generate import generate
from app.workstation import open_workstation


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out, scale=0.05)
    return out


def _phi_of(demo_dir: Path) -> set[str]:
    values = set()
    for line in (demo_dir / "Patient.ndjson").read_text().splitlines():
        p = json.loads(line)
        values.add(p["identifier"][0]["value"])
        values.add(p["birthDate"])
        name = p["name"][0]
        values.add(" ".join([*name.get("given", []), name["family"]]))
        values.add(name["family"])
    return values


def test_seed_then_no_phi_is_greppable(home, demo_dir, capsys):
    assert main(["demo-seed", "--source", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert "quarantined 0" in out
    ws = open_workstation(home)
    with ws.cache.reader() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 30
        assert s.scalar(select(func.count()).select_from(Referral)) == 50
        assert s.scalar(select(func.count()).select_from(Encounter)) == 1000
        assert s.scalar(select(func.count()).select_from(FollowUpPlan)) == 11
        # one per CommunicationRequest, plus a patient's call in between
        assert s.scalar(select(func.count()).select_from(CheckIn)) == 32 + 1
        statuses = set(s.scalars(select(CheckIn.status)))
        assert {"due", "done", "missed", "cancelled"} <= statuses
        assert s.scalar(select(func.count()).select_from(OutboxEntry)) == 0  # inbound is not a local change
    assert {u for u, _, _ in ws.users.list()} >= {"demo-coordinator", "demo-admin"}
    ws.close()

    files = [f for f in home.rglob("*") if f.is_file()]
    assert any(f.name == "cache.db" for f in files)
    phi = _phi_of(demo_dir)
    assert len(phi) > 80
    for value in phi:
        r = subprocess.run(["grep", "-r", "-F", "-l", "-a", value, str(home)], capture_output=True, text=True)
        assert r.returncode == 1, f"demo PHI found in {r.stdout.strip()}"

    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        sqlite3.connect(home / "cache.db").execute("SELECT name FROM sqlite_master").fetchall()


def test_seed_twice_is_idempotent(home, demo_dir, capsys):
    assert main(["demo-seed", "--source", str(demo_dir)]) == 0
    assert main(["demo-seed", "--source", str(demo_dir)]) == 0
    ws = open_workstation(home)
    with ws.cache.reader() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 30
    ws.close()


def test_seed_without_data_says_what_to_do(home, tmp_path, capsys):
    assert main(["demo-seed", "--source", str(tmp_path)]) == 2
    assert "careops demo-generate" in capsys.readouterr().err
