"""The relayer's SQLite store: its transitions, the backoff schedule, and crash consistency (a scan's
messages and its cursor are committed together or not at all, including when the process is SIGKILLed
before the commit)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from thingledger_bridge.messages import Message, SentLog
from thingledger_bridge.relayer import backoff_delay
from thingledger_bridge.relayer_store import RelayerStore

SRC_RELAY = "0x" + "A1" * 20
DST_RELAY = "0x" + "B2" * 20


def sent(nonce: int, dst: int = 1002) -> SentLog:
    message = Message.from_tuple(
        (1, nonce, 1001, SRC_RELAY, "0x" + "c3" * 20, dst, DST_RELAY, "0x" + "d4" * 20, 100_000, b"p%d" % nonce)
    )
    return SentLog(
        id=message.message_id(),
        message=message,
        address=message.src_relay,
        block_number=10 + nonce,
        block_hash=bytes([nonce]) * 32,
        transaction_hash=bytes([nonce + 1]) * 32,
        log_index=0,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(tmp_path: Path, clock: Clock) -> RelayerStore:
    return RelayerStore(tmp_path / "relayer.sqlite", clock=clock)


def test_the_database_is_durable_wal_with_full_sync(store: RelayerStore) -> None:
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_scan_inserts_messages_and_moves_the_cursor_once(store: RelayerStore) -> None:
    assert store.cursor(1001) is None
    first = [sent(0), sent(1)]
    new = store.record_scan(1001, first, 50)
    assert new == ["0x" + s.id.hex() for s in first]
    assert store.cursor(1001) == 50
    # Scanning overlapping blocks again (e.g. after a crash) adds nothing twice.
    assert store.record_scan(1001, [sent(1), sent(2)], 60) == ["0x" + sent(2).id.hex()]
    rows = store.messages()
    assert [(r.message.nonce, r.state, r.attempts) for r in rows] == [
        (0, "pending", 0),
        (1, "pending", 0),
        (2, "pending", 0),
    ]
    assert rows[1].message == sent(1).message
    assert store.cursors() == {1001: 60}


def test_a_failed_scan_commits_neither_messages_nor_cursor(store: RelayerStore) -> None:
    store.record_scan(1001, [sent(0)], 20)

    def crash() -> None:
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        store.record_scan(1001, [sent(1), sent(2)], 40, before_commit=crash)
    assert store.cursor(1001) == 20
    assert [r.message.nonce for r in store.messages()] == [0]


def test_a_sigkill_before_the_cursor_commit_loses_the_whole_scan(tmp_path: Path) -> None:
    database = tmp_path / "killed.sqlite"
    RelayerStore(database).record_scan(1001, [sent(0)], 20)
    script = textwrap.dedent(
        f"""
        import os
        os.environ["THINGLEDGER_BRIDGE_FAILPOINT"] = "relayer.before-cursor-commit"
        from pathlib import Path
        from thingledger_bridge import failpoints
        from thingledger_bridge.relayer_store import RelayerStore
        import importlib, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_node_relayer_store import sent
        RelayerStore(Path({str(database)!r})).record_scan(
            1001, [sent(1), sent(2)], 40, before_commit=lambda: failpoints.reach("relayer.before-cursor-commit"))
        print("not killed")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -9, result.stderr
    reopened = RelayerStore(database)
    assert reopened.cursor(1001) == 20
    assert [r.message.nonce for r in reopened.messages()] == [0]


def test_submission_then_receipt_transitions(store: RelayerStore) -> None:
    store.record_scan(1001, [sent(0)], 20)
    message_id = "0x" + sent(0).id.hex()
    submission = store.record_submission(
        message_id,
        kind="deliver",
        chain_id=1002,
        account="0x" + "ee" * 20,
        account_nonce=7,
        tx_hash=b"\x01" * 32,
        raw_tx=b"raw",
        gas=300_000,
    )
    row = store.message(message_id)
    assert row is not None and row.state == "submitted" and row.tx_hashes == ("0x" + "01" * 32,)
    (open_submission,) = store.open_submissions()
    assert (open_submission.id, open_submission.status, open_submission.raw_tx) == (submission, "recorded", b"raw")
    store.mark_broadcast(submission)
    assert store.open_submissions()[0].status == "broadcast"
    store.close_submission(submission, "mined", block_number=30)
    store.mark_delivered(message_id, "us")
    assert store.open_submissions() == []
    row = store.message(message_id)
    assert row is not None and (row.state, row.delivered_by) == ("delivered", "us")
    assert store.counts()["delivered"] == 1


def test_backoff_park_and_unpark(store: RelayerStore, clock: Clock) -> None:
    store.record_scan(1001, [sent(0), sent(1)], 20)
    first, second = ("0x" + sent(n).id.hex() for n in (0, 1))
    store.back_off(first, 1, clock.now + 5, "boom")
    assert [r.id for r in store.due(clock.now)] == [second]  # the one backing off does not hold the lane
    clock.now += 5
    assert [r.id for r in store.due(clock.now)] == [first, second]
    store.defer(second, clock.now + 100, "RateLimited")
    row = store.message(second)
    assert row is not None and (row.attempts, row.next_attempt_at) == (0, clock.now + 100)  # a wait is not an attempt
    store.park(first, 8, "gave up")
    assert [r.id for r in store.messages("parked")] == [first]
    assert first not in [r.id for r in store.due(clock.now + 1_000)]
    store.unpark(first)
    row = store.message(first)
    assert row is not None and (row.state, row.attempts, row.next_attempt_at) == ("pending", 0, None)
    store.mark_failed(second, "recipient reverted", "us")
    assert store.message(second).state == "failed"  # type: ignore[union-attr]


def test_transitions_can_be_committed_together_or_not_at_all(store: RelayerStore) -> None:
    store.record_scan(1001, [sent(0), sent(1)], 20)
    ids = ["0x" + sent(n).id.hex() for n in (0, 1)]
    with pytest.raises(RuntimeError), store.transaction():
        store.mark_delivered(ids[0], "us")
        store.mark_delivered(ids[1], "us")
        raise RuntimeError("stop")
    assert [r.state for r in store.messages()] == ["pending", "pending"]
    with store.transaction():
        for message_id in ids:
            store.mark_delivered(message_id, "us")
    assert [r.state for r in store.messages()] == ["delivered", "delivered"]


def test_states_are_checked_by_the_schema(store: RelayerStore) -> None:
    store.record_scan(1001, [sent(0)], 20)
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("UPDATE messages SET state = 'lost'")


def test_the_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "reopen.sqlite"
    store = RelayerStore(path)
    store.record_scan(1001, [sent(0)], 20)
    store.add_signatures("0x" + sent(0).id.hex(), {"0x" + "01" * 20: b"\x02" * 65})
    store.close()
    again = RelayerStore(path)
    assert again.cursor(1001) == 20
    assert again.signatures("0x" + sent(0).id.hex()) == {"0x" + "01" * 20: b"\x02" * 65}


def test_backoff_doubles_from_initial_and_is_capped() -> None:
    assert [backoff_delay(n, 1.0, 300.0) for n in range(0, 11)] == [0.0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert backoff_delay(3, 0.5, 1.5) == 1.5
