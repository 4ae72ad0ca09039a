"""Fault injection for crash tests: `THINGLEDGER_BRIDGE_FAILPOINT=<name>[:<n>]` makes the process SIGKILL
itself the n-th time (default: the first) it reaches the point called `name`.

Points: `relayer.before-cursor-commit`, `relayer.after-submission-recorded`, `relayer.after-broadcast`,
`validator.before-signature-write`. With the variable unset, `reach` only compares a string.
"""

from __future__ import annotations

import os
import signal

ENV = "THINGLEDGER_BRIDGE_FAILPOINT"
POINTS = frozenset(
    {
        "relayer.before-cursor-commit",
        "relayer.after-submission-recorded",
        "relayer.after-broadcast",
        "validator.before-signature-write",
    }
)

_counts: dict[str, int] = {}


def parse(value: str) -> tuple[str, int]:
    """`name[:n]` as (name, n); raises ValueError for an unknown point or a bad count."""
    name, _, count_text = value.strip().partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}: unknown failpoint {name!r} (known: {', '.join(sorted(POINTS))})")
    count = 1
    if count_text:
        try:
            count = int(count_text)
        except ValueError:
            raise ValueError(f"{ENV}: count {count_text!r} is not a whole number") from None
        if count < 1:
            raise ValueError(f"{ENV}: count must be at least 1, not {count}")
    return name, count


def configured() -> tuple[str, int] | None:
    """The failpoint the environment asks for, or None; raises ValueError when it is malformed."""
    value = os.environ.get(ENV, "")
    return parse(value) if value.strip() else None


def reach(point: str) -> None:
    """Marks that the process reached `point`; SIGKILLs it if this is the configured failpoint's n-th time."""
    value = os.environ.get(ENV)
    if not value:
        return
    name, count = parse(value)
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] >= count:
        os.kill(os.getpid(), signal.SIGKILL)
