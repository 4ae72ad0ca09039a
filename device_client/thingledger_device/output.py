"""What the commands print: rich tables for people, one JSON object per command with --json, and errors as
one line on stderr (``error: ...``), plus ``{"error": ...}`` on stdout with --json."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from .errors import one_line


class Output:
    """Where and how a command reports."""

    def __init__(self, json_mode: bool, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.json_mode = json_mode
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr

    def json(self, document: dict[str, Any]) -> None:
        """One JSON object on one line of stdout."""
        print(json.dumps(document, separators=(",", ":")), file=self.stdout, flush=True)

    def result(self, document: dict[str, Any], title: str, rows: Sequence[tuple[str, Any]]) -> None:
        """A command's result: `document` with --json, else a table of `rows` for people."""
        if self.json_mode:
            self.json(document)
        else:
            self.table(title, rows)

    def table(self, title: str, rows: Sequence[tuple[str, Any]]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left", title_style="bold")
        table.add_column("field", style="cyan", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, value in rows:
            table.add_row(name, _show(value))
        Console(file=self.stdout, width=max(100, _terminal_width(self.stdout))).print(table)

    def grid(self, title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
        """A table with a header row for people; `empty` is shown instead when there are no rows."""
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console(file=self.stdout, width=max(130, _terminal_width(self.stdout)))
        if not rows:
            console.print(f"[bold]{escape(title)}[/bold]: {escape(empty)}")
            return
        table = Table(title=title, title_justify="left", title_style="bold", header_style="cyan")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)

    def markup(self, text: str) -> None:
        """One line of rich markup on stdout (people's mode)."""
        from rich.console import Console

        Console(file=self.stdout, width=max(100, _terminal_width(self.stdout)), soft_wrap=True).print(text)

    def line(self, text: str) -> None:
        """A plain line on stdout (people's mode)."""
        print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A remark for people on stderr (silent with --json)."""
        if not self.json_mode:
            print(text, file=self.stderr, flush=True)

    def error(self, message: str) -> None:
        """The one-line error on stderr, and the error object on stdout with --json."""
        message = one_line(message)
        if self.json_mode:
            self.json({"error": message})
        print(f"error: {message}", file=self.stderr, flush=True)


def _show(value: Any) -> str:
    from rich.markup import escape

    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def _terminal_width(stream: IO[str]) -> int:
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns if stream.isatty() else 0
    except (OSError, ValueError, AttributeError):
        return 0
