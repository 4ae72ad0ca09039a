"""The pickup flow against a stand-in chain: the order of the checks, release before actuation, and
what happens when a step fails. (test_pickup_e2e.py runs the same flow against the real contracts.)"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from client_helpers import DEPLOYER, REGISTRY, SALES_ORDER
from eth_account import Account
from eth_account.messages import encode_typed_data
from thingledger_device.actuator import ReleaseEvent
from thingledger_device.chain import Chain, DeviceInfo, OrderInfo, TransactionResult
from thingledger_device.challenge import Challenge, ChallengeStore, sign_challenge
from thingledger_device.deployment import ContractLocation, Deployment
from thingledger_device.errors import DeviceClientError
from thingledger_device.pickup import RELEASE_SIGNATURE_LIFETIME, issue_challenge, run_pickup, verify_pickup
from thingledger_device.receipt import make_receipt
from thingledger_device.typed_data import device_action_message, release_action_hash

NOW = 1_700_000_000
DEPLOYMENT = Deployment(31337, "local", DEPLOYER, ContractLocation(REGISTRY, 1), ContractLocation(SALES_ORDER, 2))
DEVICE = Account.from_key("0x" + "d1" * 32)
BUYER = Account.from_key("0x" + "b1" * 32)
IMPOSTOR = Account.from_key("0x" + "e1" * 32)
SELLER = Account.from_key("0x" + "5e" * 32).address
GATE_ID = int(DEVICE.address, 16)
ORDER_ID = 7


@dataclass
class FakeChain:
    """Answers like the contracts would for one paid order and one gate; records transactions."""

    deployment: Deployment = DEPLOYMENT
    status: str = "Paid"
    device_state: str = "Active"
    seller_admitted: bool = True
    block_time: int = NOW - 50
    fail_transaction: bool = False
    # A release of this order at this gate to this buyer that someone else submitted (a copy of ours).
    released_by_other: TransactionResult | None = None
    log: list[str] = field(default_factory=list)
    sent: list[tuple[Any, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sales_order = SimpleNamespace(functions=SimpleNamespace(release=lambda *args: ("release", *args)))

    def device_id_of_key(self, key: str) -> int:
        return GATE_ID if key == DEVICE.address else 0

    def order(self, order_id: int) -> OrderInfo:
        if order_id != ORDER_ID:
            raise DeviceClientError(f"unknown order {order_id}: the last order id is {ORDER_ID}")
        return OrderInfo(ORDER_ID, SELLER, BUYER.address, 10**15, self.status, 0, 0, "Acme", "Widget", 2024)

    def verify_ownership(self, order_id: int, claimant: str) -> bool:
        return order_id == ORDER_ID and claimant == BUYER.address and self.status in ("Paid", "Released")

    def device(self, device_id: int) -> DeviceInfo:
        return DeviceInfo(device_id, DEVICE.address, self.device_state, NOW + 10**6, 5, 1)

    def has_permission(self, device_id: int, who: str, permission: int) -> bool:
        return self.device_state == "Active" and who == SELLER and permission == 4 and self.seller_admitted

    def latest_timestamp(self) -> int:
        return self.block_time

    def block_number(self) -> int:
        return 11

    def release_of(self, order_id: int, gate_id: int, buyer: str, from_block: int) -> TransactionResult | None:
        self.log.append("release_of")
        assert (order_id, gate_id, buyer, from_block) == (ORDER_ID, GATE_ID, BUYER.address, 11)
        return self.released_by_other

    def transact(
        self, account: Any, function: tuple[Any, ...], what: str, receipt_timeout: float = 120.0
    ) -> TransactionResult:
        self.log.append("transact")
        # The gate waits until its signature can no longer be mined before giving up.
        assert receipt_timeout >= RELEASE_SIGNATURE_LIFETIME
        if self.fail_transaction:
            raise DeviceClientError(f"{what} reverted: WrongStatus(orderId=7, status=Refunded)")
        self.sent.append((account.address, *function))
        return TransactionResult(tx_hash="0x" + "aa" * 32, gas_used=80_000, block_number=12)


def as_chain(fake: FakeChain) -> Chain:
    """The stand-in, typed as what the flow expects (it answers the same calls)."""
    return cast(Chain, fake)


class RecordingActuator:
    def __init__(self, chain: FakeChain, fail: bool = False) -> None:
        self.chain = chain
        self.fail = fail
        self.events: list[ReleaseEvent] = []

    def release(self, event: ReleaseEvent) -> None:
        self.chain.log.append("actuate")
        if self.fail:
            raise DeviceClientError("GPIO17 failed while releasing: pin exploded")
        self.events.append(event)


RECEIPT = make_receipt(31337, SALES_ORDER, ORDER_ID, BUYER.address)


def issued(store: ChallengeStore, chain: FakeChain) -> Challenge:
    return issue_challenge(as_chain(chain), DEVICE.address, RECEIPT, store, 120, NOW)


def test_issue_checks_the_order_and_stores_the_challenge(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    challenge = issued(store, FakeChain())
    assert (challenge.chain_id, challenge.order_id, challenge.gate_id) == (31337, ORDER_ID, GATE_ID)
    assert challenge.sales_order == SALES_ORDER and challenge.expires_at == NOW + 120
    assert store.check(challenge, NOW) == challenge


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        (FakeChain(status="Listed"), "order 7 is Listed, not Paid"),
        (FakeChain(status="Released"), "order 7 was already released"),
        (FakeChain(device_state="Suspended"), "device not authorized: gate"),
        (FakeChain(seller_admitted=False), f"does not admit seller {SELLER}"),
    ],
)
def test_issue_refuses_what_cannot_be_picked_up(tmp_path: Path, chain: FakeChain, message: str) -> None:
    with pytest.raises(DeviceClientError, match=message):
        issued(ChallengeStore(tmp_path), chain)
    assert not list(tmp_path.rglob("*.json"))


def test_issue_refuses_receipts_of_other_deployments(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    for receipt, message in (
        (replace(RECEIPT, chain_id=1), "receipt is for chain 1 but this gate serves chain 31337"),
        (replace(RECEIPT, sales_order=REGISTRY), f"receipt is for SalesOrder {REGISTRY}"),
    ):
        with pytest.raises(DeviceClientError, match=message):
            issue_challenge(as_chain(FakeChain()), DEVICE.address, receipt, store, 120, NOW)


def test_unregistered_device_key_is_not_authorized(tmp_path: Path) -> None:
    with pytest.raises(DeviceClientError, match=r"device not authorized: key .* is not a device"):
        issue_challenge(as_chain(FakeChain()), IMPOSTOR.address, RECEIPT, ChallengeStore(tmp_path), 120, NOW)


def test_verify_accepts_the_buyer_without_consuming(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    chain = FakeChain()
    response = sign_challenge(BUYER, issued(store, chain))
    for _ in range(2):
        verified = verify_pickup(as_chain(chain), DEVICE.address, RECEIPT, response, store, NOW + 60)
        assert verified.buyer == BUYER.address and verified.gate_id == GATE_ID and verified.order.status == "Paid"
    assert chain.log == []


def test_verify_refuses_an_impostor_and_a_mismatched_receipt(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    chain = FakeChain()
    challenge = issued(store, chain)
    impostor = sign_challenge(IMPOSTOR, challenge)
    with pytest.raises(DeviceClientError, match=f"signer {IMPOSTOR.address} is not the buyer {BUYER.address}"):
        verify_pickup(as_chain(chain), DEVICE.address, RECEIPT, impostor, store, NOW)
    other_order = replace(RECEIPT, order_id=8)
    with pytest.raises(DeviceClientError, match="the challenge is for order 7 but the receipt is for order 8"):
        verify_pickup(as_chain(chain), DEVICE.address, other_order, sign_challenge(BUYER, challenge), store, NOW)
    with pytest.raises(DeviceClientError, match="expired"):
        verify_pickup(as_chain(chain), DEVICE.address, RECEIPT, sign_challenge(BUYER, challenge), store, NOW + 121)


def test_verify_refuses_a_challenge_of_another_gate(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    challenge = Challenge(31337, SALES_ORDER, ORDER_ID, GATE_ID + 1, b"\x09" * 32, NOW + 120)
    store.save(challenge, NOW)
    with pytest.raises(DeviceClientError, match=f"issued for gate {GATE_ID + 1}, this is gate {GATE_ID}"):
        verify_pickup(as_chain(FakeChain()), DEVICE.address, RECEIPT, sign_challenge(BUYER, challenge), store, NOW)


def test_pickup_releases_on_chain_before_actuating(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    chain = FakeChain(block_time=NOW + 1_000)  # the chain's clock is ahead: its time sets the deadline
    challenge = issued(store, chain)
    actuator = RecordingActuator(chain)
    response = sign_challenge(BUYER, challenge)
    result = run_pickup(as_chain(chain), DEVICE, DEVICE, RECEIPT, response, store, actuator, "log", NOW)
    assert chain.log == ["transact", "actuate"]
    assert actuator.events == [ReleaseEvent(ORDER_ID, GATE_ID, BUYER.address, "0x" + "aa" * 32)]
    assert result.to_json()["txHash"] == "0x" + "aa" * 32 and result.gas_used == 80_000

    payer, name, order_id, gate_id, deadline, signature, consent = chain.sent[0]
    assert (payer, name, order_id, gate_id) == (DEVICE.address, "release", ORDER_ID, GATE_ID)
    # The buyer's signed challenge goes on chain as SalesOrder's BuyerConsent.
    assert consent == (challenge.challenge, challenge.expires_at, response.signature)
    assert deadline == NOW + 1_000 + RELEASE_SIGNATURE_LIFETIME
    message = device_action_message(
        31337, REGISTRY, GATE_ID, SALES_ORDER, release_action_hash(ORDER_ID, BUYER.address), 5, deadline
    )
    assert Account.recover_message(encode_typed_data(full_message=message), signature=signature) == DEVICE.address

    with pytest.raises(DeviceClientError, match="already used"):
        run_pickup(
            as_chain(chain), DEVICE, DEVICE, RECEIPT, sign_challenge(BUYER, challenge), store, actuator, "log", NOW
        )
    assert chain.log == ["transact", "actuate"]


def test_a_separate_account_can_pay_the_gas(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    chain = FakeChain()
    relayer = Account.from_key("0x" + "7a" * 32)
    response = sign_challenge(BUYER, issued(store, chain))
    run_pickup(as_chain(chain), DEVICE, relayer, RECEIPT, response, store, RecordingActuator(chain), "log", NOW)
    assert chain.sent[0][0] == relayer.address


def test_failed_release_never_actuates_and_burns_the_challenge(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    chain = FakeChain(fail_transaction=True)
    challenge = issued(store, chain)
    with pytest.raises(DeviceClientError, match="reverted: WrongStatus"):
        run_pickup(
            as_chain(chain),
            DEVICE,
            DEVICE,
            RECEIPT,
            sign_challenge(BUYER, challenge),
            store,
            RecordingActuator(chain),
            "log",
            NOW,
        )
    assert chain.log == ["transact", "release_of"]
    with pytest.raises(DeviceClientError, match="already used"):
        store.check(challenge, NOW)


def test_a_copy_of_the_release_mined_first_still_hands_the_item_over(tmp_path: Path) -> None:
    """Anyone may submit the gate's signed release: when a copy is mined first, our own transaction
    reverts, but the order was released at this gate to this buyer, so the gate must open."""
    store = ChallengeStore(tmp_path)
    copied = TransactionResult(tx_hash="0x" + "cc" * 32, gas_used=88_000, block_number=12)
    chain = FakeChain(fail_transaction=True, released_by_other=copied)
    actuator = RecordingActuator(chain)
    result = run_pickup(
        as_chain(chain), DEVICE, DEVICE, RECEIPT, sign_challenge(BUYER, issued(store, chain)), store, actuator,
        "log", NOW,
    )
    assert chain.log == ["transact", "release_of", "actuate"]
    assert actuator.events == [ReleaseEvent(ORDER_ID, GATE_ID, BUYER.address, copied.tx_hash)]
    assert result.tx_hash == copied.tx_hash


def test_actuator_failure_after_release_says_the_order_was_released(tmp_path: Path) -> None:
    store = ChallengeStore(tmp_path)
    chain = FakeChain()
    response = sign_challenge(BUYER, issued(store, chain))
    with pytest.raises(DeviceClientError, match=r"order 7 was released on chain .* but the actuator failed: GPIO17"):
        run_pickup(
            as_chain(chain), DEVICE, DEVICE, RECEIPT, response, store, RecordingActuator(chain, fail=True), "gpio", NOW
        )
