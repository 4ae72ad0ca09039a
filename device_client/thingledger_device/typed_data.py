"""EIP-712 messages of thingledger, built as eth-account "full message" dicts.

One place defines every typed message the contracts verify (DeviceRegistry's
Provision, DeviceAction and RotateKey, SalesOrder's Release action and pickup
challenge, ServiceMarket's supplier actions and Completion statement). Sign with
``eth_account.Account.sign_typed_data(key, full_message=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

REGISTRY_DOMAIN_NAME = "thingledger DeviceRegistry"
SALES_ORDER_DOMAIN_NAME = "thingledger SalesOrder"
SERVICE_MARKET_DOMAIN_NAME = "thingledger ServiceMarket"
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
PUBLISH_OFFER_TYPE = (
    "PublishOffer(bytes32 serviceType,uint256 unitPrice,uint256 units,uint256 validUntil,string metadataURI)"
)
UPDATE_OFFER_PRICE_TYPE = "UpdateOfferPrice(uint256 offerId,uint256 unitPrice)"
WITHDRAW_OFFER_TYPE = "WithdrawOffer(uint256 offerId)"
DECLINE_AGREEMENT_TYPE = "DeclineAgreement(uint256 requestId,uint256 round)"


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


# --------------------------------------------------------------------------- ServiceMarket


def _struct_hash(type_string: str, abi_types: list[str], values: list[Any]) -> bytes:
    return keccak(abi_encode(["bytes32", *abi_types], [keccak(text=type_string), *values]))


def publish_offer_action_hash(
    service_type: bytes, unit_price: int, units: int, valid_until: int, metadata_uri: str
) -> bytes:
    """ServiceMarket's `publishOfferActionHash`: what a supplier device signs (in a DeviceAction) to publish."""
    return _struct_hash(
        PUBLISH_OFFER_TYPE,
        ["bytes32", "uint256", "uint256", "uint256", "bytes32"],
        [service_type, unit_price, units, valid_until, keccak(text=metadata_uri)],
    )


def update_offer_price_action_hash(offer_id: int, unit_price: int) -> bytes:
    """ServiceMarket's `updateOfferPriceActionHash`."""
    return _struct_hash(UPDATE_OFFER_PRICE_TYPE, ["uint256", "uint256"], [offer_id, unit_price])


def withdraw_offer_action_hash(offer_id: int) -> bytes:
    """ServiceMarket's `withdrawOfferActionHash`."""
    return _struct_hash(WITHDRAW_OFFER_TYPE, ["uint256"], [offer_id])


def decline_agreement_action_hash(request_id: int, round_: int) -> bytes:
    """ServiceMarket's `declineAgreementActionHash`."""
    return _struct_hash(DECLINE_AGREEMENT_TYPE, ["uint256", "uint256"], [request_id, round_])


def completion_message(
    chain_id: int, service_market: str, request_id: int, offer_id: int, round_: int, evidence: bytes
) -> TypedMessage:
    """The statement a request's attester signs to complete its current agreement (request, offer and
    round name the agreement, so the statement cannot complete a later one)."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "Completion": [
                {"name": "requestId", "type": "uint256"},
                {"name": "offerId", "type": "uint256"},
                {"name": "round", "type": "uint256"},
                {"name": "evidence", "type": "bytes32"},
            ],
        },
        "primaryType": "Completion",
        "domain": _domain(SERVICE_MARKET_DOMAIN_NAME, chain_id, service_market),
        "message": {"requestId": request_id, "offerId": offer_id, "round": round_, "evidence": evidence},
    }
