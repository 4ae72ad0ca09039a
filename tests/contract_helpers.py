"""Helpers of the DeviceRegistry and SalesOrder `ape test` suites: constants, precise revert and
event assertions, EIP-712 signing (through thingledger_device.typed_data), and ``Kit``, which
provisions/activates devices, signs device actions and buyers' pickup consents, and creates/buys orders.

(A module with a unique name, not conftest.py: tests/device_client has its own conftest.py, and two
modules named ``conftest`` cannot both be imported by test modules.)

Times are always taken from ``chain.pending_timestamp`` (the timestamp of the next block), never
from the wall clock.  Device keys are plain ``eth_account`` keys: devices only sign, they never
send transactions.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Any

import ape
from ape.exceptions import ContractLogicError, CustomError
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from thingledger_device import typed_data

# DevicePermissions bits.
OPERATE = 1 << 0
READ_DATA = 1 << 1
RELEASE = 1 << 2
SERVICE = 1 << 3

# IDeviceRegistry.DeviceState
NONE, PROVISIONED, ACTIVE, SUSPENDED, DECOMMISSIONED = range(5)
# ISalesOrder.OrderStatus
O_NONE, LISTED, PAID, RELEASED, REFUNDED, CANCELLED = range(6)

GWEI = 10**9
DAY = 24 * 3600
MAX_UINT64 = 2**64 - 1
MAX_UINT32 = 2**32 - 1
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
MANUFACTURER_ROLE = keccak(text="MANUFACTURER_ROLE")
PAUSER_ROLE = keccak(text="PAUSER_ROLE")
DEFAULT_ADMIN_ROLE = b"\x00" * 32

# The domain name of the pickup challenge before SalesOrder verified it (device client <= 0.1).
OLD_PICKUP_DOMAIN_NAME = "thingledger Pickup"
EIP712_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"

# secp256k1 group order, for building high-s (malleable) signatures.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


# --------------------------------------------------------------------------- revert assertions


def _raw_revert_data(err: ContractLogicError) -> bytes | None:
    """Revert data of an error ape could not decode (contract creation, some eth_calls)."""
    base = getattr(err, "base_err", None)
    data = getattr(base, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    message = str(err.message if hasattr(err, "message") else err)
    if message.startswith("0x"):
        return bytes.fromhex(message[2:])
    match = re.search(r"custom error 0x([0-9a-fA-F]{8}):? ?(.*)$", str(base or message), re.S)
    if match:
        tail = match.group(2).strip()
        # The node reports the arguments as hex (eth_call reverts of errors with arguments).
        if re.fullmatch(r"(0x)?([0-9a-fA-F]{64})*", tail):
            return bytes.fromhex(match.group(1)) + bytes.fromhex(tail.removeprefix("0x"))
        try:
            return bytes.fromhex(match.group(1)) + match.group(2).encode("latin-1")
        except UnicodeEncodeError:
            return None
    return None


@contextlib.contextmanager
def reverts(error_cls: type[CustomError], **inputs: Any):
    """Expect a revert with exactly the custom error ``error_cls`` (taken from a contract instance,
    e.g. ``registry.KeyAlreadyUsed``) and, for every keyword given, exactly that input value.

    ``ape.reverts(cls)`` alone passes when the revert could not be decoded into a custom error, and
    silently ignores misspelt input names; this helper refuses both.  Errors are matched by ABI
    signature, so errors bubbling up from a nested call are matched as precisely as direct ones.
    When ape could not decode the revert (contract creation, some eth_calls) the raw revert data
    is decoded here against the expected error's ABI.
    """
    with ape.reverts() as info:
        yield info
    err = info.value
    expected_abi = error_cls.abi
    if isinstance(err, CustomError):
        assert err.abi.signature == expected_abi.signature, (
            f"expected custom error {expected_abi.signature}, got {err.abi.signature}: {err!r}"
        )
        actual_inputs = dict(err.inputs)
    else:
        data = _raw_revert_data(err)
        assert data is not None and data[:4] == keccak(text=expected_abi.selector)[:4], (
            f"expected custom error {expected_abi.signature}, got undecoded revert {err!r}"
        )
        types = [abi_type.canonical_type for abi_type in expected_abi.inputs]
        values = abi_decode(types, data[4:]) if types else ()
        actual_inputs = {
            abi_type.name: (to_checksum_address(v) if abi_type.type == "address" else v)
            for abi_type, v in zip(expected_abi.inputs, values)
        }
    for name, expected in inputs.items():
        assert name in actual_inputs, f"{expected_abi.signature} has no input {name!r} ({actual_inputs})"
        actual = actual_inputs[name]
        if isinstance(expected, str) and expected.startswith("0x") and isinstance(actual, str):
            assert actual.lower() == expected.lower(), f"{name}: {actual} != {expected}"
        else:
            assert actual == expected, f"{name}: {actual!r} != {expected!r}"


def event_logs(receipt, event) -> list:
    """The logs of ``event`` (a ``contract.EventName``) in ``receipt`` emitted by that contract."""
    address = event.contract.address
    return [log for log in receipt.decode_logs(event) if log.contract_address == address]


def assert_single_event(receipt, event, **expected: Any):
    """Exactly one ``event`` in ``receipt`` from its contract, with the given argument values."""
    logs = event_logs(receipt, event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}: {logs}"
    log = logs[0]
    for name, value in expected.items():
        actual = log.event_arguments[name]
        if isinstance(value, str) and value.startswith("0x"):
            assert str(actual).lower() == value.lower(), f"{event.name}.{name}: {actual} != {value}"
        elif isinstance(value, bytes):
            assert bytes(actual) == value, f"{event.name}.{name}: {actual!r} != {value!r}"
        else:
            assert actual == value, f"{event.name}.{name}: {actual!r} != {value!r}"
    return log


def assert_no_event(receipt, event):
    assert event_logs(receipt, event) == []


# --------------------------------------------------------------------------- signatures


def sign(key: LocalAccount, message: dict) -> bytes:
    """65-byte (r, s, v) EIP-712 signature of a typed_data message."""
    return bytes(Account.sign_typed_data(key.key, full_message=message).signature)


def to_high_s(signature: bytes) -> bytes:
    """The malleable twin of a low-s signature: (r, n - s, v flipped). ecrecover accepts it."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([27 if v == 28 else 28])


def to_compact(signature: bytes) -> bytes:
    """EIP-2098 64-byte form (r, yParity|s) of a signature."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (s | ((v - 27) << 255)).to_bytes(32, "big")


def key_of(account) -> LocalAccount:
    """The eth-account key of an ape test account (a buyer signs its pickup consent off chain)."""
    return account if isinstance(account, LocalAccount) else Account.from_key(account.private_key)


def domain_separator(name: str, chain_id: int, verifying_contract: str, version: str = "1") -> bytes:
    """EIP-712 domain separator, computed here from its definition (not through eth-account)."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text=EIP712_DOMAIN_TYPE),
                keccak(text=name),
                keccak(text=version),
                chain_id,
                to_checksum_address(verifying_contract),
            ],
        )
    )


def typed_digest(message: dict) -> bytes:
    """The EIP-712 digest eth-account signs for a typed_data message: keccak(0x19 0x01 ‖ domain ‖ struct)."""
    signable = encode_typed_data(full_message=message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def make_record(**overrides: Any) -> dict:
    """A ManufacturingRecord as the typed_data dict (field names of the Solidity struct)."""
    record = {
        "model": "TL-Gate-1",
        "serial": "SN-0001",
        "firmwareHash": keccak(text="firmware 1.0.0"),
        "manufacturedAt": 1_700_000_000,
        "warrantyEnd": 2_000_000_000,
        "metadataURI": "ipfs://record",
    }
    record.update(overrides)
    return record




def make_item(**overrides: Any) -> dict:
    item = {"make": "Acme", "model": "Widget", "year": 2024, "serial": "W-1"}
    item.update(overrides)
    return item


def item_tuple(item: dict) -> tuple:
    return (item["make"], item["model"], item["year"], item["serial"])


# --------------------------------------------------------------------------- helper object


@dataclass
class Device:
    id: int
    key: LocalAccount


class Kit:
    """Helpers bound to the deployed contracts: provisioning, activation, device signatures,
    orders.  Every helper asserts nothing itself beyond what it needs to succeed."""

    def __init__(self, chain, registry, sales, manufacturer, chain_id):
        self.chain = chain
        self.registry = registry
        self.sales = sales
        self.manufacturer = manufacturer
        self.chain_id = chain_id

    # ---- time
    def now(self) -> int:
        """Timestamp the next transaction will see."""
        return self.chain.pending_timestamp

    def deadline(self, seconds: int = 3600) -> int:
        return self.now() + seconds

    def warp(self, seconds: int):
        """Move the clock forward so the next block is ``seconds`` later."""
        self.chain.pending_timestamp += seconds

    def mine_at(self, timestamp: int):
        """Mine a block at ``timestamp``: views (eth_call on the latest block) then see that time."""
        self.chain.mine(timestamp=timestamp)

    # ---- provisioning
    def provision_signature(
        self,
        key: LocalAccount,
        *,
        manufacturer=None,
        record: dict | None = None,
        deadline: int | None = None,
        registry=None,
        chain_id: int | None = None,
    ) -> bytes:
        msg = typed_data.provision_message(
            chain_id if chain_id is not None else self.chain_id,
            (registry or self.registry).address,
            key.address,
            (manufacturer or self.manufacturer).address,
            record or make_record(),
            deadline if deadline is not None else self.deadline(),
        )
        return sign(key, msg)

    def provision(
        self,
        *,
        key: LocalAccount | None = None,
        manufacturer=None,
        record: dict | None = None,
        registry=None,
    ) -> tuple[Device, Any]:
        """Provision a fresh device; returns (Device(id, key), receipt)."""
        key = key or Account.create()
        manufacturer = manufacturer or self.manufacturer
        registry = registry or self.registry
        record = record or make_record()
        deadline = self.deadline()
        sig = self.provision_signature(
            key, manufacturer=manufacturer, record=record, deadline=deadline, registry=registry
        )
        receipt = registry.provision(
            key.address, typed_data.record_tuple(record), deadline, sig, sender=manufacturer
        )
        return Device(int(key.address, 16), key), receipt

    def new_device(self, *, owner=None, active: bool = True, registry=None) -> Device:
        """Provision a device, hand it to ``owner`` (default: the manufacturer), activate it."""
        registry = registry or self.registry
        device, _ = self.provision(registry=registry)
        holder = self.manufacturer
        if owner is not None and owner.address != self.manufacturer.address:
            registry.transferFrom(self.manufacturer, owner, device.id, sender=self.manufacturer)
            holder = owner
        if active:
            registry.activate(device.id, sender=holder)
        return device

    # ---- device-signed actions
    def action_signature(
        self,
        device: Device,
        target,
        action: bytes,
        *,
        key: LocalAccount | None = None,
        nonce: int | None = None,
        deadline: int | None = None,
        registry=None,
        chain_id: int | None = None,
    ) -> tuple[int, bytes]:
        """(deadline, signature) of DeviceAction(deviceId, target, action, nonce, deadline); the
        nonce defaults to the device's current one."""
        registry = registry or self.registry
        if nonce is None:
            nonce = registry.getDevice(device.id).nonce
        if deadline is None:
            deadline = self.deadline()
        target_address = target if isinstance(target, str) else target.address
        msg = typed_data.device_action_message(
            chain_id if chain_id is not None else self.chain_id,
            registry.address,
            device.id,
            target_address,
            action,
            nonce,
            deadline,
        )
        return deadline, sign(key or device.key, msg)

    def rotate_signature(
        self,
        device: Device,
        new_key: LocalAccount,
        *,
        signer: LocalAccount | None = None,
        nonce: int | None = None,
        deadline: int | None = None,
    ) -> tuple[int, bytes]:
        if nonce is None:
            nonce = self.registry.getDevice(device.id).nonce
        if deadline is None:
            deadline = self.deadline()
        msg = typed_data.rotate_key_message(
            self.chain_id, self.registry.address, device.id, new_key.address, nonce, deadline
        )
        return deadline, sign(signer or new_key, msg)

    # ---- orders
    def create_order(
        self,
        seller,
        *,
        item: dict | None = None,
        price: int = GWEI * 1_000_000,
        pickup_deadline: int | None = None,
        device_id: int = 0,
    ) -> tuple[int, Any]:
        """Create an order (pickup deadline one day ahead unless given; 0 means none)."""
        if pickup_deadline is None:
            pickup_deadline = self.now() + DAY
        receipt = self.sales.createOrder(
            item_tuple(item or make_item()), price, pickup_deadline, device_id, sender=seller
        )
        return self.sales.lastOrderId(), receipt

    def create_and_buy(self, seller, buyer, **kwargs) -> int:
        order_id, _ = self.create_order(seller, **kwargs)
        price = self.sales.getOrder(order_id).price
        self.sales.buy(order_id, sender=buyer, value=price)
        return order_id

    def device_order(self, seller, buyer=None, **kwargs) -> tuple[Device, int]:
        """A fresh Active device of ``seller``, listed as an order's item (its token moves into
        SalesOrder's escrow) and, when ``buyer`` is given, bought.  ``kwargs`` go to create_order."""
        device = self.new_device(owner=seller)
        self.registry.approve(self.sales, device.id, sender=seller)
        order_id, _ = self.create_order(seller, device_id=device.id, **kwargs)
        if buyer is not None:
            self.sales.buy(order_id, sender=buyer, value=self.sales.getOrder(order_id).price)
        return device, order_id

    def release_signature(
        self, gate: Device, order_id: int, buyer_address: str, **kwargs
    ) -> tuple[int, bytes]:
        """The gate's DeviceAction signature releasing ``order_id`` to ``buyer_address``."""
        action = typed_data.release_action_hash(order_id, buyer_address)
        return self.action_signature(gate, self.sales, action, **kwargs)

    # ---- the buyer's pickup consent (ISalesOrder.BuyerConsent)
    def pickup_message(
        self,
        order_id: int,
        gate_id: int,
        challenge: bytes,
        expires_at: int,
        *,
        sales=None,
        chain_id: int | None = None,
    ) -> dict:
        """PickupChallenge(orderId, gateId, challenge, expiresAt) in SalesOrder's EIP-712 domain."""
        sales_address = sales if isinstance(sales, str) else (sales or self.sales).address
        return typed_data.pickup_challenge_message(
            chain_id if chain_id is not None else self.chain_id,
            sales_address,
            order_id,
            gate_id,
            challenge,
            expires_at,
        )

    def new_challenge(self) -> bytes:
        """A fresh 32-byte challenge, as a gate would draw one."""
        return os.urandom(32)

    def consent(
        self,
        signer,
        order_id: int,
        gate_id: int,
        *,
        challenge: bytes | None = None,
        expires_at: int | None = None,
        message: dict | None = None,
        **message_kwargs: Any,
    ) -> tuple[bytes, int, bytes]:
        """BuyerConsent(challenge, expiresAt, signature): ``signer``'s (an ape test account or an
        eth-account key) signature of the pickup challenge.  ``message`` replaces the signed typed data
        (to sign something other than what is submitted); ``sales``/``chain_id`` pick the domain."""
        challenge = challenge if challenge is not None else self.new_challenge()
        expires_at = expires_at if expires_at is not None else self.now() + 120
        if message is None:
            message = self.pickup_message(order_id, gate_id, challenge, expires_at, **message_kwargs)
        return (challenge, expires_at, sign(key_of(signer), message))

    def buyer_key(self, order_id: int) -> LocalAccount | None:
        """The key of the order's buyer when the buyer is an ape test account (None otherwise: no buyer
        yet, an unknown order, or a contract buyer)."""
        if not 0 < order_id <= self.sales.lastOrderId():
            return None
        buyer = self.sales.getOrder(order_id).buyer
        for account in ape.accounts.test_accounts:
            if account.address == buyer:
                return key_of(account)
        return None

    def buyer_consent(self, order_id: int, gate_id: int, **kwargs: Any) -> tuple[bytes, int, bytes]:
        """The order's buyer's consent to pick it up at ``gate_id``.  When the order has no buyer with a
        key (listed, unknown, bought by a contract), a throwaway key signs: such a release must fail
        whatever the consent."""
        return self.consent(self.buyer_key(order_id) or Account.create(), order_id, gate_id, **kwargs)
