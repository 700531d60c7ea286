"""Alembic environment: always handed an open connection by app.cache.migrate."""

from alembic import context

from app.cache.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic revision --autogenerate` by a developer
    raise SystemExit("run migrations through app.cache.migrate with an open connection")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
