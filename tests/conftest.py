"""Shared fixtures and helpers for the DeviceRegistry and SalesOrder `ape test` suites.

Deployments are session scoped: ape's isolation takes a chain snapshot around every test and
reverts it afterwards, so every test starts from the same freshly deployed contracts without
paying for a deployment per test.  Times are always taken from ``chain.pending_timestamp`` (the
timestamp of the next block), never from the wall clock.

Device keys are plain ``eth_account`` keys: devices only sign, they never send transactions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import ape
import pytest
from ape.exceptions import ContractLogicError, CustomError
from eth_account import Account
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

# secp256k1 group order, for building high-s (malleable) signatures.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAEDCE6AF48A03BBFD25E8CD0364141


# --------------------------------------------------------------------------- revert assertions


@contextlib.contextmanager
def reverts(error_cls: type[CustomError], **inputs: Any):
    """Expect a revert with exactly the custom error ``error_cls`` (taken from a contract instance,
    e.g. ``registry.KeyAlreadyUsed``) and, for every keyword given, exactly that input value.

    ``ape.reverts(cls)`` alone passes when the revert could not be decoded into a custom error, and
    silently ignores misspelt input names; this helper refuses both.  Errors are matched by ABI
    selector (the contract-level class identity is checked too when ape decoded one), so that errors
    bubbling up from a nested call are matched as precisely as direct ones.
    """
    with ape.reverts() as info:
        yield info
    err = info.value
    expected_abi = error_cls.abi
    assert isinstance(err, CustomError), (
        f"expected custom error {expected_abi.signature}, got undecoded revert {err!r}"
    )
    assert err.abi.selector == expected_abi.selector, (
        f"expected custom error {expected_abi.signature}, got {err.abi.signature}: {err!r}"
    )
    for name, expected in inputs.items():
        assert name in err.inputs, f"{expected_abi.signature} has no input {name!r} ({err.inputs})"
        actual = err.inputs[name]
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


def record_tuple(record: dict) -> tuple:
    return (
        record["model"],
        record["serial"],
        record["firmwareHash"],
        record["manufacturedAt"],
        record["warrantyEnd"],
        record["metadataURI"],
    )


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
            key.address, record_tuple(record), deadline, sig, sender=manufacturer
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

    def release_signature(
        self, gate: Device, order_id: int, buyer_address: str, **kwargs
    ) -> tuple[int, bytes]:
        """The gate's DeviceAction signature releasing ``order_id`` to ``buyer_address``."""
        action = typed_data.release_action_hash(order_id, buyer_address)
        return self.action_signature(gate, self.sales, action, **kwargs)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def manufacturer(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def other_manufacturer(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def owner(accounts):
    """A device owner (receives devices from the manufacturer)."""
    return accounts[3]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def seller(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def buyer(accounts):
    return accounts[6]


@pytest.fixture(scope="session")
def gate_owner(accounts):
    """Owner of the warehouse gate device (the warehouse operator)."""
    return accounts[7]


@pytest.fixture(scope="session")
def chain_id(chain):
    return chain.chain_id


@pytest.fixture(scope="session")
def registry(project, admin, manufacturer, other_manufacturer):
    registry = admin.deploy(project.DeviceRegistry, admin)
    registry.grantRole(MANUFACTURER_ROLE, manufacturer, sender=admin)
    registry.grantRole(MANUFACTURER_ROLE, other_manufacturer, sender=admin)
    return registry


@pytest.fixture(scope="session")
def registry2(project, admin, manufacturer):
    """A second registry on the same chain (for cross-registry replay)."""
    registry = admin.deploy(project.DeviceRegistry, admin)
    registry.grantRole(MANUFACTURER_ROLE, manufacturer, sender=admin)
    return registry


@pytest.fixture(scope="session")
def sales(project, admin, registry):
    return admin.deploy(project.SalesOrder, registry, admin)


@pytest.fixture(scope="session")
def kit(chain, registry, sales, manufacturer, chain_id):
    return Kit(chain, registry, sales, manufacturer, chain_id)


@pytest.fixture(scope="session")
def gate(kit, registry, manufacturer, gate_owner, seller):
    """An Active warehouse gate owned by ``gate_owner`` that admitted ``seller`` with RELEASE."""
    device = kit.new_device(owner=gate_owner)
    registry.grantPermissions(
        device.id, seller, RELEASE, kit.now() + 365 * DAY, sender=gate_owner
    )
    return device




@pytest.fixture(scope="session", autouse=True)
def _deployments(registry, registry2, sales, gate):
    """Create every session-scoped deployment before the first snapshot, so that no later test
    introduces a session fixture mid-run (which would force ape to re-base its snapshots)."""
