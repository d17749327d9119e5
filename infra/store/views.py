"""Where the views live: a SQLite file beside the events, or the same PostgreSQL database."""

from __future__ import annotations

from infra.config.settings import Settings
from infra.security.keys import cipher_key, secret_fingerprint
from projections.db import Database, PostgresDatabase, SqliteDatabase
from projections.views import PROJECTIONS, ViewStore


def open_views(settings: Settings) -> Database:
    if settings.database_url:
        return PostgresDatabase(settings.database_url)
    return SqliteDatabase(settings.data_dir / "views.sqlite")


def view_store(settings: Settings, db: Database) -> ViewStore:
    fingerprint = secret_fingerprint(cipher_key(settings))
    return ViewStore(db, [cls(fingerprint) for cls in PROJECTIONS])
