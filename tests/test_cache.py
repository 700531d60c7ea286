"""The encrypted cache: outbox in the same transaction, change signal, and every failure path."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from app.cache.models import OutboxEntry, Patient, Referral
from app.cache.store import Cache, key_check_value
from app.errors import CacheDamaged, DataFolderUnwritable, DiskFull, WrongKey
from app.workstation import open_workstation


def _patient(**kw) -> Patient:
    base = dict(mrn="MRN0000001", name="Testy McTestface", birth_date=dt.date(1970, 1, 2), sex="female")
    base.update(kw)
    return Patient(**base)


def test_local_change_writes_outbox_in_same_transaction(ws):
    with ws.cache.unit_of_work(user="u1") as s:
        p = _patient()
        s.add(p)
    with ws.cache.unit_of_work(user="u1") as s:
        s.get(Patient, p.id).phone = "555-0100"
    with ws.cache.reader() as s:
        rows = list(s.scalars(select(OutboxEntry).order_by(OutboxEntry.seq)))
        stored = s.get(Patient, p.id)
    assert [(r.op, r.entity, r.entity_id) for r in rows] == [("upsert", "patients", p.id)] * 2
    assert rows[1].changed_fields == ["phone"]
    assert rows[1].payload["phone"] == "555-0100"
    assert rows[0].user == "u1" and stored.dirty


def test_failed_transaction_leaves_neither_change_nor_outbox(ws):
    with pytest.raises(RuntimeError):
        with ws.cache.unit_of_work(user="u1") as s:
            s.add(_patient())
            s.flush()
            raise RuntimeError("boom")
    with ws.cache.reader() as s:
        assert s.scalars(select(Patient)).all() == []
        assert s.scalars(select(OutboxEntry)).all() == []


def test_sync_origin_writes_no_outbox_and_listeners_hear_commits(ws):
    heard = []
    ws.cache.add_listener(heard.append)
    with ws.cache.unit_of_work(user="sync", origin="sync") as s:
        p = _patient(source="ehr", remote_version="3")
        s.add(p)
    assert ws.cache.pending_outbox() == 0
    assert heard and heard[0].origin == "sync" and heard[0].changed == {"patients": frozenset({p.id})}


def test_delete_is_queued(ws):
    with ws.cache.unit_of_work(user="u") as s:
        p = _patient()
        s.add(p)
    with ws.cache.unit_of_work(user="u") as s:
        s.delete(s.get(Patient, p.id))
    with ws.cache.reader() as s:
        ops = [r.op for r in s.scalars(select(OutboxEntry).order_by(OutboxEntry.seq))]
    assert ops == ["upsert", "delete"]


def test_file_is_encrypted_and_plain_sqlite_cannot_open_it(ws):
    with ws.cache.unit_of_work(user="u") as s:
        s.add(_patient(name="Canaryname Zzyzx", mrn="MRN7777777"))
    ws.close()
    for f in ws.paths.home.iterdir():
        if f.is_file():
            data = f.read_bytes()
            assert b"Canaryname" not in data and b"MRN7777777" not in data, f.name
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(ws.paths.cache).execute("select * from sqlite_master").fetchall()
    assert subprocess.run(["grep", "-r", "Canaryname", str(ws.paths.home)], capture_output=True).returncode == 1


def test_reopen_keeps_data_and_migrations_are_idempotent(home):
    ws = open_workstation(home)
    with ws.cache.unit_of_work(user="u") as s:
        s.add(_patient())
    ws.close()
    ws = open_workstation(home)
    with ws.cache.reader() as s:
        assert len(s.scalars(select(Patient)).all()) == 1
    assert ws.cache.get_meta("nothing") is None
    ws.close()


def test_wrong_key_and_damaged_file_are_told_apart(tmp_path):
    path = tmp_path / "cache.db"
    key = os.urandom(32)
    Cache.open(path, key).close()
    with pytest.raises(WrongKey):
        Cache.open(path, os.urandom(32), key_check=key_check_value(key))
    with open(path, "r+b") as fh:  # scribble over the first pages
        fh.seek(0)
        fh.write(os.urandom(8192))
    with pytest.raises(CacheDamaged):
        Cache.open(path, key, key_check=key_check_value(key))


def test_truncated_file_is_reported_as_damaged(tmp_path):
    path = tmp_path / "cache.db"
    key = os.urandom(32)
    c = Cache.open(path, key)
    with c.unit_of_work(user="u") as s:
        for i in range(200):
            s.add(_patient(mrn=f"MRN{i:07d}", name=f"Name {i}"))
    c.close()
    with open(path, "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(CacheDamaged) as err:
        Cache.open(path, key, key_check=key_check_value(key))
    assert "re-sync" in err.value.user_text()


def test_full_disk_gives_clear_error_and_keeps_committed_data(tmpfs):
    folder = tmpfs("1m")
    path = folder / "cache.db"
    key = os.urandom(32)
    c = Cache.open(path, key)
    with c.unit_of_work(user="u") as s:
        s.add(_patient(mrn="MRN-KEEP"))
    with pytest.raises(DiskFull) as err:
        for batch in range(200):
            with c.unit_of_work(user="u") as s:
                for i in range(50):
                    s.add(Referral(patient_id=_first_patient(c), specialty="Cardiology", letter_text="x" * 2000))
    assert "disk is full" in str(err.value)
    c.close()
    reopened = Cache.open(path, key)
    with reopened.reader() as s:
        assert s.scalars(select(Patient.mrn)).all() == ["MRN-KEEP"]
    reopened.close()


def _first_patient(c: Cache) -> str:
    with c.reader() as s:
        return s.scalars(select(Patient.id)).first()


def test_read_only_data_folder_is_reported(tmpfs, monkeypatch):
    folder = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    monkeypatch.setenv("CAREOPS_HOME", str(folder))
    with pytest.raises(DataFolderUnwritable) as err:
        open_workstation(folder)
    assert "read-only" in str(err.value)


def test_data_folder_not_a_directory(tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DataFolderUnwritable):
        open_workstation(f / "home")
