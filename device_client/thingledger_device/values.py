"""Strict parsers of the values the client reads from people and files: addresses, integers, hex."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .errors import DeviceClientError

UINT256_LIMIT = 2**256
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of file `path`; unreadable or non-text files are one-line errors naming `what`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DeviceClientError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DeviceClientError(f"{what} {path} is not UTF-8 text") from None


def _checksum(address: str) -> str:
    from eth_utils.address import to_checksum_address  # deferred: eth_utils takes ~0.1 s to import

    return str(to_checksum_address(address))


def parse_address(value: Any, what: str, *, require_checksum: bool = False) -> str:
    """`value` as an EIP-55 checksummed address.

    Mixed-case input must carry a valid checksum; all-lowercase (or all-uppercase) input is accepted
    unless `require_checksum`, which demands the exact checksummed spelling.
    """
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise DeviceClientError(f"{what}: {show_value(value)} is not an address (0x and 40 hex digits)")
    checksummed = _checksum(value)
    digits = value[2:]
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if value != checksummed and (require_checksum or mixed_case):
        raise DeviceClientError(f"{what}: {value} is not an EIP-55 checksummed address (expected {checksummed})")
    return checksummed


def parse_decimal(text: str, what: str) -> int:
    """A canonical unsigned decimal below 2**256: digits only, no sign, no leading zeros."""
    if not _DECIMAL.fullmatch(text):
        raise DeviceClientError(
            f"{what}: {show_value(text)} is not a canonical decimal number (digits only, no sign, no leading zeros)"
        )
    number = int(text)
    if number >= UINT256_LIMIT:
        raise DeviceClientError(f"{what}: {number} does not fit in 256 bits")
    return number


def json_uint(value: Any, what: str, *, limit: int = UINT256_LIMIT) -> int:
    """A JSON integer (not a boolean, float or string) in [0, limit)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeviceClientError(f"{what}: expected an integer, got {show_value(value)}")
    if not 0 <= value < limit:
        raise DeviceClientError(f"{what}: {value} is out of range (0 to {limit - 1})")
    return value


def parse_bytes32(value: Any, what: str) -> bytes:
    """`0x` and 64 hex digits, as 32 bytes."""
    if not isinstance(value, str) or not _BYTES32.fullmatch(value):
        raise DeviceClientError(f"{what}: expected 0x and 64 hex digits, got {show_value(value)}")
    return bytes.fromhex(value[2:])


def parse_signature(value: Any, what: str) -> bytes:
    """A 65-byte ECDSA signature (r, s, v) written as `0x` and 130 hex digits."""
    if not isinstance(value, str) or not _SIGNATURE.fullmatch(value):
        raise DeviceClientError(
            f"{what}: expected a 65-byte signature (0x and 130 hex digits), got {show_value(value)}"
        )
    return bytes.fromhex(value[2:])


def show_value(value: Any, limit: int = 60) -> str:
    """A short, one-line rendering of an untrusted value for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_JSON_DEPTH = 32


def parse_json(text: str, what: str, *, max_length: int = 65_536) -> Any:
    """Decodes untrusted JSON text: bounded in length and nesting depth (deep nesting would otherwise
    exhaust the parser's stack), every failure a DeviceClientError."""
    import json

    if len(text) > max_length:
        raise DeviceClientError(f"{what}: longer than {max_length} characters")
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise DeviceClientError(f"{what}: nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise DeviceClientError(f"{what}: not valid JSON ({error})") from None


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting of JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for character in text:
        if in_string:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                in_string = False
        elif character == '"':
            in_string = True
        elif character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest
