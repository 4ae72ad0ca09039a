"""The device's provisioning signature: the EIP-712 `Provision` message that lets one manufacturer
register this device's key with its manufacturing record (DeviceRegistry.provision)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .deployment import Deployment
from .errors import DeviceClientError
from .values import json_uint, parse_address, parse_bytes32, parse_json, show_value

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

RECORD_FIELDS = ("model", "serial", "firmwareHash", "manufacturedAt", "warrantyEnd", "metadataURI")
TEXT_FIELDS = ("model", "serial", "metadataURI")
UINT32_LIMIT = 2**32
UINT64_LIMIT = 2**64


@dataclass(frozen=True)
class ManufacturingRecord:
    """DeviceRegistry's ManufacturingRecord."""

    model: str
    serial: str
    firmware_hash: bytes
    manufactured_at: int
    warranty_end: int
    metadata_uri: str

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "serial": self.serial,
            "firmwareHash": "0x" + self.firmware_hash.hex(),
            "manufacturedAt": self.manufactured_at,
            "warrantyEnd": self.warranty_end,
            "metadataURI": self.metadata_uri,
        }

    def typed_value(self) -> dict[str, Any]:
        """The record as the EIP-712 message field."""
        return {**self.to_json(), "firmwareHash": self.firmware_hash}


def parse_record(document: Any, source: str = "record") -> ManufacturingRecord:
    """Checks a manufacturing record JSON object (exactly the six fields)."""
    if not isinstance(document, dict):
        raise DeviceClientError(f"{source}: expected a JSON object")
    missing = [name for name in RECORD_FIELDS if name not in document]
    if missing:
        raise DeviceClientError(f"{source}: missing field(s) {', '.join(missing)}")
    unknown = [show_value(name) for name in document if name not in RECORD_FIELDS]
    if unknown:
        raise DeviceClientError(f"{source}: unknown field(s) {', '.join(unknown)}")
    for name in TEXT_FIELDS:
        if not isinstance(document[name], str):
            raise DeviceClientError(f"{source}: {name} must be a string, got {show_value(document[name])}")
    return ManufacturingRecord(
        model=document["model"],
        serial=document["serial"],
        firmware_hash=parse_bytes32(document["firmwareHash"], f"{source}: firmwareHash"),
        manufactured_at=json_uint(document["manufacturedAt"], f"{source}: manufacturedAt", limit=UINT64_LIMIT),
        # The registry stores the warranty end in 32 bits and rejects larger values.
        warranty_end=json_uint(document["warrantyEnd"], f"{source}: warrantyEnd", limit=UINT32_LIMIT),
        metadata_uri=document["metadataURI"],
    )


def load_record(path: str | Path) -> ManufacturingRecord:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise DeviceClientError(f"cannot read record {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise DeviceClientError(f"record {path} is not UTF-8 text") from None
    return parse_record(parse_json(text, f"record {path}"), f"record {path}")


def sign_provisioning(
    device: LocalAccount, deployment: Deployment, manufacturer: str, record: ManufacturingRecord, deadline: int
) -> dict[str, Any]:
    """The provisioning payload a manufacturer passes to DeviceRegistry.provision(key, record, deadline, signature)."""
    from .typed_data import provision_message

    manufacturer = parse_address(manufacturer, "--manufacturer")
    message = provision_message(
        deployment.chain_id, deployment.registry.address, device.address, manufacturer, record.typed_value(), deadline
    )
    signature = bytes(device.sign_typed_data(full_message=message).signature)
    return {
        "key": device.address,
        "manufacturer": manufacturer,
        "record": record.to_json(),
        "deadline": deadline,
        "signature": "0x" + signature.hex(),
    }
