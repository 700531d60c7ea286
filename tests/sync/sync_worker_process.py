"""A workstation process for the SIGKILL stress test (tests/sync/test_kill_stress.py).

    python -m tests.sync.sync_worker_process HOME HUB_URL SIDE_FILE PHASE_FILE [options]

Opens the workstation at HOME (key from CAREOPS_PASSPHRASE), then runs two threads until it is
killed (or ``--max-seconds`` pass):

* a writer making local changes through ``cache.unit_of_work(origin="local")``: creates and edits
  of Patient/Referral records with deterministic ids, 1-3 records per transaction, each setting a
  value that is unique over the whole run (``v<n>``, n = the change's number);
* the sync loop: ``SyncEngine.sync_once`` over and over (small push batches, so a kill lands in the
  middle of a push).

The side file says what was committed, append-only and fsynced, as tab-separated lines::

    intent     TXN N ENTITY ID OP FIELD VALUE     written (and fsynced) before the commit starts
    committed  TXN N ENTITY ID OP FIELD VALUE     written (and fsynced) after the commit returned

A kill between a commit and its ``committed`` lines leaves an intent without them; ``reconcile``
(used by the test, and by this script when it starts) then looks in the cache: either every change
of that transaction is there (-> appended as ``committed``, marked ``recovered``) or none is.

``--fork-server`` starts workers by fork instead (see ``fork_server``): the same process, minus a
second of start-up per round.

PHASE_FILE is a small shared map where each thread writes what it is doing (slot 0: sync, slot 1:
writer, then counters), so the test can tell where each kill landed. A line "ready PID" on stdout
means the workstation is open and both threads run.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.cache.models import Patient, Referral

ENTITIES = {"patients": Patient, "referrals": Referral}
UPDATE_FIELDS = {"patients": ("name", "phone"), "referrals": ("reason", "specialty")}
CREATE_FIELD = {"patients": "name", "referrals": "reason"}
PHASE_SLOT = 32
COUNTERS = ("cycles", "cycle_errors", "cache_busy", "writer_busy", "txns")


@dataclass(frozen=True)
class Op:
    txn: int
    n: int
    entity: str
    id: str
    op: str  # create | update
    field: str
    value: str

    def line(self, kind: str) -> str:
        return "\t".join((kind, str(self.txn), str(self.n), self.entity, self.id, self.op, self.field, self.value))

    @property
    def record(self) -> tuple[str, str]:
        return (self.entity, self.id)


def patient_id(i: int) -> str:
    return f"stress-p{i:03d}"


def referral_id(i: int) -> str:
    return f"stress-r{i:03d}"


# --- side file -------------------------------------------------------------------------------


@dataclass
class SideFile:
    committed: list[Op]
    recovered: set[int]  # txns whose commit was found in the cache, not written by the worker
    open_intent: list[Op]  # the last transaction's intent when no committed line follows it
    last_txn: int
    last_n: int


def read_side_file(path: Path) -> SideFile:
    committed: list[Op] = []
    intents: dict[int, list[Op]] = {}
    recovered: set[int] = set()
    done: set[int] = set()
    last_txn = last_n = 0
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]  # a torn last line (no newline): never fsynced as a whole
    for raw in lines:
        if not raw:
            continue
        kind, txn, n, entity, rid, op, fld, value = raw.split("\t")
        o = Op(int(txn), int(n), entity, rid, op, fld, value)
        last_txn, last_n = max(last_txn, o.txn), max(last_n, o.n)
        if kind == "intent":
            intents.setdefault(o.txn, []).append(o)
        elif kind in ("committed", "recovered"):
            committed.append(o)
            done.add(o.txn)
            if kind == "recovered":
                recovered.add(o.txn)
        else:
            raise ValueError(f"unknown side-file line kind {kind!r}")
    open_intent: list[Op] = []
    if intents:
        last = max(intents)
        if last not in done:
            open_intent = intents[last]
    # Intents other than the last one that never got committed lines were rolled back: checked by
    # reconcile() when they were the last one, so nothing to do here.
    return SideFile(committed, recovered, open_intent, last_txn, last_n)


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines in one write and make them durable before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def reconcile(path: Path, cache: Any) -> SideFile:
    """Settle the last transaction's intent against the cache: committed (all there) or not (none).

    Raises AssertionError when only part of the transaction is in the cache (a torn commit).
    """
    side = read_side_file(path)
    if not side.open_intent:
        return side
    present = []
    with cache.reader() as s:
        for o in side.open_intent:
            obj = s.get(ENTITIES[o.entity], o.id)
            present.append(obj is not None and getattr(obj, o.field) == o.value)
    if all(present):
        append_lines(path, [o.line("recovered") for o in side.open_intent])
        return read_side_file(path)
    if any(present):
        raise AssertionError(f"transaction {side.open_intent[0].txn} is only partly in the cache: {present}")
    return side  # never committed; the next transaction's intent supersedes it


# --- phases ------------------------------------------------------------------------------------


class Phases:
    """What each thread is doing right now, and a few counters, in a shared map (survives the kill).

    Slot 0: the sync thread's phase; slot 1: the writer's; then one 8-byte counter per COUNTERS.
    """

    SIZE = 2 * PHASE_SLOT + 8 * len(COUNTERS)

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, self.SIZE)
        self._map = mmap.mmap(fd, self.SIZE)
        os.close(fd)
        self._lock = threading.Lock()

    def set(self, slot: int, name: str) -> None:
        data = name.encode("ascii")[: PHASE_SLOT - 1].ljust(PHASE_SLOT, b"\0")
        self._map[slot * PHASE_SLOT : (slot + 1) * PHASE_SLOT] = data

    def count(self, name: str, by: int = 1) -> None:
        at = 2 * PHASE_SLOT + 8 * COUNTERS.index(name)
        with self._lock:
            value = int.from_bytes(self._map[at : at + 8], "little") + by
            self._map[at : at + 8] = value.to_bytes(8, "little")


def read_phases(path: Path) -> tuple[str, str, dict[str, int]]:
    """(sync phase, writer phase, counters) as the worker left them."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = b""
    raw = raw.ljust(Phases.SIZE, b"\0")
    names = [raw[i * PHASE_SLOT : (i + 1) * PHASE_SLOT].split(b"\0")[0].decode("ascii") for i in (0, 1)]
    base = 2 * PHASE_SLOT
    counters = {n: int.from_bytes(raw[base + 8 * i : base + 8 * i + 8], "little") for i, n in enumerate(COUNTERS)}
    return names[0], names[1], counters


def is_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked": a deferred transaction that read, then could not start writing."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc)


# --- the worker ---------------------------------------------------------------------------------


def plan_txn(txn: int, first_n: int, existing: set[tuple[str, str]], rng: random.Random, records: int) -> list[Op]:
    """1-3 changes on distinct records; creates a record the first time it is touched."""
    ops: list[Op] = []
    used: set[tuple[str, str]] = set()
    n = first_n
    for _ in range(1 + txn % 3):
        for _attempt in range(10):
            i = rng.randrange(records)
            entity = rng.choice(("patients", "referrals"))
            if entity == "referrals" and ("patients", patient_id(i)) not in existing:
                entity = "patients"  # a referral needs its patient first
            rid = patient_id(i) if entity == "patients" else referral_id(i)
            if (entity, rid) not in used:
                break
        else:
            break
        used.add((entity, rid))
        value = f"v{n}"
        if (entity, rid) in existing:
            ops.append(Op(txn, n, entity, rid, "update", rng.choice(UPDATE_FIELDS[entity]), value))
        else:
            ops.append(Op(txn, n, entity, rid, "create", CREATE_FIELD[entity], value))
        n += 1
    return ops


def apply_ops(session: Any, ops: list[Op]) -> None:
    for o in ops:
        i = int(o.id[-3:])
        if o.op == "create" and o.entity == "patients":
            session.add(Patient(id=o.id, mrn=f"MRN-STRESS-{i:03d}", name=o.value, birth_date=None))
        elif o.op == "create":
            session.add(Referral(id=o.id, patient_id=patient_id(i), specialty="Cardiology", urgency="routine",
                                 status="new", reason=o.value))  # fmt: skip
        else:
            setattr(session.get(ENTITIES[o.entity], o.id), o.field, o.value)


def writer(ws: Any, side_path: Path, phases: Phases, stop: threading.Event, seed: int, records: int,
           pause: float, start_delay: float | None) -> None:  # fmt: skip
    """Bursts of back-to-back transactions (an outbox backlog for the pusher), then a quiet spell."""
    side = reconcile(side_path, ws.cache)
    txn, n = side.last_txn + 1, side.last_n + 1
    rng = random.Random(f"{seed}:{txn}")
    with ws.cache.reader() as s:
        existing = {("patients", i) for i in s.scalars(select(Patient.id))}
        existing |= {("referrals", i) for i in s.scalars(select(Referral.id))}
    burst = rng.randint(5, 30)
    # Start a little later at times, so that the first sync cycle (the outbox a kill left behind,
    # then the feed) runs alone and a kill can land in it.
    phases.set(1, "wait")
    stop.wait(rng.uniform(0, pause / 2) if start_delay is None else start_delay)
    while not stop.is_set():
        ops = plan_txn(txn, n, existing, rng, records)
        phases.set(1, "intent")
        append_lines(side_path, [o.line("intent") for o in ops])
        phases.set(1, "commit")
        for attempt in range(100):
            try:
                with ws.cache.unit_of_work(user="demo-coordinator", origin="local") as s:
                    apply_ops(s, ops)
                break
            except OperationalError as exc:
                # The sync thread committed between this transaction's first read and its first
                # write (the cache's BEGIN is deferred): rolled back, so simply try again.
                if not is_busy(exc) or attempt == 99:
                    raise
                phases.count("writer_busy")
                time.sleep(0.001 * (1 + attempt % 10))
        phases.set(1, "record")
        append_lines(side_path, [o.line("committed") for o in ops])
        phases.count("txns")
        existing |= {o.record for o in ops}
        txn, n = txn + 1, n + len(ops)
        phases.set(1, "idle")
        burst -= 1
        if burst <= 0:
            time.sleep(rng.uniform(pause / 2, pause))
            burst = rng.randint(5, 30)


def make_client(url: str, workstation: str, phases: Phases) -> Any:
    from sync.hub_client import HubClient

    user, password = os.environ.get("CAREOPS_HUB_USER", "coord"), os.environ.get("CAREOPS_HUB_PASSWORD", "pw-coord")

    class PhasedClient(HubClient):
        def push(self, changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
            phases.set(0, "push:http")
            out = super().push(changes)
            phases.set(0, "push:record")
            return out

        def pull(self, since: int, limit: int) -> dict[str, Any]:
            phases.set(0, "pull:http")
            out = super().pull(since, limit)
            phases.set(0, "pull:apply")
            return out

        def push_audit(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
            phases.set(0, "audit:http")
            return super().push_audit(entries)

    return PhasedClient(url, lambda: (user, password), workstation, timeout=10.0)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("home", type=Path)
    p.add_argument("hub_url")
    p.add_argument("side_file", type=Path)
    p.add_argument("phase_file", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--records", type=int, default=40, help="patients (and as many referrals) to work on")
    p.add_argument("--push-batch", type=int, default=20)
    p.add_argument("--pull-page", type=int, default=1000)
    p.add_argument("--pause", type=float, default=0.2, help="longest quiet spell between bursts of transactions (s)")
    p.add_argument("--writer-delay", type=float, default=None,
                   help="seconds before the first local change (default: random, up to half of --pause)")  # fmt: skip
    p.add_argument("--max-seconds", type=float, default=30.0, help="exit on its own after this long")
    p.add_argument("--fork-server", action="store_true",
                   help="import once, then fork one worker per 'run SEED' line on stdin (see fork_server)")  # fmt: skip
    args = p.parse_args(argv)
    if args.fork_server:
        return fork_server(args)
    return run_worker(args)


def fork_server(args: argparse.Namespace) -> int:
    """Start workers without paying for interpreter start-up and imports (~1 s) each time.

    For every ``run SEED [WRITER_DELAY]`` line on stdin this process forks a worker (a separate
    process with its own cache connections, opened after the fork: killing it is killing a
    workstation process), which prints ``ready PID``; when the worker ends (killed, normally) this
    prints ``exit PID STATUS`` (STATUS: the exit code, or minus the signal number).
    """
    import app.workstation  # noqa: F401 - imported once, before any fork
    import sync.engine
    import sync.hub_client  # noqa: F401

    print("server", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd != "run":
            continue
        args.seed = int(rest[0]) if rest else 0
        args.writer_delay = float(rest[1]) if len(rest) > 1 else None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 70
            try:
                code = run_worker(args)
            except BaseException:  # noqa: BLE001
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        print(f"exit {pid} {code}", flush=True)
    return 0


def run_worker(args: argparse.Namespace) -> int:
    from app.workstation import open_workstation
    from sync.engine import SyncEngine
    from sync.hub_client import Permanent, Transient

    phases = Phases(args.phase_file)
    phases.set(0, "open")
    phases.set(1, "open")
    ws = open_workstation(args.home)
    client = make_client(args.hub_url, ws.workstation_id, phases)
    engine = SyncEngine(ws.cache, client, push_batch=args.push_batch, pull_page=args.pull_page)
    stop = threading.Event()
    errors: list[str] = []

    def guarded(fn: Any, *a: Any) -> None:
        try:
            fn(*a)
        except BaseException:  # noqa: BLE001 - reported on stderr for the test to show
            errors.append(traceback.format_exc())
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            stop.set()

    w = threading.Thread(target=guarded, args=(writer, ws, args.side_file, phases, stop, args.seed, args.records,
                                              args.pause, args.writer_delay), name="writer")  # fmt: skip
    w.start()
    print(f"ready {os.getpid()}", flush=True)
    deadline = time.monotonic() + args.max_seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            phases.count("cycles")
            try:
                engine.sync_once()
            except (Transient, Permanent) as exc:
                phases.count("cycle_errors")
                print(f"sync: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                phases.set(0, "backoff")
                time.sleep(0.05)
            except Exception as exc:  # noqa: BLE001 - reported, the loop goes on
                if is_busy(exc):
                    phases.count("cache_busy")  # see writer(): rolled back, the next cycle resends
                else:
                    phases.count("cycle_errors")
                    print("sync cycle failed:\n" + traceback.format_exc(), file=sys.stderr, flush=True)
                    phases.set(0, "backoff")
                    time.sleep(0.05)
            phases.set(0, "idle")
            time.sleep(0.002)
    finally:
        stop.set()
        w.join()
        client.close()
        ws.close()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
