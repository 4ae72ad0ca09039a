"""The relayer's durable state in SQLite (WAL, synchronous=FULL): a cursor per source chain, the messages it
found with their state, the validators' signatures it collected, and every transaction it submitted (hash AND
signed raw transaction, recorded before broadcast).

Every state change is one small method running in one transaction. Message states:

    pending ──submit──> submitted ──receipt──> delivered | failed (recipient reverted)
       ^  │                 │
       │  └─park──> parked  └─revert / lost──> pending (backoff) or parked (after max_attempts)
       └──unpark────┘
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .database import open_database
from .errors import BridgeError
from .messages import Message, SentLog, hex_id

SCHEMA_VERSION = 1
STATES = ("pending", "submitted", "delivered", "failed", "parked")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
    chain_id INTEGER PRIMARY KEY,
    next_block INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    nonce INTEGER NOT NULL,
    src_chain_id INTEGER NOT NULL,
    src_relay TEXT NOT NULL,
    sender TEXT NOT NULL,
    dst_chain_id INTEGER NOT NULL,
    dst_relay TEXT NOT NULL,
    recipient TEXT NOT NULL,
    gas_limit INTEGER NOT NULL,
    payload BLOB NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    log_index INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'submitted', 'delivered', 'failed', 'parked')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    last_error TEXT,
    delivered_by TEXT,
    seen_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_lane ON messages (state, src_chain_id, dst_chain_id, nonce);
CREATE TABLE IF NOT EXISTS signatures (
    message_id TEXT NOT NULL REFERENCES messages (id),
    validator TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (message_id, validator)
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL REFERENCES messages (id),
    kind TEXT NOT NULL CHECK (kind IN ('deliver', 'retry')),
    chain_id INTEGER NOT NULL,
    account TEXT NOT NULL,
    account_nonce INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    raw_tx BLOB NOT NULL,
    gas INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('recorded', 'broadcast', 'mined', 'reverted', 'rejected', 'dropped')),
    created_at REAL NOT NULL,
    broadcast_at REAL,
    block_number INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS submissions_by_message ON submissions (message_id);
"""


@dataclass(frozen=True)
class Submission:
    id: int
    message_id: str
    kind: str
    chain_id: int
    account: str
    account_nonce: int
    tx_hash: bytes
    raw_tx: bytes
    gas: int
    status: str
    created_at: float
    broadcast_at: float | None  # the last broadcast attempt (accepted or refused), None before the first
    block_number: int | None
    error: str | None

    @property
    def open(self) -> bool:
        """Whether the transaction may still be mined (recorded or broadcast, no receipt yet)."""
        return self.status in ("recorded", "broadcast")


@dataclass(frozen=True)
class MessageRow:
    id: str
    message: Message
    state: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    delivered_by: str | None
    block_number: int
    source_tx_hash: str
    seen_at: float
    updated_at: float
    tx_hashes: tuple[str, ...]

    def to_json(self, destination_status: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "src_chain_id": self.message.src_chain_id,
            "dst_chain_id": self.message.dst_chain_id,
            "nonce": self.message.nonce,
            "sender": self.message.sender,
            "recipient": self.message.recipient,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "tx_hashes": list(self.tx_hashes),
            "destination_status": destination_status,
        }


class RelayerStore:
    """The relayer's SQLite database."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._depth = 0
        try:
            self.db = open_database(path, SCHEMA)
            with self.transaction():
                row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise BridgeError(f"{path}: database schema version {row[0]}, this relayer knows {SCHEMA_VERSION}")
        except sqlite3.Error as error:
            raise BridgeError(f"{path}: cannot open the relayer database ({error})") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception). Nested uses join the outer transaction,
        so several transitions can be committed together."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ cursors and scanning

    def cursor(self, chain_id: int) -> int | None:
        """The next block to scan on chain `chain_id`, or None before its first scan."""
        row = self.db.execute("SELECT next_block FROM cursors WHERE chain_id = ?", (chain_id,)).fetchone()
        return None if row is None else int(row[0])

    def cursors(self) -> dict[int, int]:
        return {int(c): int(n) for c, n in self.db.execute("SELECT chain_id, next_block FROM cursors")}

    def record_scan(
        self, chain_id: int, found: list[SentLog], next_block: int, before_commit: Callable[[], None] | None = None
    ) -> list[str]:
        """In ONE transaction: inserts the messages found (ignoring ids already known) and moves the chain's
        cursor to `next_block`. Returns the ids that were new. `before_commit` runs inside the transaction
        (the crash tests' failpoint)."""
        now = self.clock()
        new: list[str] = []
        with self.transaction() as db:
            for sent in found:
                m = sent.message
                cursor = db.execute(
                    "INSERT OR IGNORE INTO messages (id, version, nonce, src_chain_id, src_relay, sender, dst_chain_id,"
                    " dst_relay, recipient, gas_limit, payload, block_number, block_hash, tx_hash, log_index, state,"
                    " seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        hex_id(sent.id),
                        m.version,
                        m.nonce,
                        m.src_chain_id,
                        m.src_relay,
                        m.sender,
                        m.dst_chain_id,
                        m.dst_relay,
                        m.recipient,
                        m.gas_limit,
                        m.payload,
                        sent.block_number,
                        hex_id(sent.block_hash),
                        hex_id(sent.transaction_hash),
                        sent.log_index,
                        now,
                        now,
                    ),
                )
                if cursor.rowcount:
                    new.append(hex_id(sent.id))
            db.execute(
                "INSERT INTO cursors (chain_id, next_block, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (chain_id) DO UPDATE SET next_block = excluded.next_block,"
                " updated_at = excluded.updated_at",
                (chain_id, next_block, now),
            )
            if before_commit is not None:
                before_commit()
        return new

    # ------------------------------------------------------------------ signatures

    def add_signatures(self, message_id: str, signatures: dict[str, bytes]) -> None:
        if not signatures:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO signatures (message_id, validator, signature) VALUES (?, ?, ?)",
                [(message_id, validator, signature) for validator, signature in signatures.items()],
            )

    def signatures(self, message_id: str) -> dict[str, bytes]:
        return {
            str(v): bytes(s)
            for v, s in self.db.execute(
                "SELECT validator, signature FROM signatures WHERE message_id = ?", (message_id,)
            )
        }

    def signatures_of(self, message_ids: list[str]) -> dict[str, dict[str, bytes]]:
        result: dict[str, dict[str, bytes]] = {i: {} for i in message_ids}
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for message_id, validator, signature in self.db.execute(
                f"SELECT message_id, validator, signature FROM signatures WHERE message_id IN ({marks})", chunk
            ):
                result[str(message_id)][str(validator)] = bytes(signature)
        return result

    # ------------------------------------------------------------------ reads

    def message(self, message_id: str) -> MessageRow | None:
        rows = self._rows("WHERE id = ?", (message_id.lower(),))
        return rows[0] if rows else None

    def messages(self, state: str | None = None) -> list[MessageRow]:
        if state is None:
            return self._rows("ORDER BY src_chain_id, dst_chain_id, nonce", ())
        return self._rows("WHERE state = ? ORDER BY src_chain_id, dst_chain_id, nonce", (state,))

    def due(self, now: float) -> list[MessageRow]:
        """Pending messages whose next attempt is due, by lane then nonce."""
        return self._rows(
            "WHERE state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " ORDER BY src_chain_id, dst_chain_id, nonce",
            (now,),
        )

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(COALESCE(next_attempt_at, 0)) FROM messages WHERE state = 'pending'"
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, count in self.db.execute("SELECT state, COUNT(*) FROM messages GROUP BY state"):
            counts[str(state)] = int(count)
        return counts

    def _rows(self, where: str, params: tuple[Any, ...]) -> list[MessageRow]:
        rows = self.db.execute(
            "SELECT id, version, nonce, src_chain_id, src_relay, sender, dst_chain_id, dst_relay, recipient, gas_limit,"
            " payload, state, attempts, next_attempt_at, last_error, delivered_by, block_number, tx_hash, seen_at,"
            f" updated_at FROM messages {where}",
            params,
        ).fetchall()
        hashes: dict[str, list[str]] = {}
        if rows:
            ids = [str(r[0]) for r in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for message_id, tx_hash in self.db.execute(
                    f"SELECT message_id, tx_hash FROM submissions WHERE message_id IN ({marks}) ORDER BY id", chunk
                ):
                    hashes.setdefault(str(message_id), []).append(str(tx_hash))
        result = []
        for r in rows:
            message = Message(
                version=r[1],
                nonce=r[2],
                src_chain_id=r[3],
                src_relay=r[4],
                sender=r[5],
                dst_chain_id=r[6],
                dst_relay=r[7],
                recipient=r[8],
                gas_limit=r[9],
                payload=bytes(r[10]),
            )
            result.append(
                MessageRow(
                    id=str(r[0]),
                    message=message,
                    state=str(r[11]),
                    attempts=int(r[12]),
                    next_attempt_at=None if r[13] is None else float(r[13]),
                    last_error=r[14],
                    delivered_by=r[15],
                    block_number=int(r[16]),
                    source_tx_hash=str(r[17]),
                    seen_at=float(r[18]),
                    updated_at=float(r[19]),
                    tx_hashes=tuple(hashes.get(str(r[0]), [])),
                )
            )
        return result

    # ------------------------------------------------------------------ submissions

    def record_submission(
        self,
        message_id: str,
        *,
        kind: str,
        chain_id: int,
        account: str,
        account_nonce: int,
        tx_hash: bytes,
        raw_tx: bytes,
        gas: int,
    ) -> int:
        """Records a signed transaction BEFORE it is broadcast; a `deliver` moves the message to `submitted`.
        Returns the submission's id."""
        now = self.clock()
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO submissions (message_id, kind, chain_id, account, account_nonce, tx_hash, raw_tx, gas,"
                " status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'recorded', ?)",
                (message_id, kind, chain_id, account, account_nonce, hex_id(tx_hash), raw_tx, gas, now),
            )
            if kind == "deliver":
                db.execute("UPDATE messages SET state = 'submitted', updated_at = ? WHERE id = ?", (now, message_id))
            assert cursor.lastrowid is not None
            return int(cursor.lastrowid)

    def mark_broadcast_many(self, submission_ids: list[int]) -> None:
        if not submission_ids:
            return
        with self.transaction():
            for submission_id in submission_ids:
                self.mark_broadcast(submission_id)

    def mark_broadcast(self, submission_id: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE submissions SET status = CASE WHEN status = 'recorded' THEN 'broadcast' ELSE status END,"
                " broadcast_at = ? WHERE id = ?",
                (self.clock(), submission_id),
            )

    def note_broadcast_attempt(self, submission_id: int, error: str) -> None:
        """A rebroadcast the node refused: its time becomes the submission's `broadcast_at` (the time of the
        last broadcast attempt, from which the next check waits `receipt_timeout`) and its answer the error;
        the status does not change."""
        with self.transaction() as db:
            db.execute(
                "UPDATE submissions SET broadcast_at = ?, error = ? WHERE id = ?", (self.clock(), error, submission_id)
            )

    def close_submission(
        self, submission_id: int, status: str, *, block_number: int | None = None, error: str | None = None
    ) -> None:
        """Ends a submission: mined, reverted, rejected (the node refused it) or dropped (its nonce went to
        another transaction)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE submissions SET status = ?, block_number = ?, error = ? WHERE id = ?",
                (status, block_number, error, submission_id),
            )

    def submissions(self, message_id: str) -> list[Submission]:
        return [
            self._submission(r)
            for r in self.db.execute(
                "SELECT * FROM submissions WHERE message_id = ? ORDER BY id", (message_id.lower(),)
            )
        ]

    def open_submissions(self) -> list[Submission]:
        """Submissions that may still be mined, oldest first."""
        return [
            self._submission(r)
            for r in self.db.execute(
                "SELECT * FROM submissions WHERE status IN ('recorded', 'broadcast')"
                " ORDER BY chain_id, account_nonce, id"
            )
        ]

    def open_deliveries(self, chain_id: int) -> dict[int, int]:
        """Open `deliver` submissions on destination `chain_id`, counted by source chain."""
        return {
            int(src): int(count)
            for src, count in self.db.execute(
                "SELECT m.src_chain_id, COUNT(*) FROM submissions s JOIN messages m ON m.id = s.message_id"
                " WHERE s.chain_id = ? AND s.kind = 'deliver' AND s.status IN ('recorded', 'broadcast')"
                " GROUP BY m.src_chain_id",
                (chain_id,),
            )
        }

    @staticmethod
    def _submission(r: tuple[Any, ...]) -> Submission:
        return Submission(
            id=int(r[0]),
            message_id=str(r[1]),
            kind=str(r[2]),
            chain_id=int(r[3]),
            account=str(r[4]),
            account_nonce=int(r[5]),
            tx_hash=bytes.fromhex(str(r[6])[2:]),
            raw_tx=bytes(r[7]),
            gas=int(r[8]),
            status=str(r[9]),
            created_at=float(r[10]),
            broadcast_at=None if r[11] is None else float(r[11]),
            block_number=None if r[12] is None else int(r[12]),
            error=r[13],
        )

    # ------------------------------------------------------------------ message transitions

    def _set(self, message_id: str, assignments: str, params: tuple[Any, ...]) -> None:
        with self.transaction() as db:
            db.execute(
                f"UPDATE messages SET {assignments}, updated_at = ? WHERE id = ?", (*params, self.clock(), message_id)
            )

    def mark_delivered(self, message_id: str, by: str) -> None:
        """Delivered on the destination (`by` "us": our transaction; "other": found delivered)."""
        self._set(message_id, "state = 'delivered', next_attempt_at = NULL, delivered_by = ?", (by,))

    def mark_failed(self, message_id: str, reason: str, by: str) -> None:
        """Failed on the destination: the recipient reverted; `retry` may re-run it."""
        self._set(
            message_id, "state = 'failed', next_attempt_at = NULL, last_error = ?, delivered_by = ?", (reason, by)
        )

    def back_off(self, message_id: str, attempts: int, next_attempt_at: float, error: str) -> None:
        """A failed attempt: back to pending until `next_attempt_at`."""
        self._set(
            message_id,
            "state = 'pending', attempts = ?, next_attempt_at = ?, last_error = ?",
            (attempts, next_attempt_at, error),
        )

    def defer(self, message_id: str, next_attempt_at: float, error: str) -> None:
        """Waits (without counting an attempt) until `next_attempt_at`: a rate limit, not a failure."""
        self._set(message_id, "state = 'pending', next_attempt_at = ?, last_error = ?", (next_attempt_at, error))

    def requeue(self, message_id: str, note: str | None = None) -> None:
        """Back to pending, due now, attempts unchanged (its transaction can no longer be mined)."""
        self._set(
            message_id, "state = 'pending', next_attempt_at = NULL, last_error = COALESCE(?, last_error)", (note,)
        )

    def park(self, message_id: str, attempts: int, reason: str) -> None:
        self._set(
            message_id, "state = 'parked', attempts = ?, next_attempt_at = NULL, last_error = ?", (attempts, reason)
        )

    def unpark(self, message_id: str) -> None:
        """A parked message goes back to the queue with its attempts reset."""
        self._set(message_id, "state = 'pending', attempts = 0, next_attempt_at = NULL", ())
