"""What the gas benchmarks (gas_foundation.py and gas_market_matching.py) share: their command line
(--json, --reps N, --traceback; bad usage is one line, not a usage dump), the frame of a run (the Ape project
at the repository root, one-line failures, exit status 0 when the benchmark ran, 1 when it could not run,
2 on bad usage, 130 when interrupted), and the few pieces both of them use: the device client's typed_data
module, a rich console that stays wide when piped, and the empty targets table.

Not a benchmark itself: the scripts import it as a sibling module (`python bench/<name>.py` puts bench/ on
sys.path), and toolchain/bench.sh does not run it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
MIN_REPS, MAX_REPS = 3, 25


class UsageError(Exception):
    """Bad command line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump, no traceback
        raise UsageError(message)


def parse_args(
    argv: list[str], *, prog: str, description: str, reps_default: int, reps_help: str
) -> argparse.Namespace:
    """--json, --reps (MIN_REPS to MAX_REPS, `reps_help` says what one repetition is) and --traceback."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--reps", type=int, default=reps_default, metavar="N", help=reps_help)
    parser.add_argument("--traceback", action="store_true", help="show the full traceback if the run fails")
    args = parser.parse_args(argv)
    if not MIN_REPS <= args.reps <= MAX_REPS:
        raise UsageError(f"--reps must be between {MIN_REPS} and {MAX_REPS}, got {args.reps}")
    return args


def main(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    reps_default: int,
    reps_help: str,
    run: Callable[[int], dict[str, Any]],
    print_tables: Callable[[dict[str, Any]], None],
) -> int:
    """Parses the command line, runs `run(reps)` from the repository root and prints its result: as one JSON
    object with --json, else with `print_tables`. Returns the exit status."""
    try:
        args = parse_args(
            sys.argv[1:] if argv is None else argv,
            prog=prog,
            description=description,
            reps_default=reps_default,
            reps_help=reps_help,
        )
    except UsageError as err:
        print(f"{prog}: error: {err} (see --help)", file=sys.stderr)
        return 2
    os.chdir(ROOT)  # the Ape project is the repository root, wherever we are started from
    # The compiler ./run.sh registers for py-solc-x, when the caller did not say otherwise.
    if "SOLCX_BINARY_PATH" not in os.environ and (ROOT / ".toolchain" / "solcx").is_dir():
        os.environ["SOLCX_BINARY_PATH"] = str(ROOT / ".toolchain" / "solcx")
    try:
        result = run(args.reps)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - a report tool: one line unless asked for more
        if args.traceback:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: failed: {type(err).__name__}: {message} (rerun with --traceback)", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result)
    return 0


def device_typed_data() -> ModuleType:
    """thingledger_device.typed_data, the module the device client signs with: the installed package, or the
    checkout's device_client/ when it is not installed into this interpreter."""
    try:
        from thingledger_device import typed_data
    except ImportError:
        sys.path.insert(0, str(ROOT / "device_client"))
        from thingledger_device import typed_data
    return typed_data


def console() -> Console:
    """A rich console; piped output (./run.sh bench | tee ...) gets wide tables rather than rich's 80-column
    default."""
    from rich.console import Console

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(width=150 if wide else None)


def targets_table() -> Table:
    """The targets table, without rows: target, figures, ratio, limit, result."""
    from rich.table import Table

    targets = Table(title="targets")
    targets.add_column("target")
    targets.add_column("figures", justify="right")
    targets.add_column("ratio", justify="right")
    targets.add_column("limit", justify="right")
    targets.add_column("result")
    return targets
