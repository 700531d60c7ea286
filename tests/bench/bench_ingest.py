"""FHIR ingest of the demo set, end to end, next to a floor for the same bytes.

* floor: each ndjson file of ``resources/demo`` (read beforehand with the importer's
  ``iter_lines``, in its file order), ``json.loads`` per line and one ``executemany`` of (id,
  type, json text) into a plain SQLite file with the cache's journal settings (WAL, synchronous
  FULL), one transaction per file.
* end to end: ``import_ndjson_dir`` into a fresh encrypted cache (``Cache.open`` with a raw key, as
  ``careops demo-seed`` does): parse, validate (fhir.resources R4B), map, write with
  ``origin="sync"`` (no outbox rows). Every run must accept every resource.

Best of three runs each (wall time), every run on a fresh database; the first end-to-end run also
pays for building the FHIR models' validators. Goals: >= 5,000 resources/s and at most 4x the
floor's time. The note gives CPU seconds too: on a shared machine they move less than wall time.
The breakdown is in CPU time: parse, validate and map as separate passes over the same lines;
"write+rest" is the rest of the best end-to-end run (reading lines, batching, the importer's
bookkeeping, SQL, encryption, commits).
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from app.cache.engine import connect_raw
from app.cache.store import Cache
from sync.fhir.bulk_import import import_ndjson_dir, iter_lines, ndjson_files
from sync.fhir.mappers import MAPPERS, MemoryLookup, check_references
from sync.fhir.parsing import parse_resource
from sync.fhir.validation import ElementMemo, memoized, model_validate
from tests.bench.common import Result

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "demo"
RUNS = 3
GOAL_RATE = 5_000
GOAL_RATIO = 4.0


def _demo_folder(scratch: Path) -> Path:
    if any(DEMO.glob("*.ndjson")):
        return DEMO
    from app.demo.generate import generate

    generate(scratch / "demo")  # the default seed: the same set `careops demo-generate` writes
    return scratch / "demo"


class _Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> _Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def _floor_once(files: list[list[bytes]], path: Path) -> _Clock:
    conn = connect_raw(path, None)
    try:
        conn.execute("CREATE TABLE resources (id TEXT NOT NULL, type TEXT NOT NULL, json TEXT NOT NULL,"
                     " PRIMARY KEY (type, id))")  # fmt: skip
        with _Clock() as clock:
            for lines in files:
                rows = []
                for raw in lines:
                    resource = json.loads(raw)
                    rows.append((resource["id"], resource["resourceType"], raw.decode()))
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO resources VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
        return clock
    finally:
        conn.close()

def _ingest_once(folder: Path, path: Path, expected: int) -> _Clock:
    cache = Cache.open(path, os.urandom(32))
    try:
        with _Clock() as clock:
            result = import_ndjson_dir(cache, folder)
    finally:
        cache.close()
    if result.accepted != expected or result.quarantined:
        raise AssertionError(f"ingest accepted {result.accepted} of {expected}, quarantined {result.quarantined}")
    return clock


def _cpu(fn: Callable[[], object]) -> float:
    with _Clock() as clock:
        fn()
    return clock.cpu


def _breakdown(lines: list[bytes]) -> tuple[float, float, float]:
    """CPU seconds to parse, validate and map all lines, each as its own warm pass."""

    def parse_all() -> None:
        for raw in lines:
            parse_resource(raw)

    parse = _cpu(parse_all)
    resources = [parse_resource(raw) for raw in lines]
    gc.freeze()  # the parsed set stays alive here, not in an import: keep it out of the collector's way
    try:
        def validate() -> None:
            with memoized(ElementMemo()):
                for r in resources:
                    model_validate(r["resourceType"], r)

        def map_all() -> None:  # what map_resource does besides validating
            lookup = MemoryLookup()
            for r in resources:
                mapped = MAPPERS[r["resourceType"]](r, lookup)
                check_references(mapped, lookup)
                lookup.remember(mapped)

        return parse, _cpu(validate), _cpu(map_all)
    finally:
        gc.unfreeze()


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as d:
        scratch = Path(d)
        folder = _demo_folder(scratch)
        files = [[raw for raw, _ in iter_lines(p)] for p in ndjson_files(folder)]
        lines = [raw for f in files for raw in f]
        n = len(lines)
        floors, ingests = [], []
        for i in range(RUNS):
            ingests.append(_ingest_once(folder, scratch / f"cache{i}.db", n))
            floors.append(_floor_once(files, scratch / f"floor{i}.db"))
        parse, valid, mapped = _breakdown(lines)
    floor = min(floors, key=lambda c: c.wall)
    ingest = min(ingests, key=lambda c: c.wall)
    rate, floor_rate, ratio = n / ingest.wall, n / floor.wall, ingest.wall / floor.wall
    cpu = ingest.cpu
    write = max(cpu - parse - valid - mapped, 0.0)
    shares = ", ".join(f"{name} {t / cpu:.0%}" for name, t in
                       (("parse", parse), ("validate", valid), ("map", mapped), ("write+rest", write)))  # fmt: skip
    walls = ", ".join(f"{c.wall:.2f}" for c in ingests)
    return [
        Result("ingest floor (json.loads + plain SQLite)", f"{floor_rate:,.0f} res/s"),
        Result("ingest end to end (SQLCipher)", f"{rate:,.0f} res/s", f">= {GOAL_RATE:,} res/s", rate >= GOAL_RATE,
               f"{n:,} demo resources, best of {RUNS} ({walls} s wall; the first builds the validators);"
               f" CPU {cpu:.2f} s: {shares}"),
        Result("ingest ratio end to end/floor", f"{ratio:.1f}x", f"<= {GOAL_RATIO:.1f}x", ratio <= GOAL_RATIO,
               f"wall {ingest.wall:.2f} s vs floor {floor.wall:.2f} s; CPU {cpu:.2f} s vs {floor.cpu:.2f} s"
               f" ({cpu / floor.cpu:.1f}x)"),
    ]  # fmt: skip
