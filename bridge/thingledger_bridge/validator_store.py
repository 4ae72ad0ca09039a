"""A validator's own SQLite state (WAL, synchronous=FULL): how far it has checked each source chain, and
which messages it signed (the signatures themselves live in the shared signature store)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .database import open_database
from .errors import BridgeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    chain_id INTEGER PRIMARY KEY,
    next_block INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS signed (
    id TEXT PRIMARY KEY,
    src_chain_id INTEGER NOT NULL,
    dst_chain_id INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    digest TEXT NOT NULL,
    signed_at REAL NOT NULL
);
"""


class ValidatorStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = open_database(path, SCHEMA)
        except sqlite3.Error as error:
            raise BridgeError(f"{path}: cannot open the validator database ({error})") from None

    def close(self) -> None:
        self.db.close()

    def cursor(self, chain_id: int) -> int | None:
        row = self.db.execute("SELECT next_block FROM cursors WHERE chain_id = ?", (chain_id,)).fetchone()
        return None if row is None else int(row[0])

    def advance(self, chain_id: int, next_block: int, signed: list[tuple[str, int, int, int, str]]) -> None:
        """In one transaction: records the messages signed in a range ((id, src, dst, nonce, digest) each) and
        moves the chain's cursor past the range."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR IGNORE INTO signed (id, src_chain_id, dst_chain_id, nonce, digest, signed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(*item, now) for item in signed],
            )
            self.db.execute(
                "INSERT INTO cursors (chain_id, next_block, updated_at) VALUES (?, ?, ?) ON CONFLICT (chain_id)"
                " DO UPDATE SET next_block = excluded.next_block, updated_at = excluded.updated_at",
                (chain_id, next_block, now),
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def signed_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM signed").fetchone()[0])
