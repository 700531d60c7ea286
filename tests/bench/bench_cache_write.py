"""Cache write throughput, encrypted (SQLCipher) vs plain SQLite, same records, same code path.

Each write is a local unit of work (change + outbox row in one transaction), committed in batches
the way a sync apply or a bulk edit would, with the cache's durability settings (WAL, synchronous
FULL). Best of three runs per variant; goal: encrypted/plain time ratio at most 1.3.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
import time
from pathlib import Path

from app.cache.models import Patient, Referral
from app.cache.store import Cache
from tests.bench.common import Result

RECORDS = 20_000
BATCH = 500
RUNS = 3


def _records(rng: random.Random, n: int) -> list[tuple[dict, dict]]:
    out = []
    for i in range(n):
        pid = f"bench-p{i}"
        out.append((
            dict(id=pid, mrn=f"MRN{i:07d}", name=f"Given{rng.randrange(999)} Family{rng.randrange(9999)}",
                 birth_date=dt.date(1930 + rng.randrange(90), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                 sex=rng.choice(["female", "male"]), phone=f"555-01{rng.randrange(100):02d}"),
            dict(id=f"bench-r{i}", patient_id=pid, status="new", urgency=rng.choice(["routine", "urgent"]),
                 specialty="Cardiology", reason="Chest pain on exertion " * 3, letter_text="Dear colleague, " * 40),
        ))  # fmt: skip
    return out


def _once(key: bytes | None, rows) -> float:
    with tempfile.TemporaryDirectory() as d:
        cache = Cache.open(Path(d) / "cache.db", key)
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            with cache.unit_of_work(user="bench") as s:
                for p, r in rows[start : start + BATCH]:
                    s.add(Patient(**p))
                    s.add(Referral(**r))
        took = time.perf_counter() - started
        cache.close()
    return took


def run() -> list[Result]:
    rows = _records(random.Random(7), RECORDS)
    key = os.urandom(32)
    plain = min(_once(None, rows) for _ in range(RUNS))
    enc = min(_once(key, rows) for _ in range(RUNS))
    n = RECORDS * 2
    ratio = enc / plain
    return [
        Result("cache write, plain SQLite", f"{n / plain:,.0f} rec/s"),
        Result("cache write, SQLCipher", f"{n / enc:,.0f} rec/s"),
        Result("cache write ratio enc/plain", f"{ratio:.2f}x", "<= 1.30x", ratio <= 1.3,
               f"{n:,} records (+{n:,} outbox rows), batches of {BATCH * 2}, best of {RUNS}"),
    ]  # fmt: skip
