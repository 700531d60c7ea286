"""Schema changes are migrations: an older cache is upgraded in place and keeps its data."""

from __future__ import annotations

import os

from sqlalchemy import text

from app.cache.engine import make_engine
from app.cache.migrate import MIGRATIONS, current_revision, head_revision, upgrade
from app.cache.store import Cache


def test_upgrade_from_first_revision_keeps_data(tmp_path):
    key = os.urandom(32)
    path = tmp_path / "cache.db"
    engine = make_engine(path, key)
    with engine.begin() as conn:
        upgrade(conn, "0001")
        conn.execute(text("INSERT INTO patients (id, source, dirty, updated_at, mrn, name) "
                          "VALUES ('p1', 'local', 0, '2026-01-01 00:00:00', 'MRN0000001', 'Old Schema')"))  # fmt: skip
        assert current_revision(conn) == "0001"
    engine.dispose()
    cache = Cache.open(path, key)
    with cache.reader() as s:
        assert s.execute(text("SELECT name FROM patients")).scalar() == "Old Schema"
        assert current_revision(s.connection()) == head_revision()
        s.execute(text("SELECT count(*) FROM sync_conflicts")).scalar()
    cache.close()


def test_head_is_the_newest_revision_file():
    newest = max(p.name.split("_")[0] for p in (MIGRATIONS / "versions").glob("0*.py"))
    assert head_revision() == newest


def test_migrations_build_the_schema_the_models_declare(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.cache.models import Base

    engine = make_engine(tmp_path / "cache.db", os.urandom(32))
    with engine.begin() as conn:
        upgrade(conn)
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
