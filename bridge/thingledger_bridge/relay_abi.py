"""The CrossChainRelay ABI: encoding the calls the node makes, decoding their results, and decoding custom
errors (revert data) by their selector into a readable name and arguments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

# Errors a recipient may revert with that the relay's ABI does not hold (decoded inside MessageFailed reasons).
EXTRA_ERRORS: tuple[dict[str, Any], ...] = (
    {"type": "error", "name": "Error", "inputs": [{"name": "message", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
    {"type": "error", "name": "NotRelay", "inputs": [{"name": "caller", "type": "address"}]},
    {
        "type": "error",
        "name": "UntrustedSender",
        "inputs": [{"name": "srcChainId", "type": "uint64"}, {"name": "sender", "type": "address"}],
    },
    {"type": "error", "name": "Refused", "inputs": [{"name": "payload", "type": "bytes"}]},
)

STATUS_NAMES = ("None", "Delivered", "Failed")


def canonical_type(entry: dict[str, Any]) -> str:
    """The canonical ABI type of an input/output entry, tuples expanded."""
    kind = str(entry["type"])
    if kind.startswith("tuple"):
        inner = ",".join(canonical_type(component) for component in entry["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def signature(entry: dict[str, Any]) -> str:
    return f"{entry['name']}({','.join(canonical_type(item) for item in entry.get('inputs', []))})"


@dataclass(frozen=True)
class DecodedError:
    """A custom error decoded from revert data."""

    name: str
    args: dict[str, Any]

    def __str__(self) -> str:
        shown = ", ".join(f"{key}={_show(value)}" for key, value in self.args.items())
        return f"{self.name}({shown})"


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        text = "0x" + bytes(value).hex()
        return text if len(text) <= 74 else text[:72] + f"...({len(value)} bytes)"
    if isinstance(value, str):
        return value if value.startswith("0x") else repr(value)
    return str(value)


class RelayAbi:
    """Encoders and decoders built from `abi/CrossChainRelay.json`."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        self.functions: dict[str, dict[str, Any]] = {}
        for entry in abi:
            if entry.get("type") == "function":
                self.functions[entry["name"]] = entry
        self.errors: dict[bytes, dict[str, Any]] = {}
        for entry in [*abi, *EXTRA_ERRORS]:
            if entry.get("type") == "error":
                self.errors.setdefault(keccak(text=signature(entry))[:4], entry)

    def encode(self, function: str, *args: Any) -> bytes:
        entry = self.functions[function]
        types = [canonical_type(item) for item in entry.get("inputs", [])]
        return keccak(text=signature(entry))[:4] + abi_encode(types, list(args))

    def decode_output(self, function: str, data: bytes) -> tuple[Any, ...]:
        entry = self.functions[function]
        return tuple(abi_decode([canonical_type(item) for item in entry.get("outputs", [])], data))

    def decode_error(self, data: bytes) -> DecodedError | None:
        """The custom error in `data`, or None when its selector is unknown or its arguments do not decode."""
        if len(data) < 4:
            return None
        entry = self.errors.get(data[:4])
        if entry is None:
            return None
        inputs = entry.get("inputs", [])
        types = [canonical_type(item) for item in inputs]
        try:
            values = abi_decode(types, data[4:])
            if abi_encode(types, list(values)) != data[4:]:
                return None  # not the canonical encoding: truncated or padded data
        except Exception:  # noqa: BLE001 - malformed arguments: unknown error
            return None
        args = {}
        for index, (item, value) in enumerate(zip(inputs, values, strict=True)):
            name = item.get("name") or f"arg{index}"
            if item["type"] == "address":
                value = to_checksum_address(value)
            if entry["name"] in ("AlreadyProcessed", "NotFailed") and name == "status":
                value = STATUS_NAMES[value] if 0 <= value < len(STATUS_NAMES) else value
            args[name] = value
        return DecodedError(entry["name"], args)

    def describe_revert(self, data: bytes) -> str:
        """Revert data in one line: the decoded error, else its hex (shortened)."""
        if not data:
            return "reverted without data"
        decoded = self.decode_error(data)
        if decoded is not None:
            return str(decoded)
        text = "0x" + data.hex()
        return f"unknown error {text[:74]}{'...' if len(text) > 74 else ''}"


@lru_cache(maxsize=1)
def relay_abi() -> RelayAbi:
    """The relay's ABI shipped with the package."""
    text = resources.files("thingledger_bridge").joinpath("abi", "CrossChainRelay.json").read_text(encoding="utf-8")
    document = json.loads(text)
    return RelayAbi(document["abi"] if isinstance(document, dict) else document)
