"""SalesOrder: listing, purchase, release through an authorized gate device, refund, pull payments,
views of the paper's Table 1, pausing, and reentrancy.

The gate model: the gate device's OWNER admits the seller with DevicePermissions.RELEASE
(`registry.grantPermissions(gateId, seller, RELEASE, expiry)`); the gate then signs DeviceRegistry's
DeviceAction with target = SalesOrder and action = Release(orderId, buyer).  The session fixture
``gate`` is such a gate, owned by ``gate_owner``, with ``seller`` admitted.

Release also needs the BUYER's consent: their EIP-712 signature of the gate's pickup challenge,
PickupChallenge(orderId, gateId, challenge, expiresAt) in SalesOrder's own domain, so that a seller
who controls a gate cannot release (and take the escrow) without the buyer at the gate.

A device item's token stays in SalesOrder's escrow from createOrder until release (which passes it to the
buyer), or until cancel/refund (which give it back to the seller): a buyer who can still refund never owns
the device, so it cannot rotate its key or decommission it and then take the money back.  Refund is the
buyer's after the pickup deadline (paid at once) or the seller's at any time while Paid (the price becomes
the buyer's credit, withdrawn with ``withdraw``).
"""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

from contract_helpers import (
    ACTIVE,
    CANCELLED,
    DAY,
    DEFAULT_ADMIN_ROLE,
    GWEI,
    LISTED,
    MAX_UINT64,
    OLD_PICKUP_DOMAIN_NAME,
    OPERATE,
    PAID,
    PAUSER_ROLE,
    REFUNDED,
    RELEASE,
    RELEASED,
    SUSPENDED,
    ZERO_ADDRESS,
    assert_no_event,
    assert_single_event,
    domain_separator,
    item_tuple,
    key_of,
    make_item,
    reverts,
    sign,
    to_compact,
    to_high_s,
    typed_digest,
)
from thingledger_device import typed_data

pytestmark = pytest.mark.usefixtures("_deployments")

PRICE = 1_000_000 * GWEI  # 0.001 ether
REENTRANT_CALL = keccak(text="ReentrancyGuardReentrantCall()")[:4]
DEVICE_ACTION = keccak(text="open the valve")


def order_of(sales, order_id):
    return sales.getOrder(order_id)


def device_state(registry, device_id):
    """(key, state, warrantyEnd, nonce, epoch) of a device."""
    d = registry.getDevice(device_id)
    return (d.key, d.state, d.warrantyEnd, d.nonce, d.epoch)


def release(kit, sales, gate, order_id, buyer_address, sender, *, consent=None, **kwargs):
    """Release through ``gate``: the gate signs Release(order_id, buyer_address) (``kwargs`` go to
    the gate's signature); ``consent`` defaults to the order's buyer's consent at that gate."""
    deadline, sig = kit.release_signature(gate, order_id, buyer_address, **kwargs)
    if consent is None:
        consent = kit.buyer_consent(order_id, gate.id)
    return sales.release(order_id, gate.id, deadline, sig, consent, sender=sender)


# =========================================================================== deployment


def test_constructor_sets_registry_and_admin_roles(sales, registry, admin, stranger):
    assert sales.registry() == registry.address
    assert bytes(sales.PAUSER_ROLE()) == PAUSER_ROLE
    assert sales.supportsInterface(bytes.fromhex("7965db0b"))  # IAccessControl
    assert sales.supportsInterface(bytes.fromhex("01ffc9a7"))  # IERC165
    assert not sales.supportsInterface(bytes.fromhex("80ac58cd"))  # not an ERC-721
    assert sales.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert sales.hasRole(PAUSER_ROLE, admin)
    assert not sales.hasRole(PAUSER_ROLE, stranger)
    assert not sales.paused()
    assert sales.lastOrderId() == 0


@pytest.mark.parametrize("zero", ["registry", "admin"])
def test_constructor_rejects_zero_registry_or_admin(project, sales, registry, admin, zero):
    args = (ZERO_ADDRESS, admin) if zero == "registry" else (registry, ZERO_ADDRESS)
    with reverts(sales.ZeroAddress):
        admin.deploy(project.SalesOrder, *args)


# =========================================================================== createOrder


def test_create_order_stores_listing_and_emits_order_created(kit, sales, seller):
    item = make_item(make="Bosch", model="Drill X", year=2023, serial="BX-77")
    deadline = kit.now() + DAY
    order_id, receipt = kit.create_order(seller, item=item, price=PRICE, pickup_deadline=deadline)
    assert order_id == 1 == sales.lastOrderId()
    log = assert_single_event(
        receipt,
        sales.OrderCreated,
        orderId=1,
        seller=seller.address,
        deviceId=0,
        itemTypeId=1,
        price=PRICE,
        pickupDeadline=deadline,
    )
    assert list(log.item) == list(item_tuple(item))
    assert_single_event(receipt, sales.ItemTypeRegistered, itemTypeId=1, make="Bosch", model="Drill X", year=2023)
    order = order_of(sales, order_id)
    assert (order.seller, order.buyer, order.price, order.status) == (seller.address, ZERO_ADDRESS, PRICE, LISTED)
    assert (order.pickupDeadline, order.deviceId, order.itemTypeId) == (deadline, 0, 1)
    assert (order.make, order.model, order.year) == ("Bosch", "Drill X", 2023)
    assert not sales.isSold(order_id)


def test_item_type_is_registered_once_and_reused(kit, sales, seller, stranger):
    _, first = kit.create_order(seller, item=make_item(serial="A"))
    order_id, second = kit.create_order(stranger, item=make_item(serial="B"))  # same make/model/year
    assert len(first.decode_logs(sales.ItemTypeRegistered)) == 1
    assert_no_event(second, sales.ItemTypeRegistered)
    assert_single_event(second, sales.OrderCreated, orderId=2, itemTypeId=1)
    assert order_of(sales, order_id).itemTypeId == 1


@pytest.mark.parametrize("field,value", [("make", "Acme2"), ("model", "Widget2"), ("year", 2025)])
def test_item_type_differs_by_make_model_or_year(kit, sales, seller, field, value):
    kit.create_order(seller, item=make_item())
    order_id, receipt = kit.create_order(seller, item=make_item(**{field: value}))
    assert_single_event(receipt, sales.ItemTypeRegistered, itemTypeId=2)
    assert order_of(sales, order_id).itemTypeId == 2
    assert getattr(order_of(sales, order_id), field) == value


def test_item_codec_does_not_confuse_make_model_boundary(kit, sales, seller):
    """("ab","c") and ("a","bc") pack to different item types."""
    id1, _ = kit.create_order(seller, item=make_item(make="ab", model="c"))
    id2, _ = kit.create_order(seller, item=make_item(make="a", model="bc"))
    assert order_of(sales, id1).itemTypeId != order_of(sales, id2).itemTypeId
    assert (order_of(sales, id2).make, order_of(sales, id2).model) == ("a", "bc")


def test_create_order_without_pickup_deadline(kit, sales, seller):
    order_id, receipt = kit.create_order(seller, pickup_deadline=0)
    assert order_of(sales, order_id).pickupDeadline == 0
    assert_single_event(receipt, sales.OrderCreated, pickupDeadline=0)


def test_create_order_accepts_maximum_price(kit, sales, seller):
    max_price = MAX_UINT64 * GWEI
    order_id, _ = kit.create_order(seller, price=max_price)
    assert order_of(sales, order_id).price == max_price


@pytest.mark.parametrize("price", [0, MAX_UINT64 * GWEI + GWEI, MAX_UINT64 * GWEI + 1, 2**256 - 1])
def test_create_order_price_out_of_range_reverts(kit, sales, seller, price):
    with reverts(sales.PriceOutOfRange, price=price):
        kit.create_order(seller, price=price)


@pytest.mark.parametrize("price", [1, GWEI + 1, PRICE - 1])
def test_create_order_price_not_whole_gwei_reverts(kit, sales, seller, price):
    with reverts(sales.PriceNotWholeGwei, price=price):
        kit.create_order(seller, price=price)


@pytest.mark.parametrize("offset", [0, -1, -DAY])
def test_create_order_deadline_not_in_future_reverts(kit, sales, seller, chain, offset):
    now = kit.now()
    chain.pending_timestamp = now
    with reverts(sales.DeadlineInPast, pickupDeadline=now + offset):
        kit.create_order(seller, pickup_deadline=now + offset)


@pytest.mark.parametrize(
    "field,value", [("make", ""), ("model", ""), ("make", "m" * 65), ("model", "x" * 65)]
)
def test_create_order_invalid_item_field_reverts(kit, sales, seller, field, value):
    with reverts(sales.InvalidItemField):
        kit.create_order(seller, item=make_item(**{field: value}))


def test_create_order_accepts_64_byte_make_and_model(kit, sales, seller):
    order_id, _ = kit.create_order(seller, item=make_item(make="M" * 64, model="N" * 64, year=65535))
    order = order_of(sales, order_id)
    assert (order.make, order.model, order.year) == ("M" * 64, "N" * 64, 65535)


def test_create_order_while_paused_reverts(kit, sales, seller, admin):
    sales.pause(sender=admin)
    with reverts(sales.EnforcedPause):
        kit.create_order(seller)


def test_create_order_with_device_escrows_token(kit, registry, sales, seller, stranger):
    device = kit.new_device(owner=seller)
    registry.grantPermissions(device.id, stranger, OPERATE, kit.now() + DAY, sender=seller)
    registry.approve(sales, device.id, sender=seller)
    order_id, receipt = kit.create_order(seller, device_id=device.id)
    assert registry.ownerOf(device.id) == sales.address
    assert order_of(sales, order_id).deviceId == device.id
    assert_single_event(receipt, sales.OrderCreated, orderId=order_id, seller=seller.address, deviceId=device.id)
    # Escrow is an ownership change: the seller's grants on the device die.
    assert not registry.hasPermission(device.id, stranger, OPERATE)


def test_create_order_with_device_needs_approval(kit, registry, sales, seller):
    device = kit.new_device(owner=seller)
    with reverts(registry.ERC721InsufficientApproval, operator=sales.address, tokenId=device.id):
        kit.create_order(seller, device_id=device.id)
    assert registry.ownerOf(device.id) == seller.address


def test_create_order_cannot_list_someone_elses_approved_device(kit, registry, sales, seller, stranger):
    """The owner approved SalesOrder to list it; a front-runner cannot list it as their own."""
    device = kit.new_device(owner=seller)
    registry.approve(sales, device.id, sender=seller)
    with reverts(registry.ERC721IncorrectOwner, sender=stranger.address, tokenId=device.id, owner=seller.address):
        kit.create_order(stranger, device_id=device.id)
    assert registry.ownerOf(device.id) == seller.address


def test_create_order_with_decommissioned_device_reverts(kit, registry, sales, seller):
    device = kit.new_device(owner=seller)
    registry.approve(sales, device.id, sender=seller)
    registry.decommission(device.id, sender=seller)
    with reverts(registry.DeviceIsDecommissioned, deviceId=device.id):
        kit.create_order(seller, device_id=device.id)


def test_create_order_with_unknown_device_reverts(kit, registry, seller):
    with reverts(registry.ERC721NonexistentToken, tokenId=0xBEEF):
        kit.create_order(seller, device_id=0xBEEF)


def _last_ids_slot(chain, sales):
    """The storage slot packing _lastOrderId (uint64) and _lastItemTypeId (uint24), found by value."""
    expected = sales.lastOrderId() | (1 << 64)  # one item type registered so far
    for slot in range(32):
        if int.from_bytes(chain.provider.get_storage(sales.address, slot), "big") == expected:
            return slot
    raise AssertionError("slot of _lastOrderId/_lastItemTypeId not found")


def test_item_type_limit_reached_when_catalog_full(kit, sales, seller, chain):
    kit.create_order(seller, item=make_item())
    slot = _last_ids_slot(chain, sales)
    full = sales.lastOrderId() | ((2**24 - 1) << 64)
    chain.provider.make_request(
        "anvil_setStorageAt", [sales.address, hex(slot), "0x" + full.to_bytes(32, "big").hex()]
    )
    with reverts(sales.ItemTypeLimitReached):
        kit.create_order(seller, item=make_item(model="Brand new"))
    # Existing item types can still be listed.
    order_id, _ = kit.create_order(seller, item=make_item(serial="again"))
    assert order_of(sales, order_id).itemTypeId == 1


# =========================================================================== cancel


def test_cancel_listed_order_by_seller(kit, sales, seller):
    order_id, _ = kit.create_order(seller)
    receipt = sales.cancel(order_id, sender=seller)
    assert_single_event(receipt, sales.OrderCancelled, orderId=order_id, seller=seller.address)
    assert order_of(sales, order_id).status == CANCELLED
    assert not sales.isSold(order_id)


def test_cancel_returns_escrowed_device_token(kit, registry, sales, seller):
    device = kit.new_device(owner=seller)
    registry.approve(sales, device.id, sender=seller)
    order_id, _ = kit.create_order(seller, device_id=device.id)
    sales.cancel(order_id, sender=seller)
    assert registry.ownerOf(device.id) == seller.address
    assert registry.getDevice(device.id).state == ACTIVE


def test_cancel_by_non_seller_reverts(kit, sales, seller, stranger):
    order_id, _ = kit.create_order(seller)
    with reverts(sales.NotSeller, orderId=order_id, caller=stranger.address):
        sales.cancel(order_id, sender=stranger)


def test_cancel_unknown_order_reverts(sales, seller):
    with reverts(sales.UnknownOrder, orderId=7):
        sales.cancel(7, sender=seller)


@pytest.mark.parametrize("status", [PAID, CANCELLED])
def test_cancel_of_paid_or_cancelled_order_reverts(kit, sales, seller, buyer, status):
    order_id, _ = kit.create_order(seller)
    if status == PAID:
        sales.buy(order_id, sender=buyer, value=PRICE)
    else:
        sales.cancel(order_id, sender=seller)
    with reverts(sales.WrongStatus, orderId=order_id, status=status):
        sales.cancel(order_id, sender=seller)


def test_cancel_works_while_paused(kit, sales, seller, admin):
    order_id, _ = kit.create_order(seller)
    sales.pause(sender=admin)
    sales.cancel(order_id, sender=seller)
    assert order_of(sales, order_id).status == CANCELLED


# =========================================================================== buy


def test_buy_with_exact_payment_escrows_money_and_emits(kit, sales, seller, buyer):
    order_id, _ = kit.create_order(seller)
    buyer_before, contract_before = buyer.balance, sales.balance
    receipt = sales.buy(order_id, sender=buyer, value=PRICE)
    assert_single_event(receipt, sales.OrderPaid, orderId=order_id, buyer=buyer.address, seller=seller.address, price=PRICE)
    assert buyer.balance == buyer_before - PRICE - receipt.total_fees_paid
    assert sales.balance == contract_before + PRICE
    order = order_of(sales, order_id)
    assert (order.status, order.buyer) == (PAID, buyer.address)
    assert sales.isSold(order_id)
    assert sales.creditOf(seller) == 0  # the seller is credited only on release


def test_buy_device_item_keeps_token_in_escrow(kit, registry, sales, seller, buyer):
    """The token stays with SalesOrder until release: a buyer who can still refund never holds it."""
    device, order_id = kit.device_order(seller)
    before = device_state(registry, device.id)
    receipt = sales.buy(order_id, sender=buyer, value=PRICE)
    assert_single_event(receipt, sales.OrderPaid, orderId=order_id, buyer=buyer.address)
    assert_no_event(receipt, registry.Transfer)
    assert registry.ownerOf(device.id) == sales.address
    assert registry.balanceOf(buyer) == 0
    assert device_state(registry, device.id) == before  # no new ownership epoch, same key and nonce
    assert not registry.hasPermission(device.id, buyer, RELEASE)
    assert not registry.hasPermission(device.id, seller, RELEASE)
    assert order_of(sales, order_id).status == PAID


@pytest.mark.parametrize("sent", [0, PRICE - GWEI, PRICE - 1, PRICE + 1, 2 * PRICE])
def test_buy_with_wrong_payment_reverts(kit, sales, seller, buyer, sent):
    order_id, _ = kit.create_order(seller)
    with reverts(sales.WrongPayment, expected=PRICE, sent=sent):
        sales.buy(order_id, sender=buyer, value=sent)
    assert order_of(sales, order_id).status == LISTED


def test_seller_cannot_buy_own_order(kit, sales, seller):
    order_id, _ = kit.create_order(seller)
    with reverts(sales.SellerCannotBuy, orderId=order_id):
        sales.buy(order_id, sender=seller, value=PRICE)


def test_buy_at_pickup_deadline_succeeds(kit, sales, seller, buyer, chain):
    deadline = kit.now() + 100
    order_id, _ = kit.create_order(seller, pickup_deadline=deadline)
    chain.pending_timestamp = deadline
    sales.buy(order_id, sender=buyer, value=PRICE)
    assert order_of(sales, order_id).status == PAID


def test_buy_after_pickup_deadline_reverts(kit, sales, seller, buyer, chain):
    deadline = kit.now() + 100
    order_id, _ = kit.create_order(seller, pickup_deadline=deadline)
    chain.pending_timestamp = deadline + 1
    with reverts(sales.PickupDeadlinePassed, orderId=order_id, pickupDeadline=deadline):
        sales.buy(order_id, sender=buyer, value=PRICE)


def test_buy_order_without_deadline_long_after_listing(kit, sales, seller, buyer):
    order_id, _ = kit.create_order(seller, pickup_deadline=0)
    kit.warp(3650 * DAY)
    sales.buy(order_id, sender=buyer, value=PRICE)
    assert order_of(sales, order_id).status == PAID


def test_buy_while_paused_reverts_and_works_after_unpause(kit, sales, seller, buyer, admin):
    order_id, _ = kit.create_order(seller)
    sales.pause(sender=admin)
    with reverts(sales.EnforcedPause):
        sales.buy(order_id, sender=buyer, value=PRICE)
    sales.unpause(sender=admin)
    sales.buy(order_id, sender=buyer, value=PRICE)
    assert order_of(sales, order_id).status == PAID


def test_buy_unknown_order_reverts(sales, buyer):
    with reverts(sales.UnknownOrder, orderId=99):
        sales.buy(99, sender=buyer, value=PRICE)


@pytest.mark.parametrize("status", [PAID, CANCELLED])
def test_buy_of_sold_or_cancelled_order_reverts(kit, sales, seller, buyer, stranger, status):
    order_id, _ = kit.create_order(seller)
    if status == PAID:
        sales.buy(order_id, sender=buyer, value=PRICE)
    else:
        sales.cancel(order_id, sender=seller)
    with reverts(sales.WrongStatus, orderId=order_id, status=status):
        sales.buy(order_id, sender=stranger, value=PRICE)


# =========================================================================== release


def test_release_action_hash_matches_device_client(sales, buyer):
    assert bytes(sales.releaseActionHash(42, buyer)) == typed_data.release_action_hash(42, buyer.address)
    assert bytes(sales.releaseActionHash(42, buyer)) != typed_data.release_action_hash(43, buyer.address)


def test_release_through_authorized_gate_credits_seller(kit, registry, sales, gate, seller, buyer, stranger):
    order_id = kit.create_and_buy(seller, buyer)
    nonce = registry.getDevice(gate.id).nonce
    receipt = release(kit, sales, gate, order_id, buyer.address, sender=stranger)  # anyone may submit
    assert_single_event(receipt, sales.OrderReleased, orderId=order_id, gateId=gate.id, buyer=buyer.address)
    assert_single_event(
        receipt,
        registry.DeviceActionExecuted,
        deviceId=gate.id,
        target=sales.address,
        actionHash=typed_data.release_action_hash(order_id, buyer.address),
        nonce=nonce,
    )
    assert registry.getDevice(gate.id).nonce == nonce + 1
    assert sales.creditOf(seller) == PRICE
    assert order_of(sales, order_id).status == RELEASED
    assert sales.isSold(order_id)
    assert sales.verifyOwnership(order_id, buyer)


def test_double_release_reverts(kit, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    deadline, sig = kit.release_signature(gate, order_id, buyer.address)
    consent = kit.buyer_consent(order_id, gate.id)
    sales.release(order_id, gate.id, deadline, sig, consent, sender=buyer)
    with reverts(sales.WrongStatus, orderId=order_id, status=RELEASED):
        sales.release(order_id, gate.id, deadline, sig, consent, sender=buyer)
    with reverts(sales.WrongStatus, orderId=order_id, status=RELEASED):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer)  # fresh signature too
    assert sales.creditOf(seller) == PRICE


def test_release_of_listed_order_reverts(kit, sales, gate, seller, buyer):
    order_id, _ = kit.create_order(seller)
    with reverts(sales.WrongStatus, orderId=order_id, status=LISTED):
        release(kit, sales, gate, order_id, ZERO_ADDRESS, sender=buyer)


def test_release_of_unknown_order_reverts(kit, sales, gate, buyer):
    with reverts(sales.UnknownOrder, orderId=55):
        release(kit, sales, gate, 55, buyer.address, sender=buyer)


def test_release_through_gate_that_never_admitted_seller_reverts(kit, registry, sales, gate_owner, seller, buyer):
    other_gate = kit.new_device(owner=gate_owner)  # active, but the seller was not admitted
    order_id = kit.create_and_buy(seller, buyer)
    with reverts(sales.GateNotAuthorized, gateId=other_gate.id, seller=seller.address):
        release(kit, sales, other_gate, order_id, buyer.address, sender=buyer)
    assert order_of(sales, order_id).status == PAID
    assert registry.getDevice(other_gate.id).nonce == 1  # no nonce consumed


@pytest.mark.parametrize("how", ["revoked", "expired", "other_bits_only", "granted_to_buyer_not_seller"])
def test_release_with_dead_or_insufficient_grant_reverts(kit, registry, sales, gate, gate_owner, seller, buyer, how):
    order_id = kit.create_and_buy(seller, buyer)
    if how == "revoked":
        registry.revokePermissions(gate.id, seller, sender=gate_owner)
    elif how == "expired":
        registry.grantPermissions(gate.id, seller, RELEASE, kit.now() + 10, sender=gate_owner)
        kit.warp(11)
    elif how == "other_bits_only":
        registry.grantPermissions(gate.id, seller, OPERATE | 2 | 8, kit.now() + DAY, sender=gate_owner)
    else:
        registry.revokePermissions(gate.id, seller, sender=gate_owner)
        registry.grantPermissions(gate.id, buyer, RELEASE, kit.now() + DAY, sender=gate_owner)
    with reverts(sales.GateNotAuthorized, gateId=gate.id, seller=seller.address):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer)


def test_release_through_suspended_gate_reverts(kit, registry, sales, gate, gate_owner, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    registry.suspend(gate.id, sender=gate_owner)
    with reverts(sales.GateNotAuthorized, gateId=gate.id, seller=seller.address):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    registry.resume(gate.id, sender=gate_owner)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    assert sales.creditOf(seller) == PRICE


def test_release_after_gate_changed_owner_reverts(kit, registry, sales, gate, gate_owner, stranger, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    registry.transferFrom(gate_owner, stranger, gate.id, sender=gate_owner)  # kills the seller's grant
    with reverts(sales.GateNotAuthorized, gateId=gate.id, seller=seller.address):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer)


def test_release_through_unknown_gate_reverts(kit, sales, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    with reverts(sales.GateNotAuthorized, gateId=1234, seller=seller.address):
        sales.release(order_id, 1234, kit.deadline(), b"\x00" * 65, kit.buyer_consent(order_id, 1234), sender=buyer)


def test_release_through_gate_owned_by_seller_needs_no_grant(kit, registry, sales, seller, buyer):
    """The owner of a gate implicitly holds RELEASE: a seller running its own gate releases its own orders
    (with the buyer's consent at that gate, which ``release`` signs by default)."""
    own_gate = kit.new_device(owner=seller)
    order_id = kit.create_and_buy(seller, buyer)
    release(kit, sales, own_gate, order_id, buyer.address, sender=seller)
    assert sales.creditOf(seller) == PRICE


def test_release_signed_by_wrong_key_reverts(kit, registry, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer, key=Account.create())
    assert order_of(sales, order_id).status == PAID
    assert sales.creditOf(seller) == 0


def test_release_signature_bound_to_another_buyer_reverts(kit, registry, sales, gate, seller, buyer, stranger):
    order_id = kit.create_and_buy(seller, buyer)
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        release(kit, sales, gate, order_id, stranger.address, sender=stranger)
    assert order_of(sales, order_id).status == PAID


def test_release_signature_for_another_order_reverts(kit, registry, sales, gate, seller, buyer):
    first = kit.create_and_buy(seller, buyer)
    second = kit.create_and_buy(seller, buyer)
    deadline, sig_for_first = kit.release_signature(gate, first, buyer.address)
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        sales.release(second, gate.id, deadline, sig_for_first, kit.buyer_consent(second, gate.id), sender=buyer)


@pytest.mark.parametrize("target", ["registry", "eoa"])
def test_release_signature_for_another_target_reverts(kit, registry, sales, gate, seller, buyer, stranger, target):
    order_id = kit.create_and_buy(seller, buyer)
    action = typed_data.release_action_hash(order_id, buyer.address)
    deadline, sig = kit.action_signature(gate, registry if target == "registry" else stranger.address, action)
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        sales.release(order_id, gate.id, deadline, sig, kit.buyer_consent(order_id, gate.id), sender=buyer)


def test_release_with_expired_gate_signature_reverts(kit, registry, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    deadline, sig = kit.release_signature(gate, order_id, buyer.address, deadline=kit.now() + 10)
    kit.warp(11)
    with reverts(registry.SignatureExpired, deadline=deadline):
        sales.release(order_id, gate.id, deadline, sig, kit.buyer_consent(order_id, gate.id), sender=buyer)


def test_release_with_old_gate_key_after_rotation_reverts(kit, registry, sales, gate, gate_owner, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    nonce_after = registry.getDevice(gate.id).nonce + 1
    deadline, old_sig = kit.release_signature(gate, order_id, buyer.address, nonce=nonce_after)
    new_key = Account.create()
    rdeadline, rsig = kit.rotate_signature(gate, new_key)
    registry.rotateKey(gate.id, new_key.address, rdeadline, rsig, sender=gate_owner)
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        sales.release(order_id, gate.id, deadline, old_sig, kit.buyer_consent(order_id, gate.id), sender=buyer)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer, key=new_key)
    assert order_of(sales, order_id).status == RELEASED


def test_release_signature_for_another_chain_reverts(kit, registry, sales, gate, seller, buyer, chain_id):
    order_id = kit.create_and_buy(seller, buyer)
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer, chain_id=chain_id + 1)


def test_release_works_while_paused(kit, sales, gate, seller, buyer, admin):
    order_id = kit.create_and_buy(seller, buyer)
    sales.pause(sender=admin)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    assert sales.creditOf(seller) == PRICE


def test_release_is_still_possible_after_pickup_deadline_until_refunded(kit, sales, gate, seller, buyer):
    """Documents the race: after the pickup deadline both release and refund are open; first wins."""
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    kit.warp(200)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    with reverts(sales.WrongStatus, orderId=order_id, status=RELEASED):
        sales.refund(order_id, sender=buyer)


# =========================================================================== release: device items


def test_release_of_device_item_moves_token_to_buyer(kit, registry, sales, gate, seller, buyer, stranger):
    device, order_id = kit.device_order(seller, buyer)
    before = device_state(registry, device.id)
    # A refused release leaves the token in escrow.
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        release(kit, sales, gate, order_id, buyer.address, sender=stranger, key=Account.create())
    assert registry.ownerOf(device.id) == sales.address

    receipt = release(kit, sales, gate, order_id, buyer.address, sender=stranger)
    assert_single_event(receipt, sales.OrderReleased, orderId=order_id, gateId=gate.id, buyer=buyer.address)
    assert_single_event(receipt, registry.Transfer, **{"from": sales.address, "to": buyer.address, "tokenId": device.id})
    assert registry.ownerOf(device.id) == buyer.address
    assert registry.balanceOf(sales) == 0
    key, state, warranty_end, nonce, epoch = device_state(registry, device.id)
    # The device is unchanged but for a new ownership epoch; the buyer, as owner, holds every permission.
    assert (key, state, warranty_end, nonce, epoch) == before[:4] + (before[4] + 1,)
    assert registry.hasPermission(device.id, buyer, RELEASE | OPERATE)
    assert order_of(sales, order_id).status == RELEASED
    assert sales.creditOf(seller) == PRICE


def _owner_only_calls(kit, registry, device, grantee):
    """Every owner-only DeviceRegistry call on ``device``, as (name, call(sender))."""
    new_key = Account.create()
    rotate_deadline, rotate_sig = kit.rotate_signature(device, new_key)
    return [
        ("rotateKey", lambda who: registry.rotateKey(device.id, new_key.address, rotate_deadline, rotate_sig, sender=who)),
        ("decommission", lambda who: registry.decommission(device.id, sender=who)),
        ("suspend", lambda who: registry.suspend(device.id, sender=who)),
        ("grantPermissions", lambda who: registry.grantPermissions(device.id, grantee, OPERATE | RELEASE, kit.now() + DAY, sender=who)),
        ("revokePermissions", lambda who: registry.revokePermissions(device.id, grantee, sender=who)),
    ]


@pytest.mark.parametrize("refund_by", ["buyer", "seller"])
def test_attack_buyer_cannot_take_over_the_device_and_still_refund(kit, registry, sales, seller, buyer, refund_by):
    """THE ATTACK escrow-until-release closes.  When buy() handed the token over, a buyer could rotate the
    device's key to one of its own (or decommission it, or admit itself through grants) and then refund after
    the pickup deadline: the money back, and the seller's device hijacked or bricked.  Now, while the order
    is Paid, the buyer owns nothing: every owner-only call reverts NotDeviceOwner (the seller's too: the
    token is in escrow), nobody can move the token out, and the refund hands the seller the device exactly
    as it was."""
    pickup_deadline = kit.now() + DAY
    device, order_id = kit.device_order(seller, buyer, pickup_deadline=pickup_deadline)
    before = device_state(registry, device.id)
    for who in (buyer, seller):
        for name, call in _owner_only_calls(kit, registry, device, who):
            with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=who.address):
                call(who)
        with reverts(registry.ERC721InsufficientApproval, operator=who.address, tokenId=device.id):
            registry.transferFrom(sales, who, device.id, sender=who)
    assert registry.ownerOf(device.id) == sales.address
    assert device_state(registry, device.id) == before
    assert not registry.hasPermission(device.id, buyer, OPERATE)
    assert tuple(registry.grantOf(device.id, buyer)) == (0, 0, False)

    if refund_by == "buyer":
        kit.warp(DAY + 1)
    sales.refund(order_id, sender=seller if refund_by == "seller" else buyer)
    assert order_of(sales, order_id).status == REFUNDED
    assert registry.ownerOf(device.id) == seller.address
    key, state, warranty_end, nonce, epoch = device_state(registry, device.id)
    assert (key, state, warranty_end, nonce) == (device.key.address, ACTIVE, before[2], before[3])
    assert epoch == before[4] + 1
    # The device still acts with its own key, for its seller, who controls it again.
    deadline, sig = kit.action_signature(device, seller.address, DEVICE_ACTION)
    registry.useDeviceAction(device.id, DEVICE_ACTION, deadline, sig, sender=seller)
    with reverts(registry.NotDeviceOwner, deviceId=device.id, caller=buyer.address):
        registry.decommission(device.id, sender=buyer)
    registry.suspend(device.id, sender=seller)
    assert registry.getDevice(device.id).state == SUSPENDED


def test_after_release_the_buyer_owns_and_controls_the_device(kit, registry, sales, gate, seller, buyer):
    """Release is where control passes: the buyer can then rotate the key, grant and decommission, and the
    order can no longer be refunded by anyone."""
    pickup_deadline = kit.now() + DAY
    device, order_id = kit.device_order(seller, buyer, pickup_deadline=pickup_deadline)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    assert registry.ownerOf(device.id) == buyer.address

    new_key = Account.create()
    deadline, sig = kit.rotate_signature(device, new_key)
    receipt = registry.rotateKey(device.id, new_key.address, deadline, sig, sender=buyer)
    assert_single_event(receipt, registry.DeviceKeyRotated, deviceId=device.id, newKey=new_key.address)
    registry.grantPermissions(device.id, seller, OPERATE, kit.now() + DAY, sender=buyer)
    assert registry.hasPermission(device.id, seller, OPERATE)
    kit.warp(DAY + 1)
    for who in (buyer, seller):
        with reverts(sales.WrongStatus, orderId=order_id, status=RELEASED):
            sales.refund(order_id, sender=who)
    receipt = registry.decommission(device.id, sender=buyer)
    assert_single_event(receipt, registry.DeviceDecommissioned, deviceId=device.id, owner=buyer.address)
    assert registry.ownerOf(device.id) == buyer.address


# =========================================================================== release: the buyer's consent


def _release_state(kit, registry, sales, gate_id, order_id, seller):
    """Everything a refused release must leave untouched."""
    return (
        order_of(sales, order_id).status,
        sales.creditOf(seller),
        registry.getDevice(gate_id).nonce,
        sales.balance,
    )


def test_release_with_valid_buyer_consent_succeeds(kit, registry, sales, gate, seller, buyer, stranger):
    order_id = kit.create_and_buy(seller, buyer)
    challenge, expires_at = kit.new_challenge(), kit.now() + 60
    consent = kit.consent(buyer, order_id, gate.id, challenge=challenge, expires_at=expires_at)
    digest = bytes(sales.pickupDigest(order_id, gate.id, challenge, expires_at))
    assert Account._recover_hash(digest, signature=consent[2]) == buyer.address
    # A relayer submits: neither the gate's nor the buyer's signature names the sender.
    receipt = release(kit, sales, gate, order_id, buyer.address, sender=stranger, consent=consent)
    assert_single_event(receipt, sales.OrderReleased, orderId=order_id, gateId=gate.id, buyer=buyer.address)
    assert order_of(sales, order_id).status == RELEASED
    assert sales.creditOf(seller) == PRICE


CONSENT_FORGERIES = [
    "impostor",
    "seller",
    "gate_key",
    "another_order",
    "another_gate",
    "challenge_differs",
    "expires_at_differs",
    "registry_domain",
    "old_pickup_domain_name",
    "another_chain",
    "another_sales_order",
    "eth_sign_of_digest",
]


@pytest.mark.parametrize("how", CONSENT_FORGERIES)
def test_release_refused_without_the_buyers_exact_consent(
    project, admin, kit, registry, sales, gate, gate_owner, seller, buyer, stranger, chain_id, how
):
    """Each consent differs from the buyer's signature of exactly (SalesOrder's domain, this order, this
    gate, the challenge and expiry submitted) in one way only; the exact one then releases, so the
    refusal was the consent's alone."""
    order_id = kit.create_and_buy(seller, buyer)
    challenge, expires_at = kit.new_challenge(), kit.now() + 120
    exact = {"challenge": challenge, "expires_at": expires_at}

    def buyer_signs(message):
        return kit.consent(buyer, order_id, gate.id, message=message, **exact)

    if how == "impostor":
        consent = kit.consent(stranger, order_id, gate.id, **exact)
    elif how == "seller":
        consent = kit.consent(seller, order_id, gate.id, **exact)
    elif how == "gate_key":
        consent = kit.consent(gate.key, order_id, gate.id, **exact)
    elif how == "another_order":
        # The same buyer's genuine consent to pick up their other order at this gate.
        other = kit.create_and_buy(seller, buyer)
        consent = kit.consent(buyer, other, gate.id, **exact)
        assert Account._recover_hash(
            bytes(sales.pickupDigest(other, gate.id, challenge, expires_at)), signature=consent[2]
        ) == buyer.address
    elif how == "another_gate":
        other_gate = kit.new_device(owner=gate_owner)
        consent = kit.consent(buyer, order_id, other_gate.id, **exact)
    elif how == "challenge_differs":
        signed = kit.consent(buyer, order_id, gate.id, **exact)
        consent = (bytes(b ^ 0xFF for b in challenge[:1]) + challenge[1:], expires_at, signed[2])
    elif how == "expires_at_differs":
        signed = kit.consent(buyer, order_id, gate.id, **exact)
        consent = (challenge, expires_at + 3600, signed[2])  # "extended" by whoever submits
    elif how == "registry_domain":
        message = kit.pickup_message(order_id, gate.id, challenge, expires_at)
        message["domain"] = {
            **message["domain"],
            "name": typed_data.REGISTRY_DOMAIN_NAME,
            "verifyingContract": registry.address,
        }
        consent = buyer_signs(message)
    elif how == "old_pickup_domain_name":
        # What the device client signed before SalesOrder verified the challenge.
        message = kit.pickup_message(order_id, gate.id, challenge, expires_at)
        message["domain"] = {**message["domain"], "name": OLD_PICKUP_DOMAIN_NAME}
        consent = buyer_signs(message)
    elif how == "another_chain":
        consent = kit.consent(buyer, order_id, gate.id, chain_id=chain_id + 1, **exact)
    elif how == "another_sales_order":
        other_sales = admin.deploy(project.SalesOrder, registry, admin)
        consent = kit.consent(buyer, order_id, gate.id, sales=other_sales, **exact)
        # It is a genuine consent in the other deployment's domain.
        assert Account._recover_hash(
            bytes(other_sales.pickupDigest(order_id, gate.id, challenge, expires_at)), signature=consent[2]
        ) == buyer.address
    elif how == "eth_sign_of_digest":
        # A wallet's personal_sign (EIP-191 "\x19Ethereum Signed Message:\n32") of the right digest.
        digest = bytes(sales.pickupDigest(order_id, gate.id, challenge, expires_at))
        signature = Account.sign_message(encode_defunct(primitive=digest), key_of(buyer).key).signature
        consent = (challenge, expires_at, bytes(signature))
    else:  # pragma: no cover
        raise AssertionError(how)

    before = _release_state(kit, registry, sales, gate.id, order_id, seller)
    with reverts(sales.InvalidBuyerConsent, orderId=order_id):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer, consent=consent)
    assert _release_state(kit, registry, sales, gate.id, order_id, seller) == before

    release(kit, sales, gate, order_id, buyer.address, sender=buyer, consent=kit.consent(buyer, order_id, gate.id, **exact))
    assert order_of(sales, order_id).status == RELEASED


MALFORMED_SIGNATURES = {
    "empty": lambda sig: b"",
    "one_byte": lambda sig: sig[:1],
    "64_bytes_truncated": lambda sig: sig[:64],
    "eip2098_compact": to_compact,  # the same signature in 64 bytes: ECDSA.tryRecover(bytes) takes 65 only
    "66_bytes": lambda sig: sig + b"\x00",
    "65_zero_bytes": lambda sig: b"\x00" * 65,
    "v_0_or_1": lambda sig: sig[:64] + bytes([sig[64] - 27]),
    "v_flipped": lambda sig: sig[:64] + bytes([55 - sig[64]]),  # 27 <-> 28: recovers another address
    "high_s": to_high_s,  # the malleable twin: ecrecover would accept it
    "r_zero": lambda sig: b"\x00" * 32 + sig[32:],
}


@pytest.mark.parametrize("how", list(MALFORMED_SIGNATURES))
def test_release_refused_with_malformed_or_malleable_consent_signature(
    kit, registry, sales, gate, seller, buyer, how
):
    order_id = kit.create_and_buy(seller, buyer)
    challenge, expires_at, good = kit.consent(buyer, order_id, gate.id)
    bad = MALFORMED_SIGNATURES[how](good)
    assert bad != good
    if how == "high_s":
        digest = bytes(sales.pickupDigest(order_id, gate.id, challenge, expires_at))
        r, s, v = bad[:32], bad[32:64], bad[64]
        assert Account._recover_hash(digest, vrs=(v, int.from_bytes(r, "big"), int.from_bytes(s, "big"))) == buyer.address
    before = _release_state(kit, registry, sales, gate.id, order_id, seller)
    with reverts(sales.InvalidBuyerConsent, orderId=order_id):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer, consent=(challenge, expires_at, bad))
    assert _release_state(kit, registry, sales, gate.id, order_id, seller) == before
    release(kit, sales, gate, order_id, buyer.address, sender=buyer, consent=(challenge, expires_at, good))
    assert order_of(sales, order_id).status == RELEASED


def test_attack_seller_owning_a_gate_cannot_release_its_paid_order_without_the_buyer(
    kit, registry, sales, seller, buyer, stranger
):
    """THE ATTACK the consent closes.  A seller who owns a gate device holds RELEASE implicitly and holds
    the gate's key, so before the buyer's consent it could sign Release for its own paid order, credit
    itself and withdraw the escrow, leaving the buyer nothing to refund.  Now every consent it can make
    up, including the buyer's genuine consent of an earlier pickup at this very gate, is refused, and
    the buyer gets the money back after the pickup deadline."""
    own_gate = kit.new_device(owner=seller)
    assert registry.hasPermission(own_gate.id, seller, RELEASE)  # as owner, no grant needed

    # An earlier, genuine pickup at the seller's gate: the gate kept the buyer's consent.
    earlier = kit.create_and_buy(seller, buyer)
    earlier_consent = kit.consent(buyer, earlier, own_gate.id)
    release(kit, sales, own_gate, earlier, buyer.address, sender=seller, consent=earlier_consent)
    assert sales.creditOf(seller) == PRICE

    pickup_deadline = kit.now() + DAY
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=pickup_deadline)
    assert sales.balance == 2 * PRICE  # the earlier sale's unwithdrawn credit + this order's escrow
    attempts = {
        "no signature": (b"\x00" * 32, kit.now() + 120, b""),
        "signed by the seller": kit.consent(seller, order_id, own_gate.id),
        "signed by the gate key": kit.consent(own_gate.key, order_id, own_gate.id),
        "signed by a stranger": kit.consent(stranger, order_id, own_gate.id),
        "the buyer's earlier consent replayed": earlier_consent,
    }
    nonce = registry.getDevice(own_gate.id).nonce
    for name, consent in attempts.items():
        # The gate's own signature is genuine every time: only the buyer's consent is missing.
        with reverts(sales.InvalidBuyerConsent, orderId=order_id):
            release(kit, sales, own_gate, order_id, buyer.address, sender=seller, consent=consent)
        assert order_of(sales, order_id).status == PAID, name
    assert registry.getDevice(own_gate.id).nonce == nonce
    assert sales.creditOf(seller) == PRICE  # the earlier sale only
    assert sales.balance == 2 * PRICE

    # The buyer never came: after the deadline they take their money back.
    kit.mine_at(pickup_deadline + 1)
    buyer_before = buyer.balance
    receipt = sales.refund(order_id, sender=buyer)
    assert_single_event(receipt, sales.OrderRefunded, orderId=order_id, buyer=buyer.address, amount=PRICE)
    assert buyer.balance == buyer_before + PRICE - receipt.total_fees_paid
    assert order_of(sales, order_id).status == REFUNDED
    # Too late for the seller now, even with a genuine consent.
    with reverts(sales.WrongStatus, orderId=order_id, status=REFUNDED):
        release(kit, sales, own_gate, order_id, buyer.address, sender=seller)
    seller_before = seller.balance
    receipt = sales.withdraw(sender=seller)
    assert seller.balance == seller_before + PRICE - receipt.total_fees_paid
    assert sales.balance == 0


def test_release_checks_gate_authorization_before_the_consent(kit, registry, sales, gate_owner, seller, buyer, stranger):
    unadmitted = kit.new_device(owner=gate_owner)
    order_id = kit.create_and_buy(seller, buyer)
    with reverts(sales.GateNotAuthorized, gateId=unadmitted.id, seller=seller.address):
        release(kit, sales, unadmitted, order_id, buyer.address, sender=buyer,
                consent=kit.consent(stranger, order_id, unadmitted.id))


def test_release_checks_the_consent_before_the_gate_signature(kit, registry, sales, gate, seller, buyer, stranger):
    order_id = kit.create_and_buy(seller, buyer)
    nonce = registry.getDevice(gate.id).nonce
    forged = kit.consent(stranger, order_id, gate.id)
    # Gate signature by the wrong key AND a forged consent: the consent is refused first.
    with reverts(sales.InvalidBuyerConsent, orderId=order_id):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer, consent=forged, key=Account.create())
    # An expired gate signature too.
    deadline, sig = kit.release_signature(gate, order_id, buyer.address, deadline=kit.now() + 5)
    kit.warp(10)
    with reverts(sales.InvalidBuyerConsent, orderId=order_id):
        sales.release(order_id, gate.id, deadline, sig, forged, sender=buyer)
    assert registry.getDevice(gate.id).nonce == nonce
    # With the buyer's consent, the bad gate signature is what the registry refuses.
    with reverts(registry.InvalidDeviceSignature, deviceId=gate.id):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer, key=Account.create())
    assert order_of(sales, order_id).status == PAID


def test_contract_buyer_consents_through_erc1271(kit, sales, gate, seller, stranger, actor):
    """A smart-wallet buyer has no key of its own: SalesOrder asks it (ERC-1271) whether its signer signed."""
    actor.setSigner(stranger.address, sender=stranger)
    order_id, _ = kit.create_order(seller)
    actor_buy(sales, actor, order_id, stranger)
    assert order_of(sales, order_id).buyer == actor.address
    for impostor in (seller, gate.key):
        with reverts(sales.InvalidBuyerConsent, orderId=order_id):
            release(kit, sales, gate, order_id, actor.address, sender=stranger,
                    consent=kit.consent(impostor, order_id, gate.id))
    release(kit, sales, gate, order_id, actor.address, sender=stranger,
            consent=kit.consent(stranger, order_id, gate.id))
    assert order_of(sales, order_id).status == RELEASED


def test_contract_buyer_that_accepts_no_signature_cannot_consent(kit, sales, gate, seller, stranger, actor):
    """A contract buyer whose isValidSignature accepts nothing is refused, and refunds after the deadline."""
    order_id, _ = kit.create_order(seller, pickup_deadline=kit.now() + 100)
    actor_buy(sales, actor, order_id, stranger)
    with reverts(sales.InvalidBuyerConsent, orderId=order_id):
        release(kit, sales, gate, order_id, actor.address, sender=stranger,
                consent=kit.consent(stranger, order_id, gate.id))
    kit.warp(101)
    actor.execute(sales, sales.refund.encode_input(order_id), 0, sender=stranger)
    assert order_of(sales, order_id).status == REFUNDED


def test_release_refuses_an_expired_consent(kit, sales, gate, seller, buyer):
    """A consent is good until its challenge's expiresAt and not a second later, so one a gate captured
    during a pickup that did not happen cannot be used afterwards."""
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 2 * DAY)
    expires_at = kit.now() + 60
    consent = kit.consent(buyer, order_id, gate.id, expires_at=expires_at)
    kit.warp(61)
    with reverts(sales.BuyerConsentExpired, orderId=order_id, expiresAt=expires_at):
        release(kit, sales, gate, order_id, buyer.address, sender=seller, consent=consent)
    assert order_of(sales, order_id).status == PAID


def test_release_accepts_a_consent_at_its_expires_at(kit, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    expires_at = kit.now() + 60
    consent = kit.consent(buyer, order_id, gate.id, expires_at=expires_at)
    kit.chain.pending_timestamp = expires_at
    release(kit, sales, gate, order_id, buyer.address, sender=seller, consent=consent)
    assert order_of(sales, order_id).status == RELEASED


# --------------------------------------------------------------------------- pickupDigest, domainSeparator

SALES_ORDER_DOMAIN_NAME = "thingledger SalesOrder"  # spelt out: not taken from the device client
PICKUP_TYPE = "PickupChallenge(uint256 orderId,uint256 gateId,bytes32 challenge,uint256 expiresAt)"


def _pickup_digest_by_hand(chain_id, sales_address, order_id, gate_id, challenge, expires_at):
    struct_hash = keccak(
        abi_encode(
            ["bytes32", "uint256", "uint256", "bytes32", "uint256"],
            [keccak(text=PICKUP_TYPE), order_id, gate_id, challenge, expires_at],
        )
    )
    return keccak(b"\x19\x01" + domain_separator(SALES_ORDER_DOMAIN_NAME, chain_id, sales_address) + struct_hash)


@pytest.mark.parametrize(
    "order_id,gate_id,challenge,expires_at",
    [
        (1, 2, b"\x11" * 32, 1_750_000_000),
        (0, 0, b"\x00" * 32, 0),
        (2**256 - 1, 2**160 - 1, b"\xff" * 32, 2**256 - 1),
    ],
)
def test_pickup_digest_equals_eth_account_digest(kit, sales, buyer, chain_id, order_id, gate_id, challenge, expires_at):
    message = typed_data.pickup_challenge_message(chain_id, sales.address, order_id, gate_id, challenge, expires_at)
    on_chain = bytes(sales.pickupDigest(order_id, gate_id, challenge, expires_at))
    assert on_chain == typed_digest(message)
    assert on_chain == _pickup_digest_by_hand(chain_id, sales.address, order_id, gate_id, challenge, expires_at)
    signature = sign(key_of(buyer), message)
    assert Account._recover_hash(on_chain, signature=signature) == buyer.address


def test_pickup_digest_changes_with_every_field(sales):
    base = (5, 7, b"\x01" * 32, 1_000)
    variants = [
        base,
        (6, 7, b"\x01" * 32, 1_000),
        (5, 8, b"\x01" * 32, 1_000),
        (5, 7, b"\x02" + b"\x01" * 31, 1_000),
        (5, 7, b"\x01" * 32, 1_001),
        (7, 5, b"\x01" * 32, 1_000),  # order and gate swapped
    ]
    assert len({bytes(sales.pickupDigest(*v)) for v in variants}) == len(variants)


def test_domain_separator_is_bound_to_chain_id_and_address(project, admin, registry, sales, chain_id):
    expected = domain_separator(SALES_ORDER_DOMAIN_NAME, chain_id, sales.address)
    assert bytes(sales.domainSeparator()) == expected
    assert expected != domain_separator(SALES_ORDER_DOMAIN_NAME, chain_id + 1, sales.address)
    assert expected != domain_separator(typed_data.REGISTRY_DOMAIN_NAME, chain_id, registry.address)
    # ERC-5267 describes the same domain.
    fields, name, version, domain_chain_id, verifying_contract, salt, extensions = sales.eip712Domain()
    assert bytes(fields) == b"\x0f"
    assert (name, version, domain_chain_id, verifying_contract) == (SALES_ORDER_DOMAIN_NAME, "1", chain_id, sales.address)
    assert bytes(salt) == b"\x00" * 32 and list(extensions) == []
    # Another deployment (same registry, same chain) has its own domain.
    other = admin.deploy(project.SalesOrder, registry, admin)
    assert bytes(other.domainSeparator()) == domain_separator(SALES_ORDER_DOMAIN_NAME, chain_id, other.address)
    assert bytes(other.domainSeparator()) != expected
    assert bytes(other.pickupDigest(1, 2, b"\x03" * 32, 4)) != bytes(sales.pickupDigest(1, 2, b"\x03" * 32, 4))


def test_domain_separator_follows_a_chain_id_change(chain, sales, chain_id):
    """After a fork to another chain id the domain (and every pickup digest) moves with block.chainid:
    a consent signed for the old chain no longer matches.  Views only (eth_call), chain id restored."""
    new_chain_id = chain_id + 1000
    old_digest = bytes(sales.pickupDigest(1, 2, b"\x03" * 32, 4))
    chain.provider.make_request("anvil_setChainId", [new_chain_id])
    try:
        assert int(chain.provider.make_request("eth_chainId", []), 16) == new_chain_id
        assert bytes(sales.domainSeparator()) == domain_separator(SALES_ORDER_DOMAIN_NAME, new_chain_id, sales.address)
        new_digest = bytes(sales.pickupDigest(1, 2, b"\x03" * 32, 4))
        assert new_digest == _pickup_digest_by_hand(new_chain_id, sales.address, 1, 2, b"\x03" * 32, 4)
        assert new_digest != old_digest
    finally:
        chain.provider.make_request("anvil_setChainId", [chain_id])
    assert bytes(sales.pickupDigest(1, 2, b"\x03" * 32, 4)) == old_digest


# =========================================================================== refund


def test_refund_after_deadline_returns_money(kit, sales, seller, buyer):
    deadline = kit.now() + 100
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=deadline)
    kit.warp(101)
    buyer_before, contract_before = buyer.balance, sales.balance
    receipt = sales.refund(order_id, sender=buyer)
    assert_single_event(receipt, sales.OrderRefunded, orderId=order_id, buyer=buyer.address, amount=PRICE)
    assert buyer.balance == buyer_before + PRICE - receipt.total_fees_paid
    assert sales.balance == contract_before - PRICE
    assert order_of(sales, order_id).status == REFUNDED
    assert not sales.isSold(order_id)
    assert sales.creditOf(seller) == 0
    assert sales.creditOf(buyer) == 0  # the buyer's own refund is sent, not credited


def test_buyer_refund_of_device_item_returns_token_from_escrow_without_any_approval(kit, registry, sales, seller, buyer):
    device, order_id = kit.device_order(seller, buyer, pickup_deadline=kit.now() + 100)
    # The buyer approved nothing (it never held the token), and SalesOrder's own approval was used up.
    assert registry.getApproved(device.id) == ZERO_ADDRESS
    assert not registry.isApprovedForAll(buyer, sales)
    assert not registry.isApprovedForAll(seller, sales)
    kit.warp(101)
    buyer_before = buyer.balance
    receipt = sales.refund(order_id, sender=buyer)
    assert_single_event(receipt, sales.OrderRefunded, orderId=order_id, buyer=buyer.address, amount=PRICE)
    assert_single_event(receipt, registry.Transfer, **{"from": sales.address, "to": seller.address, "tokenId": device.id})
    assert registry.ownerOf(device.id) == seller.address
    assert registry.getDevice(device.id).state == ACTIVE
    assert buyer.balance == buyer_before + PRICE - receipt.total_fees_paid
    assert registry.balanceOf(buyer) == 0


def test_buyer_of_paid_device_item_cannot_pass_the_token_on(kit, registry, sales, seller, buyer, stranger):
    """Formerly the buyer held the token and could sell it on before refunding; now it has nothing to move,
    so the refund can always give the seller its device back."""
    device, order_id = kit.device_order(seller, buyer, pickup_deadline=kit.now() + 100)
    for source in (sales, buyer):
        with reverts(registry.ERC721InsufficientApproval, operator=buyer.address, tokenId=device.id):
            registry.transferFrom(source, stranger, device.id, sender=buyer)
    with reverts(registry.ERC721InvalidApprover, approver=buyer.address):
        registry.approve(stranger, device.id, sender=buyer)
    kit.warp(101)
    sales.refund(order_id, sender=buyer)
    assert registry.ownerOf(device.id) == seller.address


REFUND_TIMING = ["before_deadline", "after_deadline", "no_deadline"]


def _paid_order(kit, seller, buyer, timing, item):
    """A paid order (``item`` "plain" or "device") whose pickup deadline, per ``timing``, is ahead, passed,
    or absent (then a decade passes).  Returns (device or None, order id)."""
    pickup_deadline = 0 if timing == "no_deadline" else kit.now() + DAY
    if item == "device":
        device, order_id = kit.device_order(seller, buyer, pickup_deadline=pickup_deadline)
    else:
        device, order_id = None, kit.create_and_buy(seller, buyer, pickup_deadline=pickup_deadline)
    kit.warp({"before_deadline": DAY - 100, "after_deadline": DAY + 1, "no_deadline": 3650 * DAY}[timing])
    return device, order_id


@pytest.mark.parametrize("item", ["plain", "device"])
@pytest.mark.parametrize("timing", REFUND_TIMING)
def test_seller_refund_at_any_time_credits_the_buyer(kit, registry, sales, gate, seller, buyer, timing, item):
    """The seller may give the money back whenever the order is Paid (resolving, for one, an order without a
    pickup deadline whose gate became unusable): the price becomes the buyer's credit, the token (if any)
    goes back to the seller, and the buyer withdraws."""
    device, order_id = _paid_order(kit, seller, buyer, timing, item)
    seller_before, buyer_before, contract_before = seller.balance, buyer.balance, sales.balance

    receipt = sales.refund(order_id, sender=seller)

    assert_single_event(receipt, sales.OrderRefunded, orderId=order_id, buyer=buyer.address, amount=PRICE)
    assert_no_event(receipt, sales.Withdrawn)
    order = order_of(sales, order_id)
    assert (order.status, order.buyer, order.seller) == (REFUNDED, buyer.address, seller.address)
    assert not sales.isSold(order_id)
    assert not sales.verifyOwnership(order_id, buyer)
    assert sales.creditOf(buyer) == PRICE
    assert sales.creditOf(seller) == 0
    assert sales.balance == contract_before  # the money stays, now owed to the buyer
    assert buyer.balance == buyer_before
    assert seller.balance == seller_before - receipt.total_fees_paid
    if device is None:
        assert_no_event(receipt, registry.Transfer)
    else:
        assert_single_event(receipt, registry.Transfer, **{"from": sales.address, "to": seller.address, "tokenId": device.id})
        assert registry.ownerOf(device.id) == seller.address

    # Settled: neither party can refund again, and the gate can no longer release.
    for who in (buyer, seller):
        with reverts(sales.WrongStatus, orderId=order_id, status=REFUNDED):
            sales.refund(order_id, sender=who)
    with reverts(sales.WrongStatus, orderId=order_id, status=REFUNDED):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer)

    buyer_before = buyer.balance  # (the refused calls above cost the buyer gas)
    receipt = sales.withdraw(sender=buyer)
    assert_single_event(receipt, sales.Withdrawn, account=buyer.address, amount=PRICE)
    assert buyer.balance == buyer_before + PRICE - receipt.total_fees_paid
    assert sales.balance == contract_before - PRICE
    assert sales.creditOf(buyer) == 0
    with reverts(sales.NothingToWithdraw, account=buyer.address):
        sales.withdraw(sender=buyer)


def test_seller_refunds_add_exactly_each_price_to_the_buyers_credit(kit, sales, seller, buyer, stranger):
    """Credits from several refunds (two sellers, two prices) add up; other paid orders' escrow is untouched."""
    first = kit.create_and_buy(seller, buyer, price=PRICE)
    second = kit.create_and_buy(stranger, buyer, price=3 * PRICE + GWEI)
    untouched = kit.create_and_buy(seller, buyer, price=5 * PRICE)
    sales.refund(first, sender=seller)
    assert sales.creditOf(buyer) == PRICE
    sales.refund(second, sender=stranger)
    assert sales.creditOf(buyer) == 4 * PRICE + GWEI
    assert (sales.creditOf(seller), sales.creditOf(stranger)) == (0, 0)
    assert sales.balance == 9 * PRICE + GWEI
    before = buyer.balance
    receipt = sales.withdraw(sender=buyer)
    assert buyer.balance == before + 4 * PRICE + GWEI - receipt.total_fees_paid
    assert sales.balance == 5 * PRICE  # the escrow of the order still Paid
    assert order_of(sales, untouched).status == PAID


@pytest.mark.parametrize("timing", ["after_deadline", "no_deadline"])
@pytest.mark.parametrize("who", ["stranger", "gate_owner", "admin"])
def test_refund_by_neither_buyer_nor_seller_reverts(
    kit, registry, sales, seller, buyer, stranger, gate_owner, admin, who, timing
):
    """Nobody else refunds, not even the admin or the gate's operator, and not even when the buyer could."""
    caller = {"stranger": stranger, "gate_owner": gate_owner, "admin": admin}[who]
    device, order_id = _paid_order(kit, seller, buyer, timing, "device")
    contract_before = sales.balance
    with reverts(sales.NotBuyerOrSeller, orderId=order_id, caller=caller.address):
        sales.refund(order_id, sender=caller)
    assert order_of(sales, order_id).status == PAID
    assert sales.balance == contract_before
    assert (sales.creditOf(buyer), sales.creditOf(caller)) == (0, 0)
    assert registry.ownerOf(device.id) == sales.address


@pytest.mark.parametrize("status", [RELEASED, CANCELLED, LISTED, REFUNDED], ids=["released", "cancelled", "listed", "refunded"])
def test_seller_refund_of_an_order_not_paid_reverts(kit, sales, gate, seller, buyer, status):
    if status == LISTED or status == CANCELLED:
        order_id, _ = kit.create_order(seller, pickup_deadline=0)
        if status == CANCELLED:
            sales.cancel(order_id, sender=seller)
    else:
        order_id = kit.create_and_buy(seller, buyer, pickup_deadline=0)
        if status == RELEASED:
            release(kit, sales, gate, order_id, buyer.address, sender=buyer)
        else:
            sales.refund(order_id, sender=seller)
    credits = (sales.creditOf(seller), sales.creditOf(buyer))
    with reverts(sales.WrongStatus, orderId=order_id, status=status):
        sales.refund(order_id, sender=seller)
    assert (sales.creditOf(seller), sales.creditOf(buyer)) == credits
    assert order_of(sales, order_id).status == status


def test_refund_by_seller_of_unknown_order_reverts(sales, seller):
    with reverts(sales.UnknownOrder, orderId=4242):
        sales.refund(4242, sender=seller)


@pytest.mark.parametrize("offset", [0, -50])
def test_buyer_refund_before_or_at_deadline_reverts(kit, sales, seller, buyer, chain, offset):
    deadline = kit.now() + 100
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=deadline)
    chain.pending_timestamp = deadline + offset
    with reverts(sales.PickupDeadlineNotReached, orderId=order_id, pickupDeadline=deadline):
        sales.refund(order_id, sender=buyer)


def test_buyer_refund_of_order_without_deadline_reverts(kit, sales, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=0)
    kit.warp(3650 * DAY)
    with reverts(sales.PickupDeadlineNotReached, orderId=order_id, pickupDeadline=0):
        sales.refund(order_id, sender=buyer)
    assert order_of(sales, order_id).status == PAID


def test_refund_after_release_reverts(kit, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    kit.warp(101)
    with reverts(sales.WrongStatus, orderId=order_id, status=RELEASED):
        sales.refund(order_id, sender=buyer)


def test_refund_twice_reverts(kit, sales, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    kit.warp(101)
    sales.refund(order_id, sender=buyer)
    with reverts(sales.WrongStatus, orderId=order_id, status=REFUNDED):
        sales.refund(order_id, sender=buyer)


def test_refund_of_listed_or_unknown_order_reverts(kit, sales, seller, buyer):
    order_id, _ = kit.create_order(seller, pickup_deadline=kit.now() + 100)
    kit.warp(101)
    with reverts(sales.WrongStatus, orderId=order_id, status=LISTED):
        sales.refund(order_id, sender=buyer)
    with reverts(sales.UnknownOrder, orderId=order_id + 1):
        sales.refund(order_id + 1, sender=buyer)


def test_refund_after_deadline_blocks_later_release(kit, registry, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    kit.warp(101)
    sales.refund(order_id, sender=buyer)
    with reverts(sales.WrongStatus, orderId=order_id, status=REFUNDED):
        release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    assert sales.creditOf(seller) == 0


@pytest.mark.parametrize("by", ["buyer", "seller"])
def test_refund_works_while_paused(kit, sales, seller, buyer, admin, by):
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    sales.pause(sender=admin)
    kit.warp(101)
    sales.refund(order_id, sender=buyer if by == "buyer" else seller)
    assert order_of(sales, order_id).status == REFUNDED
    assert sales.creditOf(buyer) == (PRICE if by == "seller" else 0)


# =========================================================================== withdraw


def test_withdraw_pays_whole_accumulated_credit(kit, sales, gate, seller, buyer, stranger):
    first = kit.create_and_buy(seller, buyer)
    second = kit.create_and_buy(seller, stranger, price=3 * PRICE)
    release(kit, sales, gate, first, buyer.address, sender=buyer)
    release(kit, sales, gate, second, stranger.address, sender=stranger)
    assert sales.creditOf(seller) == 4 * PRICE
    before = seller.balance
    receipt = sales.withdraw(sender=seller)
    assert_single_event(receipt, sales.Withdrawn, account=seller.address, amount=4 * PRICE)
    assert seller.balance == before + 4 * PRICE - receipt.total_fees_paid
    assert sales.creditOf(seller) == 0
    assert sales.balance == 0


def test_withdraw_with_nothing_to_withdraw_reverts(sales, stranger):
    with reverts(sales.NothingToWithdraw, account=stranger.address):
        sales.withdraw(sender=stranger)


def test_second_withdraw_reverts(kit, sales, gate, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    sales.withdraw(sender=seller)
    with reverts(sales.NothingToWithdraw, account=seller.address):
        sales.withdraw(sender=seller)


def test_paid_but_unreleased_money_is_not_withdrawable(kit, sales, seller, buyer):
    kit.create_and_buy(seller, buyer)
    with reverts(sales.NothingToWithdraw, account=seller.address):
        sales.withdraw(sender=seller)


def test_withdraw_works_while_paused(kit, sales, gate, seller, buyer, admin):
    order_id = kit.create_and_buy(seller, buyer)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    sales.pause(sender=admin)
    sales.withdraw(sender=seller)
    assert sales.creditOf(seller) == 0


# =========================================================================== contract buyers/sellers, reentrancy


@pytest.fixture
def actor(project, stranger):
    """A contract account (ReentrantActor) with some ether of its own."""
    contract = stranger.deploy(project.ReentrantActor)
    stranger.transfer(contract, 10 * PRICE)
    return contract


def actor_buy(sales, actor, order_id, sender, price=PRICE):
    actor.execute(sales, sales.buy.encode_input(order_id), price, sender=sender)


def actor_list(kit, sales, actor, sender, **kwargs):
    deadline = kwargs.get("pickup_deadline", kit.now() + DAY)
    data = sales.createOrder.encode_input(item_tuple(make_item()), PRICE, deadline, 0)
    actor.execute(sales, data, 0, sender=sender)
    return sales.lastOrderId()


def test_refund_to_contract_buyer_that_refuses_ether_reverts_and_keeps_order(kit, sales, seller, stranger, actor):
    order_id, _ = kit.create_order(seller, pickup_deadline=kit.now() + 100)
    actor_buy(sales, actor, order_id, stranger)
    kit.warp(101)
    actor.setRejectPayments(True, sender=stranger)
    with reverts(sales.FailedCall):
        actor.execute(sales, sales.refund.encode_input(order_id), 0, sender=stranger)
    assert order_of(sales, order_id).status == PAID
    actor.setRejectPayments(False, sender=stranger)
    actor.execute(sales, sales.refund.encode_input(order_id), 0, sender=stranger)
    assert order_of(sales, order_id).status == REFUNDED


def test_seller_refund_to_contract_buyer_that_refuses_ether_credits_it(kit, sales, seller, stranger, actor):
    """A buyer that cannot be paid cannot block the seller's refund: no ether moves until it withdraws."""
    order_id, _ = kit.create_order(seller, pickup_deadline=0)
    actor_buy(sales, actor, order_id, stranger)
    actor.setRejectPayments(True, sender=stranger)
    receives = actor.receiveCount()
    sales.refund(order_id, sender=seller)
    assert order_of(sales, order_id).status == REFUNDED
    assert sales.creditOf(actor) == PRICE
    assert actor.receiveCount() == receives  # nothing was sent
    with reverts(sales.FailedCall):
        actor.execute(sales, sales.withdraw.encode_input(), 0, sender=stranger)
    assert sales.creditOf(actor) == PRICE
    actor.setRejectPayments(False, sender=stranger)
    before = actor.balance
    actor.execute(sales, sales.withdraw.encode_input(), 0, sender=stranger)
    assert actor.balance == before + PRICE
    assert sales.creditOf(actor) == 0


def test_contract_seller_refunds_its_paid_order(kit, sales, buyer, stranger, actor):
    order_id = actor_list(kit, sales, actor, stranger)
    sales.buy(order_id, sender=buyer, value=PRICE)
    # The key that runs the contract seller is not the seller.
    with reverts(sales.NotBuyerOrSeller, orderId=order_id, caller=stranger.address):
        sales.refund(order_id, sender=stranger)
    actor.execute(sales, sales.refund.encode_input(order_id), 0, sender=stranger)
    assert order_of(sales, order_id).status == REFUNDED
    assert sales.creditOf(buyer) == PRICE


def test_withdraw_to_contract_seller_that_refuses_ether_reverts_and_keeps_credit(kit, sales, gate, gate_owner, buyer, stranger, actor, registry):
    order_id = actor_list(kit, sales, actor, stranger)
    sales.buy(order_id, sender=buyer, value=PRICE)
    registry.grantPermissions(gate.id, actor, RELEASE, kit.now() + DAY, sender=gate_owner)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    actor.setRejectPayments(True, sender=stranger)
    with reverts(sales.FailedCall):
        actor.execute(sales, sales.withdraw.encode_input(), 0, sender=stranger)
    assert sales.creditOf(actor) == PRICE


@pytest.mark.parametrize("reentry", ["refund", "withdraw", "buy"])
def test_reentry_from_refund_payment_is_refused(kit, sales, seller, buyer, stranger, actor, reentry):
    # Other buyers' money sits in the contract, so a second refund would have something to steal.
    kit.create_and_buy(seller, buyer, price=5 * PRICE)
    order_id, _ = kit.create_order(seller, pickup_deadline=kit.now() + 100)
    actor_buy(sales, actor, order_id, stranger)
    other_listed, _ = kit.create_order(seller, pickup_deadline=0)
    data, value = {
        "refund": (sales.refund.encode_input(order_id), 0),
        "withdraw": (sales.withdraw.encode_input(), 0),
        "buy": (sales.buy.encode_input(other_listed), PRICE),
    }[reentry]
    actor.setReentry(sales, data, value, sender=stranger)
    kit.warp(101)
    actor_before, contract_before = actor.balance, sales.balance

    actor.execute(sales, sales.refund.encode_input(order_id), 0, sender=stranger)

    assert actor.reentryAttempted()
    assert not actor.reentrySucceeded()
    assert bytes(actor.reentryReturnData()) == REENTRANT_CALL
    assert actor.balance == actor_before + PRICE  # exactly one refund
    assert sales.balance == contract_before - PRICE
    assert order_of(sales, order_id).status == REFUNDED
    assert order_of(sales, other_listed).status == LISTED


def test_reentrant_withdraw_from_withdraw_payment_is_refused(kit, registry, sales, gate, gate_owner, buyer, stranger, actor):
    first = actor_list(kit, sales, actor, stranger)
    second = actor_list(kit, sales, actor, stranger)
    registry.grantPermissions(gate.id, actor, RELEASE, kit.now() + DAY, sender=gate_owner)
    for order_id in (first, second):
        sales.buy(order_id, sender=buyer, value=PRICE)
    release(kit, sales, gate, first, buyer.address, sender=buyer)  # second stays Paid: money in escrow
    actor.setReentry(sales, sales.withdraw.encode_input(), 0, sender=stranger)
    actor_before = actor.balance

    actor.execute(sales, sales.withdraw.encode_input(), 0, sender=stranger)

    assert actor.reentryAttempted() and not actor.reentrySucceeded()
    assert bytes(actor.reentryReturnData()) == REENTRANT_CALL
    assert actor.balance == actor_before + PRICE
    assert sales.creditOf(actor) == 0
    assert sales.balance == PRICE  # the second order's escrow is untouched


def test_contract_seller_is_credited_and_withdraws(kit, registry, sales, gate, gate_owner, stranger, actor, buyer):
    """A contract seller (admitted at the gate) is credited on release and withdraws through receive()."""
    order_id = actor_list(kit, sales, actor, stranger)
    sales.buy(order_id, sender=buyer, value=PRICE)
    registry.grantPermissions(gate.id, actor, RELEASE, kit.now() + DAY, sender=gate_owner)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    before, receives = actor.balance, actor.receiveCount()
    actor.execute(sales, sales.withdraw.encode_input(), 0, sender=stranger)
    assert actor.balance == before + PRICE
    assert actor.receiveCount() == receives + 1


# =========================================================================== views (Table 1)


def test_verify_ownership_true_only_for_buyer_while_paid_and_released(kit, sales, gate, seller, buyer, stranger):
    order_id = kit.create_and_buy(seller, buyer)
    assert sales.verifyOwnership(order_id, buyer)
    assert not sales.verifyOwnership(order_id, seller)
    assert not sales.verifyOwnership(order_id, stranger)
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    assert sales.verifyOwnership(order_id, buyer)
    assert not sales.verifyOwnership(order_id, seller)


def test_verify_ownership_false_for_impostor_holding_copied_receipt(kit, sales, seller, buyer, stranger, chain_id):
    """An impostor who copied the receipt (order id, buyer address, even the buyer's signed pickup
    challenge) still claims as themselves: the contract answers only for the buyer's address."""
    order_id = kit.create_and_buy(seller, buyer)
    challenge = typed_data.pickup_challenge_message(chain_id, sales.address, order_id, 1, b"\x11" * 32, kit.now() + 60)
    copied = sign(Account.from_key(buyer.private_key), challenge)
    # The impostor signs the same challenge with their own key: it recovers to them, not the buyer.
    forged = sign(Account.from_key(stranger.private_key), challenge)
    assert Account.recover_message(_signable(challenge), signature=copied) == buyer.address
    assert Account.recover_message(_signable(challenge), signature=forged) == stranger.address
    assert not sales.verifyOwnership(order_id, stranger)
    assert sales.verifyOwnership(order_id, buyer)


def _signable(message):
    from eth_account.messages import encode_typed_data

    return encode_typed_data(full_message=message)


def test_verify_ownership_false_for_unknown_order_without_revert(sales, buyer):
    assert not sales.verifyOwnership(12345, buyer)
    assert not sales.verifyOwnership(0, buyer)


def test_verify_ownership_false_for_listed_order_even_for_zero_address(kit, sales, seller):
    order_id, _ = kit.create_order(seller)
    assert not sales.verifyOwnership(order_id, ZERO_ADDRESS)  # buyer slot is still zero
    assert not sales.verifyOwnership(order_id, seller)


def test_verify_ownership_false_after_refund(kit, sales, seller, buyer):
    order_id = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    kit.warp(101)
    sales.refund(order_id, sender=buyer)
    assert not sales.verifyOwnership(order_id, buyer)


def test_verify_ownership_false_after_cancel(kit, sales, seller):
    order_id, _ = kit.create_order(seller)
    sales.cancel(order_id, sender=seller)
    assert not sales.verifyOwnership(order_id, ZERO_ADDRESS)
    assert not sales.verifyOwnership(order_id, seller)


def test_is_sold_follows_status(kit, sales, gate, seller, buyer):
    assert not sales.isSold(999)  # unknown: false, no revert
    listed, _ = kit.create_order(seller)
    cancelled, _ = kit.create_order(seller)
    sales.cancel(cancelled, sender=seller)
    paid = kit.create_and_buy(seller, buyer)
    released = kit.create_and_buy(seller, buyer)
    release(kit, sales, gate, released, buyer.address, sender=buyer)
    refunded = kit.create_and_buy(seller, buyer, pickup_deadline=kit.now() + 100)
    kit.warp(101)
    sales.refund(refunded, sender=buyer)
    assert [sales.isSold(i) for i in (listed, cancelled, paid, released, refunded)] == [False, False, True, True, False]


def test_get_item_returns_table1_fields(kit, sales, seller, buyer):
    order_id, _ = kit.create_order(seller, item=make_item(make="Miele", model="W1", year=2021), price=7 * GWEI)
    assert tuple(sales.getItem(order_id)) == ("Miele", "W1", 2021, 7 * GWEI, False, seller.address, ZERO_ADDRESS)
    sales.buy(order_id, sender=buyer, value=7 * GWEI)
    assert tuple(sales.getItem(order_id)) == ("Miele", "W1", 2021, 7 * GWEI, True, seller.address, buyer.address)


@pytest.mark.parametrize("view", ["getItem", "getOrder"])
def test_item_and_order_views_revert_for_unknown_order(sales, view):
    with reverts(sales.UnknownOrder, orderId=77):
        getattr(sales, view)(77)


def test_credit_of_and_last_order_id(kit, sales, gate, seller, buyer, stranger):
    assert sales.creditOf(seller) == 0
    assert sales.lastOrderId() == 0
    order_id = kit.create_and_buy(seller, buyer)
    kit.create_order(stranger)
    assert sales.lastOrderId() == 2
    release(kit, sales, gate, order_id, buyer.address, sender=buyer)
    assert sales.creditOf(seller) == PRICE
    assert sales.creditOf(buyer) == 0


# =========================================================================== pause


def test_pause_and_unpause_by_pauser_emit(sales, admin):
    receipt = sales.pause(sender=admin)
    assert_single_event(receipt, sales.Paused, account=admin.address)
    assert sales.paused()
    receipt = sales.unpause(sender=admin)
    assert_single_event(receipt, sales.Unpaused, account=admin.address)
    assert not sales.paused()


@pytest.mark.parametrize("function", ["pause", "unpause"])
def test_pause_and_unpause_by_non_pauser_revert(sales, admin, stranger, function):
    if function == "unpause":
        sales.pause(sender=admin)
    with reverts(sales.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=PAUSER_ROLE):
        getattr(sales, function)(sender=stranger)


def test_pause_twice_and_unpause_when_running_revert(sales, admin):
    with reverts(sales.ExpectedPause):
        sales.unpause(sender=admin)
    sales.pause(sender=admin)
    with reverts(sales.EnforcedPause):
        sales.pause(sender=admin)


def test_admin_can_appoint_another_pauser(sales, admin, stranger):
    sales.grantRole(PAUSER_ROLE, stranger, sender=admin)
    sales.pause(sender=stranger)
    assert sales.paused()
    sales.revokeRole(PAUSER_ROLE, stranger, sender=admin)
    with reverts(sales.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=PAUSER_ROLE):
        sales.unpause(sender=stranger)
