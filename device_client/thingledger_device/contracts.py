"""The shipped contract ABIs (package data abi/*.json) and decoding of their custom errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

REGISTRY = "DeviceRegistry"
SALES_ORDER = "SalesOrder"
SERVICE_MARKET = "ServiceMarket"

# Solidity enums, by their ABI internal type: index -> name.
DEVICE_STATES = ("None", "Provisioned", "Active", "Suspended", "Decommissioned")
ORDER_STATUSES = ("None", "Listed", "Paid", "Released", "Refunded", "Cancelled")
MATCHING_POLICIES = ("LatestPublished", "LowestPrice", "EarliestPublished")
REQUEST_STATUSES = ("None", "Open", "Matched", "Completed", "Refunded", "Cancelled")
PRUNE_REASONS = ("Expired", "SupplierNotActive", "SupplierOwnerChanged")
ENUM_NAMES = {
    "enum IDeviceRegistry.DeviceState": DEVICE_STATES,
    "enum ISalesOrder.OrderStatus": ORDER_STATUSES,
    "enum IServiceMarket.MatchingPolicy": MATCHING_POLICIES,
    "enum IServiceMarket.RequestStatus": REQUEST_STATUSES,
    "enum IServiceMarket.PruneReason": PRUNE_REASONS,
}
PERMISSION_RELEASE = 1 << 2


def enum_name(names: tuple[str, ...], value: Any) -> str:
    """The name of a Solidity enum value (one of the tuples above), or "unknown(N)"."""
    index = int(value)
    return names[index] if 0 <= index < len(names) else f"unknown({index})"


@cache
def load_abi(name: str) -> list[dict[str, Any]]:
    """The ABI of contract `name` shipped with the package."""
    text = resources.files(__package__).joinpath("abi", f"{name}.json").read_text(encoding="utf-8")
    abi: list[dict[str, Any]] = json.loads(text)
    return abi


@dataclass(frozen=True)
class DecodedError:
    """A custom error a contract reverted with."""

    name: str
    arguments: tuple[tuple[str, Any], ...]

    def __str__(self) -> str:
        shown = ", ".join(f"{name}={_show_argument(value)}" for name, value in self.arguments)
        return f"{self.name}({shown})"


def _show_argument(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _canonical_type(entry: dict[str, Any]) -> str:
    kind: str = entry["type"]
    if kind.startswith("tuple"):
        return "(" + ",".join(_canonical_type(component) for component in entry["components"]) + ")" + kind[5:]
    return kind


@cache
def _error_table() -> dict[bytes, dict[str, Any]]:
    from eth_utils.crypto import keccak

    table: dict[bytes, dict[str, Any]] = {}
    # Errors of the same signature (NotDeviceOwner, ZeroAddress) have the same selector in every contract.
    for contract in (SALES_ORDER, REGISTRY, SERVICE_MARKET):
        for entry in load_abi(contract):
            if entry.get("type") == "error":
                signature = f"{entry['name']}({','.join(_canonical_type(i) for i in entry.get('inputs', []))})"
                table.setdefault(keccak(text=signature)[:4], entry)
    return table


def decode_error(data: str | bytes | None) -> DecodedError | None:
    """Decodes revert data against the custom errors of the three contracts; None when it matches none."""
    from eth_abi.abi import decode
    from eth_utils.address import to_checksum_address

    if isinstance(data, str):
        try:
            data = bytes.fromhex(data.removeprefix("0x"))
        except ValueError:
            return None
    if not data or len(data) < 4:
        return None
    entry = _error_table().get(bytes(data[:4]))
    if entry is None:
        return None
    inputs = entry.get("inputs", [])
    payload = bytes(data[4:])
    # Every argument takes at least one 32-byte word (decoders in some environments pad short data).
    if len(payload) % 32 or len(payload) < 32 * len(inputs):
        return None
    try:
        values = decode([_canonical_type(i) for i in inputs], payload, strict=True)
    except Exception:  # eth-abi raises several decoding error types; undecodable means "not this error"
        return None
    arguments: list[tuple[str, Any]] = []
    for index, (spec, value) in enumerate(zip(inputs, values, strict=True)):
        names = ENUM_NAMES.get(spec.get("internalType", ""))
        if names is not None and isinstance(value, int) and value < len(names):
            value = names[value]
        elif spec["type"] == "address":
            value = to_checksum_address(value)
        arguments.append((spec.get("name") or f"arg{index}", value))
    return DecodedError(name=entry["name"], arguments=tuple(arguments))
