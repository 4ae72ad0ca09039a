"""The warehouse pickup (the paper's barcode flow), as a gate device runs it:

1. ``issue_challenge``: a buyer shows a receipt; the gate checks it against its deployment and the chain
   and issues a fresh single-use challenge for (order, gate).
2. ``verify_pickup``: the buyer's signature of that challenge must come from the receipt's buyer, who must
   own the paid order (``SalesOrder.verifyOwnership``); the gate must be Active and admit the seller.
3. ``run_pickup``: consume the challenge, have SalesOrder release the order with the gate's EIP-712
   ``DeviceAction`` signature and the buyer's signed challenge (SalesOrder checks both), and only once
   that transaction is confirmed drive the actuator. Releasing
   first means a buyer cannot take the item and then, after the pickup deadline, the refund too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .actuator import Actuator, ReleaseEvent
from .challenge import Challenge, ChallengeResponse, ChallengeStore, new_challenge, recover_signer
from .contracts import PERMISSION_RELEASE
from .deployment import Deployment
from .errors import DeviceClientError
from .receipt import Receipt

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from .chain import Chain, DeviceInfo, OrderInfo

# The gate's release signature is valid for two minutes: enough for the transaction to be mined. The gate
# waits for the receipt until the signature has expired (plus a margin), so a release cannot be mined after
# the gate gave up and told the buyer no.
RELEASE_SIGNATURE_LIFETIME = 120
RELEASE_WAIT_MARGIN = 30


@dataclass(frozen=True)
class VerifiedPickup:
    """Everything checked before an item may leave: who picks up which order at which gate."""

    receipt: Receipt
    challenge: Challenge
    buyer: str
    buyer_signature: bytes
    gate_id: int
    order: OrderInfo
    device: DeviceInfo

    def buyer_consent(self) -> tuple[bytes, int, bytes]:
        """SalesOrder's BuyerConsent: the challenge the buyer signed, its expiry, and the signature."""
        return (self.challenge.challenge, self.challenge.expires_at, self.buyer_signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": True,
            "chainId": self.receipt.chain_id,
            "salesOrder": self.receipt.sales_order,
            "orderId": self.order.order_id,
            "buyer": self.buyer,
            "seller": self.order.seller,
            "gateId": self.gate_id,
            "orderStatus": self.order.status,
            "price": self.order.price,
            "item": {"make": self.order.make, "model": self.order.model, "year": self.order.year},
            "challenge": "0x" + self.challenge.challenge.hex(),
            "challengeExpiresAt": self.challenge.expires_at,
        }

    def rows(self) -> list[tuple[str, object]]:
        """The result for people."""
        order = self.order
        return [
            ("order", order.order_id),
            ("item", f"{order.make} {order.model} ({order.year})"),
            ("price", f"{order.price} wei"),
            ("buyer", self.buyer),
            ("seller", order.seller),
            ("gate", self.gate_id),
            ("status", order.status),
            ("challenge", "0x" + self.challenge.challenge.hex()),
        ]


@dataclass(frozen=True)
class PickupResult:
    """A confirmed release, carried out by the actuator."""

    verified: VerifiedPickup
    tx_hash: str
    gas_used: int
    block_number: int
    actuator: str

    def to_json(self) -> dict[str, Any]:
        return {
            "released": True,
            "orderId": self.verified.order.order_id,
            "buyer": self.verified.buyer,
            "gateId": self.verified.gate_id,
            "txHash": self.tx_hash,
            "gasUsed": self.gas_used,
            "blockNumber": self.block_number,
            "actuator": self.actuator,
        }

    def rows(self) -> list[tuple[str, object]]:
        """The result for people."""
        return [
            ("order", self.verified.order.order_id),
            ("buyer", self.verified.buyer),
            ("gate", self.verified.gate_id),
            ("transaction", self.tx_hash),
            ("gas used", self.gas_used),
            ("block", self.block_number),
            ("actuator", self.actuator),
        ]


def check_receipt_matches(receipt: Receipt, deployment: Deployment) -> None:
    """The receipt must be for this deployment's chain and SalesOrder."""
    if receipt.chain_id != deployment.chain_id:
        raise DeviceClientError(
            f"receipt is for chain {receipt.chain_id} but this gate serves chain {deployment.chain_id}"
        )
    if receipt.sales_order != deployment.sales_order.address:
        raise DeviceClientError(
            f"receipt is for SalesOrder {receipt.sales_order} but this gate serves {deployment.sales_order.address}"
        )


def gate_id_of(chain: Chain, device_address: str) -> int:
    """The registry id of the device holding `device_address`; unregistered keys are an error."""
    gate_id = chain.device_id_of_key(device_address)
    if gate_id == 0:
        raise DeviceClientError(
            f"device not authorized: key {device_address} is not a device of DeviceRegistry "
            f"{chain.deployment.registry.address} (provision and activate it first)"
        )
    return gate_id


def require_paid(order: OrderInfo) -> None:
    """Only a paid order can be picked up."""
    if order.status == "Released":
        raise DeviceClientError(f"order {order.order_id} was already released to {order.buyer}")
    if order.status != "Paid":
        raise DeviceClientError(f"order {order.order_id} is {order.status}, not Paid: nothing to pick up")


def require_gate_authorized(chain: Chain, gate_id: int, seller: str) -> DeviceInfo:
    """The gate must be Active and admit the seller with RELEASE permission."""
    device = chain.device(gate_id)
    if device.state != "Active":
        raise DeviceClientError(f"device not authorized: gate {gate_id} is {device.state}, not Active")
    if not chain.has_permission(gate_id, seller, PERMISSION_RELEASE):
        raise DeviceClientError(
            f"device not authorized: gate {gate_id} does not admit seller {seller} (no live RELEASE permission)"
        )
    return device


def issue_challenge(
    chain: Chain, device_address: str, receipt: Receipt, store: ChallengeStore, ttl: int, now: int
) -> Challenge:
    """Checks the receipt (deployment, order paid, gate authorized) and stores a fresh challenge for it."""
    deployment = chain.deployment
    check_receipt_matches(receipt, deployment)
    gate_id = gate_id_of(chain, device_address)
    order = chain.order(receipt.order_id)
    require_paid(order)
    require_gate_authorized(chain, gate_id, order.seller)
    challenge = new_challenge(deployment.chain_id, deployment.sales_order.address, receipt.order_id, gate_id, ttl, now)
    store.save(challenge, now)
    return challenge


def verify_pickup(
    chain: Chain,
    device_address: str,
    receipt: Receipt,
    response: ChallengeResponse,
    store: ChallengeStore,
    now: int,
) -> VerifiedPickup:
    """Every check of a pickup except consuming the challenge and acting."""
    deployment = chain.deployment
    check_receipt_matches(receipt, deployment)
    presented = response.challenge
    if presented.order_id != receipt.order_id:
        raise DeviceClientError(
            f"the challenge is for order {presented.order_id} but the receipt is for order {receipt.order_id}"
        )
    challenge = store.check(presented, now)
    signer = recover_signer(ChallengeResponse(challenge, response.signature))
    if signer != receipt.buyer:
        raise DeviceClientError(
            f"signer {signer} is not the buyer {receipt.buyer} of order {receipt.order_id}: pickup refused"
        )
    gate_id = gate_id_of(chain, device_address)
    if challenge.gate_id != gate_id:
        raise DeviceClientError(f"the challenge was issued for gate {challenge.gate_id}, this is gate {gate_id}")
    order = chain.order(receipt.order_id)
    require_paid(order)
    if not chain.verify_ownership(receipt.order_id, signer):
        raise DeviceClientError(
            f"{signer} does not own order {receipt.order_id} (verifyOwnership is false; the buyer is {order.buyer})"
        )
    device = require_gate_authorized(chain, gate_id, order.seller)
    return VerifiedPickup(
        receipt=receipt,
        challenge=challenge,
        buyer=signer,
        buyer_signature=response.signature,
        gate_id=gate_id,
        order=order,
        device=device,
    )


def sign_release(chain: Chain, device: LocalAccount, verified: VerifiedPickup, deadline: int) -> bytes:
    """The gate's EIP-712 DeviceAction signature that lets SalesOrder release the order."""
    from .typed_data import device_action_message, release_action_hash

    deployment = chain.deployment
    message = device_action_message(
        deployment.chain_id,
        deployment.registry.address,
        verified.gate_id,
        deployment.sales_order.address,
        release_action_hash(verified.order.order_id, verified.buyer),
        verified.device.nonce,
        deadline,
    )
    return bytes(device.sign_typed_data(full_message=message).signature)


def run_pickup(
    chain: Chain,
    device: LocalAccount,
    gas_payer: LocalAccount,
    receipt: Receipt,
    response: ChallengeResponse,
    store: ChallengeStore,
    actuator: Actuator,
    actuator_name: str,
    now: int,
) -> PickupResult:
    """Verifies, consumes the challenge, releases on chain, then actuates."""
    verified = verify_pickup(chain, device.address, receipt, response, store, now)
    store.consume(verified.challenge)
    # The chain's clock decides whether the signature is still valid; an idle chain's latest block may be
    # old, a skewed local clock may be behind: take the later of the two.
    deadline = max(now, chain.latest_timestamp()) + RELEASE_SIGNATURE_LIFETIME
    signature = sign_release(chain, device, verified, deadline)
    order_id = verified.order.order_id
    first_block = chain.block_number()
    # The buyer's signed challenge goes on chain too: SalesOrder releases only with the buyer's consent.
    function = chain.sales_order.functions.release(
        order_id, verified.gate_id, deadline, signature, verified.buyer_consent()
    )
    what = f"SalesOrder.release({order_id}, gate {verified.gate_id})"
    try:
        transaction = chain.transact(
            gas_payer, function, what, receipt_timeout=RELEASE_SIGNATURE_LIFETIME + RELEASE_WAIT_MARGIN
        )
    except DeviceClientError:
        # Anyone may submit the gate's signed release, and a copy of ours may have been mined first (our own
        # then reverts). What decides the hand-over is whether the order was released at this gate to this
        # buyer, whoever paid the gas.
        released = chain.release_of(order_id, verified.gate_id, verified.buyer, first_block)
        if released is None:
            raise
        transaction = released
    event = ReleaseEvent(order_id=order_id, gate_id=verified.gate_id, buyer=verified.buyer, tx_hash=transaction.tx_hash)
    try:
        actuator.release(event)
    except DeviceClientError as error:
        raise DeviceClientError(
            f"order {order_id} was released on chain ({transaction.tx_hash}) but the actuator failed: {error.message}"
        ) from None
    return PickupResult(
        verified=verified,
        tx_hash=transaction.tx_hash,
        gas_used=transaction.gas_used,
        block_number=transaction.block_number,
        actuator=actuator_name,
    )
