"""The one way the node opens its SQLite databases: durable writes (WAL, synchronous=FULL), explicit
transactions (autocommit off at the driver), and its schema created in one transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30.0


def open_database(path: Path, schema: str) -> sqlite3.Connection:
    """Opens (creating its folder and tables when missing) the database at `path`. Raises sqlite3.Error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    db.executescript("BEGIN IMMEDIATE;" + schema + "COMMIT;")
    return db
