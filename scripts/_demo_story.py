"""What the two demo stories (demo.py, service_demo.py) share: the table of their steps and their failure.

Not a script: `ape run` passes over files whose name starts with "_". The demos import it by putting this
folder on sys.path, as they do for deploy.py (Ape loads scripts by file, not as a package). No dataclasses
here: Ape runs scripts without a sys.modules entry, which dataclasses need; NamedTuple does not.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table


class Step(NamedTuple):
    actor: str
    action: str
    tx_hash: str = ""
    gas: int | None = None


class DemoFailure(Exception):
    """A step of the story did not turn out as it must."""


class Story:
    """Collects the steps of a demo, printing each one as it happens, and renders them as one table."""

    def __init__(self, title: str, console: Console) -> None:
        self.title = title
        self.console = console
        self.steps: list[Step] = []

    def tx(self, actor: str, action: str, receipt: Any) -> Any:
        """A step that is a transaction: its hash and gas come from `receipt`, which is returned."""
        self.note(actor, action, receipt.txn_hash, receipt.gas_used)
        return receipt

    def note(self, actor: str, action: str, tx_hash: str = "", gas: int | None = None) -> None:
        self.steps.append(Step(actor, action, tx_hash, gas))
        self.console.print(f"[green]✓[/] {actor}: {action}")

    def table(self) -> Table:
        table = Table(title=self.title)
        for column in ("#", "actor", "action", "tx hash", "gas"):
            table.add_column(column, justify="right" if column in ("#", "gas") else "left")
        for number, step in enumerate(self.steps, start=1):
            short_hash = f"{step.tx_hash[:10]}…{step.tx_hash[-4:]}" if step.tx_hash else ""
            gas = f"{step.gas:,}" if step.gas is not None else ""
            table.add_row(str(number), step.actor, step.action, short_hash, gas)
        return table
