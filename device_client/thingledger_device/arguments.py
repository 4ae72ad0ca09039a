"""Command-line plumbing shared by both CLIs: an argparse parser whose usage errors are one-line client
errors (exit code 2), reading FILE-or-stdin arguments, and the command runner that turns every failure
into ``error: ...`` and an exit code, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .errors import EXIT_USAGE, DeviceClientError
from .output import Output

MAX_INPUT_LENGTH = 65_536
Handler = Callable[[argparse.Namespace, Output], int]


class ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that reports usage errors as DeviceClientError (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise DeviceClientError(f"{message} (see {self.prog} --help)", exit_code=EXIT_USAGE)


def read_input(source: str, what: str) -> str:
    """The text of file `source`, or of stdin when `source` is "-"."""
    try:
        if source == "-":
            text = sys.stdin.read(MAX_INPUT_LENGTH + 1)
        else:
            with Path(source).open(encoding="utf-8") as stream:
                text = stream.read(MAX_INPUT_LENGTH + 1)
    except OSError as error:
        raise DeviceClientError(f"cannot read {what} {source}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DeviceClientError(f"{what} {source} is not UTF-8 text") from None
    if len(text) > MAX_INPUT_LENGTH:
        raise DeviceClientError(f"{what} {source} is longer than {MAX_INPUT_LENGTH} characters")
    return text


def _decimal_int(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """argparse type: a decimal integer >= 1."""
    value = _decimal_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a decimal integer >= 0."""
    value = _decimal_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds above 0 (decimals allowed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def run(build_parser: Callable[[], ArgumentParser], argv: Sequence[str] | None) -> int:
    """Parses `argv`, runs the chosen command, reports failures; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    out = Output(json_mode="--json" in arguments)
    try:
        namespace = build_parser().parse_args(arguments)
        handler: Handler = namespace.handler
        return handler(namespace, out)
    except DeviceClientError as error:
        out.error(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as error:  # a bug: still one line, unless debugging
        if os.environ.get("THINGLEDGER_DEBUG"):
            raise
        out.error(f"internal error: {type(error).__name__}: {error} (set THINGLEDGER_DEBUG=1 for a traceback)")
        return 1
