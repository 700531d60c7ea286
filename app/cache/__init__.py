"""The encrypted local cache: SQLCipher through SQLAlchemy, migrations, outbox, change signal."""
