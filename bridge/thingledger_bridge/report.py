"""Output for people (rich: tables, a live progress view) and for machines (`--json`: one JSON object per
line). Errors go to stderr in one line."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .relayer_store import STATES, MessageRow

EVENT_STYLES = {
    "seen": "cyan",
    "submitted": "blue",
    "delivered": "green",
    "failed": "red",
    "parked": "bold red",
    "backoff": "yellow",
    "rate-limited": "yellow",
    "deferred": "yellow",
    "signed": "green",
    "refused": "red",
    "error": "bold red",
    "rebroadcast": "magenta",
    "requeued": "magenta",
    "dropped": "magenta",
    "ignored": "dim",
}


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


class Output:
    """Where a command writes: JSON lines (machines) or rich text (people)."""

    def __init__(self, json_mode: bool, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self.live: LiveView | None = None

    def json(self, document: Any) -> None:
        self.stream.write(json.dumps(document, default=_plain, sort_keys=False) + "\n")
        self.stream.flush()

    def event(self, name: str, **fields: Any) -> None:
        """One event of a long-running command."""
        if self.json_mode:
            self.json({"event": name, "time": round(time.time(), 3), **{k: _plain(v) for k, v in fields.items()}})
            return
        if self.live is not None:
            self.live.add(name, fields)
            return
        self.console.print(format_event(name, fields))


def format_event(name: str, fields: dict[str, Any]) -> Text:
    stamp = datetime.now().strftime("%H:%M:%S")
    text = Text(f"{stamp} ")
    text.append(f"{name:<12}", style=EVENT_STYLES.get(name, "bold"))
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        value = _plain(value)
        if key in ("id", "tx_hash") and isinstance(value, str) and len(value) > 18:
            value = value[:10] + "…" + value[-6:]
        parts.append(f"{key}={value}")
    text.append(" ".join(parts))
    return text


class LiveView:
    """A live view of the relayer: message counts by state and the latest events."""

    def __init__(self, output: Output, counts: dict[str, int]) -> None:
        self.output = output
        self.counts = dict(counts)
        self.events: deque[Text] = deque(maxlen=12)
        self.live = Live(self.render(), console=output.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        self.output.live = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.output.live = None
        self.live.update(self.render())
        self.live.__exit__(None, None, None)

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        self.live.update(self.render())

    def add(self, name: str, fields: dict[str, Any]) -> None:
        self.events.append(format_event(name, fields))
        self.live.update(self.render())

    def render(self) -> Group:
        table = Table(title="thingledger relayer", expand=False)
        for state in STATES:
            table.add_column(state, justify="right")
        table.add_row(*(str(self.counts.get(state, 0)) for state in STATES))
        return Group(table, *self.events)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    delta = timestamp - time.time()
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f"{moment} (in {delta:.0f} s)" if delta > 0 else moment


def short(value: str) -> str:
    return value if len(value) <= 18 else value[:10] + "…" + value[-6:]


def messages_table(rows: list[MessageRow], title: str, *, reasons: bool = False) -> Table:
    table = Table(title=title)
    table.add_column("id")
    table.add_column("lane")
    table.add_column("nonce", justify="right")
    table.add_column("state")
    table.add_column("attempts", justify="right")
    table.add_column("reason" if reasons else "next attempt")
    for row in rows:
        last = row.last_error or "-"
        table.add_row(
            short(row.id),
            f"{row.message.src_chain_id}->{row.message.dst_chain_id}",
            str(row.message.nonce),
            Text(row.state, style=EVENT_STYLES.get(row.state, "")),
            str(row.attempts),
            last if reasons else when(row.next_attempt_at),
        )
    return table


def message_details(row: MessageRow, destination_status: str | None) -> Table:
    table = Table(show_header=False, title=f"message {row.id}")
    table.add_column("field", style="bold")
    table.add_column("value")
    m = row.message
    for key, value in (
        ("state", row.state),
        ("destination status", destination_status or "not read"),
        ("lane", f"{m.src_chain_id} -> {m.dst_chain_id}"),
        ("nonce", str(m.nonce)),
        ("sender", m.sender),
        ("recipient", m.recipient),
        ("gas limit", str(m.gas_limit)),
        ("payload", f"{len(m.payload)} bytes"),
        ("source block", f"{row.block_number} (tx {row.source_tx_hash})"),
        ("attempts", str(row.attempts)),
        ("next attempt", when(row.next_attempt_at)),
        ("last error", row.last_error or "-"),
        ("delivered by", row.delivered_by or "-"),
        ("transactions", ", ".join(row.tx_hashes) or "-"),
    ):
        table.add_row(key, value)
    return table
