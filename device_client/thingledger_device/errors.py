"""The one exception type of the device client: a failure explained in one line."""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2


class DeviceClientError(Exception):
    """A failure the client explains to its user in one line (printed as ``error: <message>``).

    Every expected failure (bad input, wrong chain, refused pickup, unreachable RPC, revert) is raised
    as this type; anything else is a bug.
    """

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE, reason: str | None = None) -> None:
        self.message = one_line(message)
        self.exit_code = exit_code
        # The name of the contract's custom error when the failure is a decoded revert, e.g. "UnknownOrder".
        self.reason = reason
        super().__init__(self.message)


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split()) or "unknown error"
