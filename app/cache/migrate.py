"""Alembic migrations, run in-process on an open connection (never drop-and-recreate)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, revision: str = "head") -> None:
    logging.getLogger("alembic").setLevel(logging.WARNING)  # it narrates every start at INFO
    command.upgrade(alembic_config(connection), revision)
