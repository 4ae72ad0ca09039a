"""The one exception type of the bridging node: a failure explained in one line."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class BridgeError(Exception):
    """A failure the node explains to its operator in one line (printed as ``error: <message>``).

    Every expected failure (bad configuration, unreachable RPC, wrong chain, unknown message) is raised as
    this type; anything else is a bug, still reported in one line by the CLI.
    """

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        self.message = one_line(message)
        self.exit_code = exit_code
        super().__init__(self.message)


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split()) or "unknown error"
