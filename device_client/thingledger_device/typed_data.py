"""EIP-712 messages of thingledger, built as eth-account "full message" dicts.

One place defines every typed message the contracts verify (DeviceRegistry's
Provision, DeviceAction and RotateKey, SalesOrder's Release action) and the
off-chain pickup challenge a buyer signs. Sign with
``eth_account.Account.sign_typed_data(key, full_message=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

REGISTRY_DOMAIN_NAME = "thingledger DeviceRegistry"
SALES_ORDER_DOMAIN_NAME = "thingledger SalesOrder"
DOMAIN_VERSION = "1"

EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

MANUFACTURING_RECORD_FIELDS = [
    {"name": "model", "type": "string"},
    {"name": "serial", "type": "string"},
    {"name": "firmwareHash", "type": "bytes32"},
    {"name": "manufacturedAt", "type": "uint64"},
    {"name": "warrantyEnd", "type": "uint64"},
    {"name": "metadataURI", "type": "string"},
]

RELEASE_TYPE = "Release(uint256 orderId,address buyer)"


def record_tuple(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """A manufacturing record as DeviceRegistry.provision's ManufacturingRecord tuple (field order)."""
    return tuple(record[field["name"]] for field in MANUFACTURING_RECORD_FIELDS)

TypedMessage = dict[str, Any]


def _domain(name: str, chain_id: int, verifying_contract: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(verifying_contract),
    }


def provision_message(
    chain_id: int,
    registry: str,
    device_key: str,
    manufacturer: str,
    record: dict[str, Any],
    deadline: int,
) -> TypedMessage:
    """The message a device signs so that `manufacturer` may provision it (its nonce is always 0)."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "Provision": [
                {"name": "key", "type": "address"},
                {"name": "manufacturer", "type": "address"},
                {"name": "record", "type": "ManufacturingRecord"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
            "ManufacturingRecord": MANUFACTURING_RECORD_FIELDS,
        },
        "primaryType": "Provision",
        "domain": _domain(REGISTRY_DOMAIN_NAME, chain_id, registry),
        "message": {
            "key": to_checksum_address(device_key),
            "manufacturer": to_checksum_address(manufacturer),
            "record": record,
            "nonce": 0,
            "deadline": deadline,
        },
    }


def device_action_message(
    chain_id: int,
    registry: str,
    device_id: int,
    target: str,
    action: bytes,
    nonce: int,
    deadline: int,
) -> TypedMessage:
    """The message a device signs so that contract `target` may act on its behalf once."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "DeviceAction": [
                {"name": "deviceId", "type": "uint256"},
                {"name": "target", "type": "address"},
                {"name": "action", "type": "bytes32"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "DeviceAction",
        "domain": _domain(REGISTRY_DOMAIN_NAME, chain_id, registry),
        "message": {
            "deviceId": device_id,
            "target": to_checksum_address(target),
            "action": action,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def rotate_key_message(
    chain_id: int, registry: str, device_id: int, new_key: str, nonce: int, deadline: int
) -> TypedMessage:
    """The message a device's new key signs to accept a key rotation."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "RotateKey": [
                {"name": "deviceId", "type": "uint256"},
                {"name": "newKey", "type": "address"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "RotateKey",
        "domain": _domain(REGISTRY_DOMAIN_NAME, chain_id, registry),
        "message": {
            "deviceId": device_id,
            "newKey": to_checksum_address(new_key),
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def release_action_hash(order_id: int, buyer: str) -> bytes:
    """SalesOrder's `releaseActionHash`: the struct hash of Release(orderId, buyer)."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "address"],
            [keccak(text=RELEASE_TYPE), order_id, to_checksum_address(buyer)],
        )
    )


def pickup_challenge_message(
    chain_id: int,
    sales_order: str,
    order_id: int,
    gate_id: int,
    challenge: bytes,
    expires_at: int,
) -> TypedMessage:
    """The challenge a gate issues and the buyer signs: it proves to the gate that the buyer holds the
    buyer's key, and to SalesOrder.release (which verifies it in its own domain) that the buyer was there."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "PickupChallenge": [
                {"name": "orderId", "type": "uint256"},
                {"name": "gateId", "type": "uint256"},
                {"name": "challenge", "type": "bytes32"},
                {"name": "expiresAt", "type": "uint256"},
            ],
        },
        "primaryType": "PickupChallenge",
        "domain": _domain(SALES_ORDER_DOMAIN_NAME, chain_id, sales_order),
        "message": {
            "orderId": order_id,
            "gateId": gate_id,
            "challenge": challenge,
            "expiresAt": expires_at,
        },
    }
