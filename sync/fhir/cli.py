"""``careops ehr ...``: pull from, export from, import into and write back to the EHR; the key set.

``register(subparsers, open_workstation)`` adds the ``ehr`` command to the ``careops`` parser. The
connection comes from ``[ehr]`` in config.toml; the options override it for one run. Counts are
printed per resource type; ``--json`` prints one JSON object instead (for scripts).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.config import EhrSettings

CLI_USER = "cli"


def _settings(ws: Any, args: argparse.Namespace) -> EhrSettings:
    overrides = {
        "base_url": args.base, "vendor": args.vendor, "auth": args.auth, "client_id": args.client_id,
        "scope": args.scope, "practice": args.practice, "key_alg": getattr(args, "alg", None),
    }
    return dataclasses.replace(ws.settings.ehr, **{k: v for k, v in overrides.items() if v is not None})


def _print_counts(counts: dict[str, int], as_json: bool, heading: str) -> None:
    if as_json:
        print(json.dumps(counts, separators=(", ", ": ")))
        return
    print(heading)
    for name, n in counts.items():
        print(f"  {name:22} {n:7}")


def _audit(ws: Any, action: str, detail: str) -> None:
    """Bringing PHI into the cache from the command line is an access like any other: on record."""
    ws.audit.record(user=CLI_USER, role="administrator", action=action, entity="ehr", detail=detail[:400])


def cmd_pull(args: argparse.Namespace, open_ws: Callable[[], Any]) -> int:
    from sync.fhir.connect import connect
    from sync.fhir.pull import EhrPull

    ws = open_ws()
    try:
        ehr = _settings(ws, args)
        _audit(ws, "ehr.pull", f"{ehr.vendor} {ehr.base_url}")
        with connect(ehr, ws.cache) as client:
            result = EhrPull(client, ws.cache, full=args.full).run()
    finally:
        ws.close()
    counts = result.as_counts()
    _print_counts(counts, args.json, f"pulled {sum(result.imported.counts.values())} resources "
                                     f"in {result.imported.seconds:.1f} s")
    if not args.json:
        for rtype, why in result.skipped.items():
            print(f"  skipped {rtype}: {why}")
        if result.warnings:
            print(f"  the EHR added {len(result.warnings)} kinds of warning to its answers: {', '.join(result.warnings)}")
    return 0


def cmd_export(args: argparse.Namespace, open_ws: Callable[[], Any]) -> int:
    from sync.fhir.bulk_export import export_into_cache
    from sync.fhir.connect import connect

    ws = open_ws()
    try:
        ehr = _settings(ws, args)
        _audit(ws, "ehr.export", f"{ehr.vendor} {ehr.base_url}")
        level = "group" if args.group else "system"
        with connect(ehr, ws.cache) as client:
            result = export_into_cache(client, ws.cache, level=level, group_id=args.group, full=args.full)
    finally:
        ws.close()
    counts = dict(sorted(result.imported.counts.items())) | {"quarantined": result.imported.quarantined}
    _print_counts(counts, args.json, f"exported and imported {result.imported.accepted} resources")
    return 0


def cmd_import(args: argparse.Namespace, open_ws: Callable[[], Any]) -> int:
    from sync.fhir.bulk_import import import_ndjson_dir

    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"no such folder: {folder}", file=sys.stderr)
        return 2
    ws = open_ws()
    try:
        _audit(ws, "ehr.import", "bulk ndjson folder")
        result = import_ndjson_dir(ws.cache, folder)
    finally:
        ws.close()
    counts = dict(sorted(result.counts.items())) | {"quarantined": result.quarantined}
    _print_counts(counts, args.json, f"imported {result.accepted} resources in {result.seconds:.1f} s")
    return 0


def cmd_push(args: argparse.Namespace, open_ws: Callable[[], Any]) -> int:
    from sync.fhir.connect import connect
    from sync.fhir.writeback import EhrWriter

    ws = open_ws()
    try:
        with connect(_settings(ws, args), ws.cache) as client:
            result = EhrWriter(client, ws.cache).run()
    finally:
        ws.close()
    _print_counts(dict(sorted(result.counts.items())), args.json, "write-back")
    if result.stopped:
        print(f"stopped early: {result.stopped}", file=sys.stderr)
        return 1
    return 0


def cmd_jwks(args: argparse.Namespace, open_ws: Callable[[], Any]) -> int:
    from sync.fhir.signing_key import jwks_json

    ws = open_ws()
    try:
        print(jwks_json(ws.cache, args.alg or ws.settings.ehr.key_alg))
    finally:
        ws.close()
    return 0


def _connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="the EHR's FHIR R4 base URL (default: [ehr] base_url)")
    p.add_argument("--vendor", choices=("generic", "epic", "oracle", "athena"), help="vendor profile")
    p.add_argument("--auth", choices=("none", "backend", "launch"),
                   help="none, SMART Backend Services, or SMART App Launch (browser sign-in)")
    p.add_argument("--client-id", help="the client id the EHR registered")
    p.add_argument("--scope", help="the SMART scopes to ask for")
    p.add_argument("--practice", help="athenahealth practice id")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers: argparse._SubParsersAction, open_ws: Callable[[], Any]) -> None:
    """Add ``ehr pull|export|import|push|jwks``; each opens the workstation with ``open_ws``."""
    ehr = subparsers.add_parser("ehr", help="read from and write to the EHR over FHIR R4")
    cmds = ehr.add_subparsers(dest="ehr_cmd", required=True)

    def command(name: str, fn: Callable[[argparse.Namespace, Callable[[], Any]], int], text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=text)
        p.set_defaults(func=lambda args: fn(args, open_ws))
        return p

    p = command("pull", cmd_pull, "pull what changed in the EHR into the cache at CAREOPS_HOME")
    _connection_options(p)
    p.add_argument("--full", action="store_true", help="ignore the last pull's high-water marks")

    p = command("export", cmd_export, "run a Bulk Data $export on the EHR and import it")
    _connection_options(p)
    p.add_argument("--group", help="export this Group (a patient panel) instead of the whole system")
    p.add_argument("--full", action="store_true", help="everything, not just what changed since the last export")

    p = command("import", cmd_import, "import a folder of Bulk Data ndjson files")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = command("push", cmd_push, "send queued changes (Task status, Communication, Appointment) to the EHR")
    _connection_options(p)

    p = command("jwks", cmd_jwks, "print the public key set to register with the EHR (SMART Backend Services)")
    p.add_argument("--alg", choices=("RS384", "ES384"), help="key type (default: [ehr] key_alg)")
