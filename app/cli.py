"""``careops``: headless administration and automation.

Every command that opens the cache takes the data folder from CAREOPS_HOME and the passphrase (where
no keychain exists) from CAREOPS_PASSPHRASE or an interactive prompt. Known problems print a message
and a way out and exit with status 2; no tracebacks for conditions a user can act on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import logging
import os
import sys
import time
from pathlib import Path

from app import APP_NAME, __version__
from app.config import Paths, default_home, load_settings
from app.errors import KnownError, WrongPassphrase
from app.logs import Safe, install_logging
from app.security.roles import Role
from app.triage_cli import register as register_triage
from sync.fhir.cli import register as register_ehr
from sync.hub.cli import register as register_hub

logger = logging.getLogger(__name__)
DEMO_DIR = Path(__file__).resolve().parent.parent / "resources" / "demo"


def _passphrase(prompt: str = "Cache passphrase: ", env: str = "CAREOPS_PASSPHRASE") -> str | None:
    value = os.environ.get(env)
    if value is not None:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass(prompt)
    return None


def _open():  # -> Workstation
    from app.workstation import open_workstation

    home = default_home()
    try:
        return open_workstation(home, passphrase=os.environ.get("CAREOPS_PASSPHRASE"))
    except WrongPassphrase:
        if os.environ.get("CAREOPS_PASSPHRASE") is None and sys.stdin is not None and sys.stdin.isatty():
            return open_workstation(home, passphrase=getpass.getpass("Cache passphrase: "))
        raise


# -- commands ---------------------------------------------------------------------------------


def cmd_demo_generate(args: argparse.Namespace) -> int:
    from app.demo.generate import generate

    started = time.perf_counter()
    counts = generate(Path(args.out), seed=args.seed)
    print(f"wrote {sum(counts.values())} resources to {args.out} in {time.perf_counter() - started:.1f} s")
    for rtype, n in sorted(counts.items()):
        print(f"  {rtype:20} {n:7}")
    return 0


def cmd_demo_seed(args: argparse.Namespace) -> int:
    from sync.fhir.bulk_import import import_ndjson_dir

    source = Path(args.source)
    if not any(source.glob("*.ndjson")):
        print(f"no demo data in {source}: run `careops demo-generate` first", file=sys.stderr)
        return 2
    ws = _open()
    try:
        ws.users.ensure_demo_users()
        started = time.perf_counter()
        result = import_ndjson_dir(ws.cache, source)
        took = time.perf_counter() - started
        counts = dict(result.counts)
        print(f"seeded {sum(counts.values())} records into {ws.paths.cache} in {took:.1f} s; quarantined {result.quarantined}")
        for rtype, n in sorted(counts.items()):
            print(f"  {rtype:20} {n:7}")
    finally:
        ws.close()
    return 0


def cmd_rekey(args: argparse.Namespace) -> int:
    from app.workstation import key_store, open_workstation, rotate_key

    home = default_home()
    paths = Paths(home)
    settings = load_settings(paths)
    store = key_store(paths, settings, _passphrase())
    ws = open_workstation(home, store=store)
    new_pass = os.environ.get("CAREOPS_NEW_PASSPHRASE")
    new_store = key_store(paths, settings, new_pass) if new_pass else None
    ws.audit.record(user="cli", role="administrator", action="keys.rotate", entity="cache")
    rotate_key(paths, store, ws.cache, new_store)
    # Reopen with the new key to prove it works before reporting success.
    open_workstation(home, store=new_store or store).close()
    print("cache key rotated")
    return 0


def _parse_since(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise KnownError(f"--since must be a date like 2026-01-31, not {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    ws = _open()
    try:
        result = ws.audit.verify()
    finally:
        ws.close()
    if result.ok:
        print(f"audit chain intact: {result.checked} entries")
        return 0
    print(f"audit chain BROKEN at entry {result.first_bad_seq}: {result.problem}", file=sys.stderr)
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    ws = _open()
    try:
        text = ws.audit.export(args.format, _parse_since(args.since))
        ws.audit.record(user="cli", role="administrator", action="audit.export", entity="audit_log", detail=args.format)
    finally:
        ws.close()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    password = _passphrase("Password for the new user: ", env="CAREOPS_NEW_USER_PASSWORD")
    if not password:
        print("set CAREOPS_NEW_USER_PASSWORD or run interactively", file=sys.stderr)
        return 2
    ws = _open()
    try:
        ws.users.add(args.username, args.name or args.username, args.role, password)
        ws.audit.record(user="cli", role="administrator", action="users.add", entity="users", record_ids=[args.username])
    finally:
        ws.close()
    print(f"user {args.username} added as {args.role}")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    ws = _open()
    try:
        for username, name, role in ws.users.list():
            print(f"{username:24} {role.value:16} {name}")
    finally:
        ws.close()
    return 0


def cmd_cache_reset(args: argparse.Namespace) -> int:
    """Move a damaged or unreadable cache aside (kept for investigation) so a fresh one can sync."""
    paths = Paths(default_home())
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    moved = []
    for f in [paths.cache, paths.cache.with_name("cache.db-wal"), paths.cache.with_name("cache.db-shm"), paths.key_check]:
        if f.exists():
            target = f.with_name(f"{f.name}.aside-{stamp}")
            f.rename(target)
            moved.append(target.name)
    print("moved aside: " + (", ".join(moved) or "nothing"))
    return 0


def cmd_screenshots(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from app.screenshots import render_all

    ws = _open()
    try:
        ws.users.ensure_demo_users()
        for path in render_all(ws, Path(args.dir)):
            print(path)
    finally:
        ws.close()
    return 0


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="careops", description=f"{APP_NAME} administration")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("demo-generate", help="write the synthetic FHIR R4 demo data set")
    g.add_argument("--out", default=str(DEMO_DIR))
    g.add_argument("--seed", type=int, default=20261125)
    g.set_defaults(func=cmd_demo_generate)

    s = sub.add_parser("demo-seed", help="load the demo data set into the cache at CAREOPS_HOME")
    s.add_argument("--source", default=str(DEMO_DIR))
    s.set_defaults(func=cmd_demo_seed)

    r = sub.add_parser("rekey", help="re-encrypt the cache under a new key (CAREOPS_NEW_PASSPHRASE to change it)")
    r.set_defaults(func=cmd_rekey)

    a = sub.add_parser("audit", help="verify or export the audit log").add_subparsers(dest="audit_cmd", required=True)
    av = a.add_parser("verify", help="check the hash chain; exit 1 naming the first bad entry")
    av.set_defaults(func=cmd_audit_verify)
    ae = a.add_parser("export", help="export entries for compliance review")
    ae.add_argument("--since", help="ISO date or datetime (UTC if no offset)")
    ae.add_argument("--format", choices=("csv", "json"), default="csv")
    ae.add_argument("--output", "-o", help="file to write (default: stdout)")
    ae.set_defaults(func=cmd_audit_export)

    u = sub.add_parser("users", help="manage workstation users").add_subparsers(dest="users_cmd", required=True)
    ua = u.add_parser("add", help="add a user (password from CAREOPS_NEW_USER_PASSWORD or a prompt)")
    ua.add_argument("username")
    ua.add_argument("--role", required=True, choices=[r.value for r in Role])
    ua.add_argument("--name")
    ua.set_defaults(func=cmd_users_add)
    u.add_parser("list", help="list users").set_defaults(func=cmd_users_list)

    c = sub.add_parser("cache", help="local cache maintenance").add_subparsers(dest="cache_cmd", required=True)
    c.add_parser("reset", help="move the cache aside so it can be rebuilt").set_defaults(func=cmd_cache_reset)

    register_hub(sub)
    register_ehr(sub, _open)
    register_triage(sub)

    sc = sub.add_parser("screenshots", help="render every main page to DIR/<page>.png")
    sc.add_argument("dir")
    sc.set_defaults(func=cmd_screenshots)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    home = default_home()
    log_dir = Paths(home).logs if home.exists() or args.command != "demo-generate" else None
    try:
        install_logging(log_dir, logging.DEBUG if args.verbose else logging.INFO, stderr=args.verbose)
    except OSError:
        install_logging(None, logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KnownError as exc:
        print(f"error: {exc.user_text()}", file=sys.stderr)
        logger.info("command %s failed: %s", Safe(args.command), Safe(type(exc).__name__))
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
