"""``careops hub ...``: run the central service and manage its users.

``register(subparsers)`` adds the ``hub`` command to the ``careops`` parser; nothing else is needed.
The database URL comes from ``--db`` or CAREOPS_HUB_DB (keeps a password off the command line).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from app.errors import KnownError
from app.security.roles import Role

DB_ENV = "CAREOPS_HUB_DB"
PASSWORD_ENV = "CAREOPS_NEW_USER_PASSWORD"


def _db_url(args: argparse.Namespace) -> str:
    url = args.db or os.environ.get(DB_ENV)
    if not url:
        raise KnownError(
            f"No database given: pass --db URL or set {DB_ENV}.",
            "Use sqlite:///path/to/hub.db for one site, postgresql+psycopg://user@host/db for a shared one.",
        )
    return url


def cmd_hub_serve(args: argparse.Namespace) -> int:
    from sync.hub.server import serve

    serve(_db_url(args), args.host, args.port, args.tls_cert, args.tls_key)
    return 0


def cmd_hub_add_user(args: argparse.Namespace) -> int:
    from sync.hub.auth import add_user
    from sync.hub.db import open_database

    password = os.environ.get(PASSWORD_ENV)
    if password is None and sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.username}: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ; nothing changed", file=sys.stderr)
            return 2
    if not password:
        print(f"set {PASSWORD_ENV} or run interactively", file=sys.stderr)
        return 2
    engine = open_database(_db_url(args))
    try:
        created = add_user(engine, args.username, args.name or args.username, args.role, password)
    finally:
        engine.dispose()
    print(f"hub user {args.username} {'added' if created else 'updated'} as {args.role}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``hub serve`` and ``hub add-user`` to a parser's subcommands (each sets ``func``)."""
    hub = subparsers.add_parser("hub", help="run the central service and manage its users")
    cmds = hub.add_subparsers(dest="hub_cmd", required=True)

    s = cmds.add_parser("serve", help="serve the central service (TLS required beyond loopback)")
    s.add_argument("--db", help=f"database URL (default: ${DB_ENV}): sqlite:///path or postgresql+psycopg://...")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    s.add_argument("--tls-cert", help="PEM certificate (chain); required with --tls-key beyond loopback")
    s.add_argument("--tls-key", help="PEM private key of the certificate")
    s.set_defaults(func=cmd_hub_serve)

    a = cmds.add_parser("add-user", help=f"add or update a user of the service (password from {PASSWORD_ENV} or a prompt)")
    a.add_argument("username")
    a.add_argument("--role", required=True, choices=[r.value for r in Role])
    a.add_argument("--name", help="display name (default: the username)")
    a.add_argument("--db", help=f"database URL (default: ${DB_ENV})")
    a.set_defaults(func=cmd_hub_add_user)
