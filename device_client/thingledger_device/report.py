"""A command's result, built once and shown both ways: a table of labelled rows for people, one JSON
object for machines (see Output.result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chain import TransactionResult


@dataclass
class Report:
    """A command's result: `fields` are (JSON key, label for people, value, shown to people or None)."""

    title: str
    fields: list[tuple[str, str, Any, Any]] = field(default_factory=list)

    def add(self, key: str, label: str, value: Any, shown: Any = None, *, after: str | None = None) -> Report:
        """Adds a field at the end, or right after field `after` (at the end if there is none)."""
        entry = (key, label, value, shown)
        keys = [name for name, _, _, _ in self.fields]
        if after is not None and after in keys:
            self.fields.insert(keys.index(after) + 1, entry)
        else:
            self.fields.append(entry)
        return self

    def add_transaction(self, transaction: TransactionResult, paid_by: str) -> Report:
        return (
            self.add("txHash", "transaction", transaction.tx_hash)
            .add("gasUsed", "gas used", transaction.gas_used)
            .add("blockNumber", "block", transaction.block_number)
            .add("gasPaidBy", "gas paid by", paid_by)
        )

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, _, value, _ in self.fields}

    def rows(self) -> list[tuple[str, Any]]:
        return [(label, value if shown is None else shown) for _, label, value, shown in self.fields]
