"""Strict parsers of the market commands' values: service types, wei amounts and unit counts in the ranges
ServiceMarket stores, matching policies, evidence hashes. Every bad value is a one-line DeviceClientError,
raised before anything is signed or sent.

A service type is a bytes32 on chain. People may write it as a name, which stands for the keccak256 hash of
its UTF-8 text ("hvac-repair" -> keccak256(b"hvac-repair")), or as the hash itself (0x and 64 hex digits).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DeviceClientError
from .values import parse_bytes32, parse_decimal, show_value

UINT32_MAX = 2**32 - 1
UINT40_MAX = 2**40 - 1
UINT96_MAX = 2**96 - 1
MAX_SERVICE_NAME_LENGTH = 200
MAX_EVIDENCE_FILE_BYTES = 64 * 1024 * 1024
ZERO_BYTES32 = bytes(32)

# The command-line names of the matching policies, in the contract's enum order.
POLICY_OPTIONS = ("latest", "lowest", "earliest")
_BYTES32_HEX = re.compile(r"0[xX][0-9a-fA-F]{64}")


@dataclass(frozen=True)
class ServiceType:
    """A market's service type: its bytes32 id and, when given by name, the name it hashes."""

    type_id: bytes
    name: str | None = None

    @property
    def hex(self) -> str:
        return "0x" + self.type_id.hex()

    def to_json(self) -> dict[str, Any]:
        return {"serviceType": self.hex, "serviceName": self.name}

    def describe(self) -> str:
        """For people: the name and the hash, or the hash alone."""
        return f"{self.name} ({self.hex})" if self.name is not None else self.hex


def service_type_id(name: str) -> bytes:
    """The bytes32 id of a service type name: keccak256 of its UTF-8 text."""
    from eth_utils.crypto import keccak

    return bytes(keccak(name.encode("utf-8")))


def parse_service_type(text: str, what: str = "--service-type") -> ServiceType:
    """A service type written as 0x and 64 hex digits, or as a name (hashed with keccak256).

    Names are 1 to 200 characters of printable text without leading or trailing whitespace, and must not
    start with 0x (so that a mistyped hash is never taken for a name).
    """
    if text.startswith(("0x", "0X")):
        if not _BYTES32_HEX.fullmatch(text):
            raise DeviceClientError(
                f"{what}: {show_value(text)} is not 0x and 64 hex digits (names must not start with 0x)"
            )
        return ServiceType(bytes.fromhex(text[2:]))
    if not text:
        raise DeviceClientError(f"{what}: the service type name is empty")
    if len(text) > MAX_SERVICE_NAME_LENGTH:
        raise DeviceClientError(f"{what}: the service type name is longer than {MAX_SERVICE_NAME_LENGTH} characters")
    if text != text.strip() or not text.isprintable():
        raise DeviceClientError(
            f"{what}: {show_value(text)} is not a usable name (no control characters, no leading or trailing spaces)"
        )
    return ServiceType(service_type_id(text), text)


def _bounded(text: str, what: str, maximum: int, unit: str) -> int:
    value = parse_decimal(text, what)
    if value == 0:
        raise DeviceClientError(f"{what}: must be at least 1{unit}")
    if value > maximum:
        raise DeviceClientError(f"{what}: {value} is out of range (1 to {maximum}{unit})")
    return value


def parse_unit_price(text: str, what: str = "--unit-price") -> int:
    """A unit price in wei: a canonical decimal integer from 1 to 2^96-1 (what ServiceMarket stores)."""
    return _bounded(text, what, UINT96_MAX, " wei")


def parse_units(text: str, what: str = "--units") -> int:
    """A number of units: a canonical decimal integer from 1 to 2^32-1."""
    return _bounded(text, what, UINT32_MAX, "")


def policy_index(option: str) -> int:
    """The MatchingPolicy enum value of a command-line policy name (latest, lowest, earliest)."""
    try:
        return POLICY_OPTIONS.index(option)
    except ValueError:
        raise DeviceClientError(f"unknown policy {show_value(option)}: one of {', '.join(POLICY_OPTIONS)}") from None


def parse_evidence(text: str, what: str = "--evidence") -> bytes:
    """An evidence hash: 0x and 64 hex digits."""
    return parse_bytes32(text, what)


def evidence_of_file(path: str | Path, what: str = "--evidence-file") -> bytes:
    """The evidence hash of a file: keccak256 of its bytes (at most 64 MiB)."""
    from eth_utils.crypto import keccak

    try:
        with Path(path).open("rb") as stream:
            content = stream.read(MAX_EVIDENCE_FILE_BYTES + 1)
    except OSError as error:
        raise DeviceClientError(f"{what}: cannot read {path}: {error.strerror or error}") from None
    if len(content) > MAX_EVIDENCE_FILE_BYTES:
        raise DeviceClientError(f"{what}: {path} is larger than {MAX_EVIDENCE_FILE_BYTES // (1024 * 1024)} MiB")
    return bytes(keccak(content))


def check_timestamp(value: int, what: str, now: int) -> int:
    """A timestamp ServiceMarket accepts: after `now` (the chain's time) and below 2^40."""
    if value <= now:
        raise DeviceClientError(f"{what}: {value} is not in the future (the chain's time is {now})")
    if value > UINT40_MAX:
        raise DeviceClientError(f"{what}: {value} is out of range (at most {UINT40_MAX})")
    return value
