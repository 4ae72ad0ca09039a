"""ServiceMarket, agreements and money: declineAgreement (payee or device, by the deadline; the declining
device is never matched with that request again: hasDeclined), raiseMaxUnitPrice, cancelRequest,
confirmCompletion, completeWithAttestation (EOA and ERC-1271 attesters, replay across rounds, chains and
deployments, malleable signatures), refund, withdraw, the protocol fee (bounds, snapshot at match time,
rounding), pausing, reentrancy through contract demanders and payees (ReentrantActor), and escrow
accounting: the contract's balance is always the open escrow plus the credits.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak

from contract_helpers import (
    DEFAULT_ADMIN_ROLE,
    PAUSER_ROLE,
    SUSPENDED,
    ZERO_ADDRESS,
    assert_no_event,
    assert_single_event,
    reverts,
    to_compact,
    to_high_s,
    typed_digest,
)
from market_helpers import (
    EARLIEST,
    EVIDENCE,
    LATEST,
    LOWEST,
    MAX_FEE_BPS,
    MAX_UINT96,
    NO_AUTH,
    PRICE,
    R_CANCELLED,
    R_COMPLETED,
    R_MATCHED,
    R_OPEN,
    R_REFUNDED,
    REENTRANT_CALL,
    SERVICE,
    declined_request,
    fresh_key,
    make_agreement,
)
from thingledger_device import typed_data

pytestmark = pytest.mark.usefixtures("_deployments")

OTHER_EVIDENCE = keccak(text="meter reading 41.9 kWh")


def request_fields(market, request_id):
    r = market.getRequest(request_id)
    return {
        "status": r.status,
        "unitPrice": r.unitPrice,
        "payee": r.payee,
        "offerId": r.offerId,
        "round": r.round,
        "feeBps": r.feeBps,
    }


def assert_solvent(mkit, accounts):
    """The market holds exactly the escrow of Open and Matched requests plus every credit."""
    market = mkit.market
    credits = sum(market.creditOf(a) for a in accounts)
    assert market.balance == mkit.escrow_held() + credits


def paid(account, receipt) -> int:
    """What ``account`` paid in gas for ``receipt``."""
    return receipt.total_fees_paid if receipt.sender == account.address else 0


# =========================================================================== declineAgreement


def test_decline_by_the_payee_reopens_the_request_and_withdraws_the_offer(mkit, market, suppliers, supplier, buyer, admin, fee_recipient):
    market.setFee(fee_recipient, 100, sender=admin)
    device = suppliers[0]
    request_id, offer_id = make_agreement(mkit, supplier, buyer, device)  # 3 units at 7, maximum 10
    assert market.creditOf(buyer) == 9

    receipt = mkit.decline(request_id, supplier)

    assert_single_event(receipt, market.AgreementDeclined, requestId=request_id, offerId=offer_id, deviceId=device.id, round=1)
    assert_single_event(receipt, market.OfferWithdrawn, offerId=offer_id, serviceType=SERVICE, deviceId=device.id)
    assert request_fields(market, request_id) == {
        "status": R_OPEN,
        "unitPrice": 7,  # the agreed price is the new maximum: the escrow still held is 7 * 3
        "payee": ZERO_ADDRESS,
        "offerId": 0,
        "round": 1,
        "feeBps": 0,
    }
    assert market.getOffer(offer_id).units == 0
    assert market.listedOfferOf(device.id, SERVICE) == 0
    assert market.creditOf(buyer) == 9  # the difference credited at match stays the demander's
    assert market.balance == 30


def test_declining_device_is_never_rematched_with_that_request_but_another_device_is(mkit, market, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    request_id = declined_request(mkit, supplier, buyer, device, price=7)
    assert market.matchRequest.call(request_id, sender=stranger) == 0
    # Another supplier's offer above the new maximum (7) is not taken either.
    mkit.publish(suppliers[1], supplier, price=8)
    assert market.matchRequest.call(request_id, sender=stranger) == 0
    # The declining device publishes again, cheaper: a new offer, but never for this request.
    again, _ = mkit.publish(device, supplier, price=6)
    assert market.previewMatch(request_id) == (0, 2)  # skipped (newest first), then the dearer one
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_no_event(receipt, market.RequestMatched)
    assert_no_event(receipt, market.OfferPruned)
    assert market.getRequest(request_id).status == R_OPEN
    # Another device's offer at the same price is taken.
    other, _ = mkit.publish(suppliers[2], supplier, price=6)
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_single_event(
        receipt, market.RequestMatched, offerId=other, deviceId=suppliers[2].id, unitPrice=6, round=2, refunded=3
    )
    assert market.creditOf(buyer) == 9 + 3
    # The republished offer stayed listed, whole, and serves any other request.
    assert market.getOffer(again).units == 10
    _, matched, _ = mkit.post(stranger, units=1, max_price=6, policy=LOWEST)
    assert matched == again


def test_a_supplier_cannot_capture_and_decline_the_same_request_again_and_again(mkit, market, suppliers, supplier, buyer, stranger):
    """Decline griefing is closed: a decline lowers the request's maximum to the declined price, and the
    declining device, publishing again at once (newest, first in a LatestPublished walk), would otherwise be
    matched with the same request round after round, keeping it from the honest offer behind.  Now its
    new offers are skipped for that request: the honest offer is matched; other requests still take them."""
    device = suppliers[0]
    honest, _ = mkit.publish(suppliers[1], supplier, price=7)
    request_id = declined_request(mkit, supplier, buyer, device, price=7, policy=LATEST)
    for _ in range(3):  # every republication is skipped for this request, however often
        again, _ = mkit.publish(device, supplier, price=7)
        assert mkit.listed(SERVICE, LATEST) == [again, honest]
        assert market.previewMatch(request_id) == (honest, 2)
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_single_event(
        receipt, market.RequestMatched, requestId=request_id, offerId=honest, deviceId=suppliers[1].id, unitPrice=7, round=2
    )
    assert_no_event(receipt, market.OfferPruned)
    assert market.hasDeclined(request_id, device.id)
    # Another request, same policy: the republished offer at the front is taken.
    other_request, matched, _ = mkit.post(buyer, units=3, max_price=7, policy=LATEST)
    assert matched == again
    assert market.getRequest(other_request).round == 1


def test_decline_bars_the_device_even_after_it_changed_hands(mkit, market, registry, suppliers, supplier, buyer, stranger):
    """The bar is on the device, not its owner: the device's new owner cannot serve that request either."""
    device = suppliers[0]
    request_id = declined_request(mkit, supplier, buyer, device, price=7)
    registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    new_owners, _ = mkit.publish(device, stranger, price=7)
    assert market.previewMatch(request_id) == (0, 1)
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_no_event(receipt, market.RequestMatched)
    assert market.listedOfferOf(device.id, SERVICE) == new_owners
    _, matched, receipt = mkit.post(buyer, units=1, max_price=7)
    assert matched == new_owners
    assert_single_event(receipt, market.RequestMatched, payee=stranger.address)


def test_has_declined_names_only_the_declining_device_and_that_request(mkit, market, suppliers, supplier, buyer, stranger):
    device, other = suppliers[0], suppliers[1]
    first, offer_id = make_agreement(mkit, supplier, buyer, device, units=1)
    second, matched, _ = mkit.post(buyer, units=1, max_price=10)  # the same offer, 9 units left
    assert matched == offer_id
    mkit.publish(other, supplier, price=7)
    assert not market.hasDeclined(first, device.id)

    mkit.decline(first, supplier)

    assert market.hasDeclined(first, device.id)
    assert not market.hasDeclined(second, device.id)  # another request the device agreed to
    assert not market.hasDeclined(first, other.id)  # another device
    assert not market.hasDeclined(0, device.id) and not market.hasDeclined(first + 2, device.id)
    assert market.getRequest(second).status == R_MATCHED  # its other agreement stands
    # The device-signed decline of the second agreement bars it from the second request too.
    mkit.decline(second, stranger, signed=True, device=device)
    assert market.hasDeclined(second, device.id)
    # Declined for good: the first request matches the other device, completes, and the mark stays.
    market.matchRequest(first, sender=stranger)
    r = market.getRequest(first)
    assert (r.status, r.round) == (R_MATCHED, 2)
    assert market.getOffer(r.offerId).deviceId == other.id
    assert not market.hasDeclined(first, other.id)
    market.confirmCompletion(first, EVIDENCE, sender=buyer)
    assert market.hasDeclined(first, device.id)


def test_decline_of_a_sold_out_offer_withdraws_nothing(mkit, market, suppliers, supplier, buyer):
    request_id, offer_id = make_agreement(mkit, supplier, buyer, suppliers[0], units=3, offer_units=3)
    receipt = mkit.decline(request_id, supplier)
    assert_single_event(receipt, market.AgreementDeclined, offerId=offer_id)
    assert_no_event(receipt, market.OfferWithdrawn)
    assert market.getRequest(request_id).status == R_OPEN


def test_decline_after_the_offer_was_replaced_leaves_the_new_offer_listed(mkit, market, suppliers, supplier, buyer):
    device = suppliers[0]
    request_id, offer_id = make_agreement(mkit, supplier, buyer, device)
    newer, receipt = mkit.publish(device, supplier, price=9)
    assert_single_event(receipt, market.OfferWithdrawn, offerId=offer_id)  # replaced
    assert market.getRequest(request_id).status == R_MATCHED  # the agreement stands
    receipt = mkit.decline(request_id, supplier)
    assert_no_event(receipt, market.OfferWithdrawn)
    assert mkit.listed() == [newer]


def test_decline_signed_by_the_device_is_relayed_by_anyone(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    request_id, offer_id = make_agreement(mkit, supplier, buyer, device)
    nonce = registry.getDevice(device.id).nonce
    receipt = mkit.decline(request_id, stranger, signed=True, device=device)
    assert_single_event(receipt, market.AgreementDeclined, requestId=request_id, offerId=offer_id, round=1)
    assert_single_event(
        receipt,
        registry.DeviceActionExecuted,
        deviceId=device.id,
        target=market.address,
        actionHash=typed_data.decline_agreement_action_hash(request_id, 1),
        nonce=nonce,
    )
    assert market.getRequest(request_id).status == R_OPEN


def test_decline_signature_is_bound_to_its_round_and_not_replayable(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device, next_device = suppliers[0], suppliers[1]
    request_id, _ = make_agreement(mkit, supplier, buyer, device)
    wrong_round = mkit.auth(device, typed_data.decline_agreement_action_hash(request_id, 2))
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        market.declineAgreement(request_id, wrong_round, sender=stranger)
    round_one = mkit.auth(device, typed_data.decline_agreement_action_hash(request_id, 1))
    market.declineAgreement(request_id, round_one, sender=stranger)
    mkit.publish(next_device, supplier, price=7)
    market.matchRequest(request_id, sender=stranger)  # round 2: another device, the declining one is barred
    assert market.getRequest(request_id).round == 2
    with reverts(registry.InvalidDeviceSignature, deviceId=next_device.id):  # replayed
        market.declineAgreement(request_id, round_one, sender=stranger)
    stale = mkit.auth(next_device, typed_data.decline_agreement_action_hash(request_id, 1))  # the new device, the old round
    with reverts(registry.InvalidDeviceSignature, deviceId=next_device.id):
        market.declineAgreement(request_id, stale, sender=stranger)
    assert market.getRequest(request_id).status == R_MATCHED
    round_two = mkit.auth(next_device, typed_data.decline_agreement_action_hash(request_id, 2))
    receipt = market.declineAgreement(request_id, round_two, sender=stranger)
    assert_single_event(receipt, market.AgreementDeclined, requestId=request_id, deviceId=next_device.id, round=2)
    assert market.hasDeclined(request_id, device.id) and market.hasDeclined(request_id, next_device.id)


def test_decline_signature_for_another_request_is_refused(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    first, _ = make_agreement(mkit, supplier, buyer, device, units=1)
    second, _, _ = mkit.post(buyer, units=1, max_price=10)
    auth = mkit.auth(device, typed_data.decline_agreement_action_hash(first, 1))
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        market.declineAgreement(second, auth, sender=stranger)


def test_decline_by_anyone_but_the_payee_is_refused(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    request_id, _ = make_agreement(mkit, supplier, buyer, device)
    for caller in (stranger, buyer):
        with reverts(market.NotPayee, requestId=request_id, caller=caller.address):
            mkit.decline(request_id, caller)
    # The device's new owner is not the payee of an agreement made before the sale; the payee still is.
    registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    with reverts(market.NotPayee, requestId=request_id, caller=stranger.address):
        mkit.decline(request_id, stranger)
    assert not market.hasDeclined(request_id, device.id)
    assert market.getRequest(request_id).status == R_MATCHED
    mkit.decline(request_id, supplier)
    assert market.getRequest(request_id).status == R_OPEN
    assert market.hasDeclined(request_id, device.id)


def test_payee_declines_even_when_the_device_is_decommissioned_but_the_device_cannot_sign(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    request_id, _ = make_agreement(mkit, supplier, buyer, device)
    registry.suspend(device.id, sender=supplier)
    with reverts(registry.DeviceNotActive, deviceId=device.id, current=SUSPENDED):
        mkit.decline(request_id, stranger, signed=True, device=device)
    registry.decommission(device.id, sender=supplier)
    mkit.decline(request_id, supplier)
    assert market.getRequest(request_id).status == R_OPEN


def test_decline_signed_with_an_expired_deadline_is_refused(kit, mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    request_id, _ = make_agreement(mkit, supplier, buyer, device)
    deadline, sig = mkit.auth(device, typed_data.decline_agreement_action_hash(request_id, 1), deadline=kit.now() + 5)
    kit.warp(10)
    with reverts(registry.SignatureExpired, deadline=deadline):
        market.declineAgreement(request_id, (deadline, sig), sender=stranger)


@pytest.mark.parametrize("state", ["open", "completed", "refunded", "cancelled"])
def test_decline_of_a_request_not_matched_is_refused(chain, mkit, market, suppliers, supplier, buyer, state):
    if state in ("open", "cancelled"):
        request_id, _, _ = mkit.post(buyer)
        expected = R_OPEN
        if state == "cancelled":
            market.cancelRequest(request_id, sender=buyer)
            expected = R_CANCELLED
    else:
        deadline = mkit.now() + 100
        request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], deadline=deadline)
        if state == "completed":
            market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
            expected = R_COMPLETED
        else:
            chain.pending_timestamp = deadline + 1
            market.refund(request_id, sender=buyer)
            expected = R_REFUNDED
    with reverts(market.WrongRequestStatus, requestId=request_id, status=expected):
        mkit.decline(request_id, supplier)


def test_decline_of_an_unknown_request_is_refused(mkit, market, supplier):
    with reverts(market.UnknownRequest, requestId=9):
        mkit.decline(9, supplier)


def test_decline_after_the_deadline_is_refused(chain, mkit, market, suppliers, supplier, buyer):
    deadline = mkit.now() + 100
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], deadline=deadline)
    chain.pending_timestamp = deadline + 1
    with reverts(market.RequestExpired, requestId=request_id, deadline=deadline):
        mkit.decline(request_id, supplier)


def test_decline_at_the_deadline_then_the_demander_cancels(chain, mkit, market, suppliers, supplier, buyer):
    deadline = mkit.now() + 100
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], deadline=deadline)
    chain.pending_timestamp = deadline
    mkit.decline(request_id, supplier)
    chain.pending_timestamp = deadline + 50
    receipt = market.cancelRequest(request_id, sender=buyer)
    assert_single_event(receipt, market.RequestCancelled, requestId=request_id, demander=buyer.address, amount=21)


# =========================================================================== raiseMaxUnitPrice


def test_raise_max_without_a_match_adds_the_difference_to_escrow(mkit, market, buyer):
    request_id, _, _ = mkit.post(buyer, units=3, max_price=10)
    assert market.raiseMaxUnitPrice.call(request_id, 15, sender=buyer, value=15) == 0
    receipt = market.raiseMaxUnitPrice(request_id, 15, sender=buyer, value=15)
    assert_single_event(receipt, market.RequestMaxRaised, requestId=request_id, maxUnitPrice=15, added=15)
    assert_no_event(receipt, market.RequestMatched)
    r = market.getRequest(request_id)
    assert (r.status, r.unitPrice, r.units) == (R_OPEN, 15, 3)
    assert market.balance == 45


def test_raise_max_matches_an_offer_that_was_too_dear(mkit, market, suppliers, supplier, buyer):
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=12, units=5)
    request_id, matched, _ = mkit.post(buyer, units=3, max_price=10, policy=EARLIEST)
    assert matched == 0
    assert market.raiseMaxUnitPrice.call(request_id, 15, sender=buyer, value=15) == offer_id
    receipt = market.raiseMaxUnitPrice(request_id, 15, sender=buyer, value=15)
    assert_single_event(receipt, market.RequestMaxRaised, maxUnitPrice=15, added=15)
    assert_single_event(receipt, market.RequestMatched, requestId=request_id, offerId=offer_id, unitPrice=12, refunded=9, round=1)
    assert market.creditOf(buyer) == 9
    assert market.balance == 45  # 36 in escrow, 9 credited


def test_raise_max_after_a_decline_starts_from_the_agreed_price(mkit, market, suppliers, supplier, buyer):
    request_id = declined_request(mkit, supplier, buyer, suppliers[0], price=7, units=3, max_price=10)
    with reverts(market.WrongDeposit, expected=9, received=6):  # (10 - 7) * 3 to get back to 10
        market.raiseMaxUnitPrice(request_id, 10, sender=buyer, value=6)
    market.raiseMaxUnitPrice(request_id, 10, sender=buyer, value=9)
    assert market.getRequest(request_id).unitPrice == 10
    assert_solvent(mkit, [buyer, supplier])


@pytest.mark.parametrize("new_max", [10, 9, 1])
def test_raise_max_must_raise(mkit, market, buyer, new_max):
    request_id, _, _ = mkit.post(buyer, units=3, max_price=10)
    with reverts(market.MaxNotRaised, currentMax=10, requestedMax=new_max):
        market.raiseMaxUnitPrice(request_id, new_max, sender=buyer, value=0)


@pytest.mark.parametrize(
    "price,error,args",
    [(0, "ZeroAmount", {}), (MAX_UINT96 + 1, "AmountOutOfRange", {"value": MAX_UINT96 + 1, "max": MAX_UINT96})],
)
def test_raise_max_rejects_an_out_of_range_price(mkit, market, buyer, price, error, args):
    request_id, _, _ = mkit.post(buyer, units=3, max_price=10)
    with reverts(getattr(market, error), **args):
        market.raiseMaxUnitPrice(request_id, price, sender=buyer, value=0)


def test_raise_max_errors(chain, mkit, market, suppliers, supplier, buyer, stranger, admin):
    with reverts(market.UnknownRequest, requestId=5):
        market.raiseMaxUnitPrice(5, 20, sender=buyer, value=0)
    deadline = mkit.now() + 1000
    request_id, _, _ = mkit.post(buyer, units=2, max_price=10, deadline=deadline)
    with reverts(market.NotDemander, requestId=request_id, caller=stranger.address):
        market.raiseMaxUnitPrice(request_id, 20, sender=stranger, value=20)
    for value in (0, 19, 21):
        with reverts(market.WrongDeposit, expected=20, received=value):
            market.raiseMaxUnitPrice(request_id, 20, sender=buyer, value=value)
    market.pause(sender=admin)
    with reverts(market.EnforcedPause):
        market.raiseMaxUnitPrice(request_id, 20, sender=buyer, value=20)
    market.unpause(sender=admin)
    chain.pending_timestamp = deadline + 1
    with reverts(market.RequestExpired, requestId=request_id, deadline=deadline):
        market.raiseMaxUnitPrice(request_id, 20, sender=buyer, value=20)


def test_raise_max_of_a_matched_or_cancelled_request_is_refused(mkit, market, suppliers, supplier, buyer):
    matched, _ = make_agreement(mkit, supplier, buyer, suppliers[0])
    with reverts(market.WrongRequestStatus, requestId=matched, status=R_MATCHED):
        market.raiseMaxUnitPrice(matched, 20, sender=buyer, value=30)
    cancelled, _, _ = mkit.post(buyer, units=400)
    market.cancelRequest(cancelled, sender=buyer)
    with reverts(market.WrongRequestStatus, requestId=cancelled, status=R_CANCELLED):
        market.raiseMaxUnitPrice(cancelled, 2 * PRICE, sender=buyer, value=400 * PRICE)


# =========================================================================== cancelRequest


def test_cancel_pays_the_deposit_back(mkit, market, buyer, stranger):
    mkit.post(stranger, units=2)  # someone else's escrow stays
    request_id, _, _ = mkit.post(buyer, units=3, max_price=PRICE)
    before = buyer.balance
    receipt = market.cancelRequest(request_id, sender=buyer)
    assert_single_event(receipt, market.RequestCancelled, requestId=request_id, demander=buyer.address, amount=3 * PRICE)
    assert buyer.balance == before + 3 * PRICE - receipt.total_fees_paid
    assert market.getRequest(request_id).status == R_CANCELLED
    assert market.balance == 2 * PRICE


def test_cancel_errors(mkit, market, suppliers, supplier, buyer, stranger):
    with reverts(market.UnknownRequest, requestId=3):
        market.cancelRequest(3, sender=buyer)
    request_id, _, _ = mkit.post(buyer)
    with reverts(market.NotDemander, requestId=request_id, caller=stranger.address):
        market.cancelRequest(request_id, sender=stranger)
    market.cancelRequest(request_id, sender=buyer)
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_CANCELLED):
        market.cancelRequest(request_id, sender=buyer)
    matched, _ = make_agreement(mkit, supplier, buyer, suppliers[0])
    with reverts(market.WrongRequestStatus, requestId=matched, status=R_MATCHED):
        market.cancelRequest(matched, sender=buyer)


def test_cancel_after_the_deadline_and_while_paused(chain, mkit, market, buyer, admin):
    deadline = mkit.now() + 100
    request_id, _, _ = mkit.post(buyer, deadline=deadline)
    market.pause(sender=admin)
    chain.pending_timestamp = deadline + 500
    market.cancelRequest(request_id, sender=buyer)
    assert market.balance == 0


# =========================================================================== confirmCompletion


def test_confirm_completion_credits_payee_and_fee_recipient(mkit, market, suppliers, supplier, buyer, admin, fee_recipient):
    market.setFee(fee_recipient, 250, sender=admin)
    request_id, offer_id = make_agreement(mkit, supplier, buyer, suppliers[0], price=4_000, units=3, max_price=4_000)
    receipt = market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    fee = 12_000 * 250 // 10_000
    assert_single_event(
        receipt,
        market.RequestCompleted,
        requestId=request_id,
        offerId=offer_id,
        payee=supplier.address,
        confirmedBy=buyer.address,
        evidence=EVIDENCE,
        supplierAmount=12_000 - fee,
        fee=fee,
    )
    assert market.getRequest(request_id).status == R_COMPLETED
    assert (market.creditOf(supplier), market.creditOf(fee_recipient), market.creditOf(buyer)) == (12_000 - fee, fee, 0)
    assert_solvent(mkit, [supplier, fee_recipient, buyer])


def test_confirm_completion_until_the_deadline_only(chain, mkit, market, suppliers, supplier, buyer):
    deadline = mkit.now() + 100
    on_time, _ = make_agreement(mkit, supplier, buyer, suppliers[0], units=1, deadline=deadline)
    late, _ = make_agreement(mkit, supplier, buyer, suppliers[1], units=1, deadline=deadline)
    chain.pending_timestamp = deadline
    market.confirmCompletion(on_time, EVIDENCE, sender=buyer)
    chain.pending_timestamp = deadline + 1
    with reverts(market.RequestExpired, requestId=late, deadline=deadline):
        market.confirmCompletion(late, EVIDENCE, sender=buyer)


def test_confirm_completion_errors(chain, mkit, market, suppliers, supplier, buyer, stranger):
    with reverts(market.UnknownRequest, requestId=1):
        market.confirmCompletion(1, EVIDENCE, sender=buyer)
    open_id, _, _ = mkit.post(buyer, units=500)
    with reverts(market.WrongRequestStatus, requestId=open_id, status=R_OPEN):
        market.confirmCompletion(open_id, EVIDENCE, sender=buyer)
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0])
    for caller in (supplier, stranger):
        with reverts(market.NotDemander, requestId=request_id, caller=caller.address):
            market.confirmCompletion(request_id, EVIDENCE, sender=caller)
    market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_COMPLETED):
        market.confirmCompletion(request_id, EVIDENCE, sender=buyer)


@pytest.mark.parametrize("after_match", ["withdrawn", "replaced", "price_changed", "sold", "decommissioned"])
def test_agreement_stands_whatever_happens_to_the_offer_after_the_match(mkit, market, registry, suppliers, supplier, buyer, stranger, after_match):
    device = suppliers[0]
    request_id, offer_id = make_agreement(mkit, supplier, buyer, device, price=7, units=3, offer_units=10)
    if after_match == "withdrawn":
        mkit.withdraw_offer(offer_id, supplier)
    elif after_match == "replaced":
        mkit.publish(device, supplier, price=1)
    elif after_match == "price_changed":
        mkit.update_price(offer_id, 1_000, supplier)
    elif after_match == "sold":
        registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    else:
        registry.decommission(device.id, sender=supplier)
    assert market.getRequest(request_id).status == R_MATCHED
    receipt = market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    assert_single_event(receipt, market.RequestCompleted, payee=supplier.address, supplierAmount=21, fee=0)
    assert market.creditOf(supplier) == 21
    assert market.creditOf(stranger) == 0


# =========================================================================== completeWithAttestation


def test_completion_digest_matches_the_device_client_encoding(market, chain_id):
    for request_id, offer_id, round_, evidence in [(1, 1, 1, EVIDENCE), (2**64 - 1, 2**40 - 1, 65535, b"\x00" * 32)]:
        message = typed_data.completion_message(chain_id, market.address, request_id, offer_id, round_, evidence)
        assert bytes(market.completionDigest(request_id, offer_id, round_, evidence)) == typed_digest(message)


def test_attester_signature_completes_and_anyone_submits_it(mkit, market, suppliers, supplier, buyer, stranger, admin, fee_recipient):
    market.setFee(fee_recipient, 1_000, sender=admin)
    attester = fresh_key()
    request_id, offer_id = make_agreement(mkit, supplier, buyer, suppliers[0], attester=attester.address)
    signature = mkit.completion_signature(attester, request_id)
    receipt = market.completeWithAttestation(request_id, EVIDENCE, signature, sender=stranger)
    assert_single_event(
        receipt,
        market.RequestCompleted,
        requestId=request_id,
        offerId=offer_id,
        payee=supplier.address,
        confirmedBy=attester.address,
        evidence=EVIDENCE,
        supplierAmount=19,  # 21 - floor(2.1)
        fee=2,
    )
    assert market.getRequest(request_id).status == R_COMPLETED
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_COMPLETED):  # no second completion
        market.completeWithAttestation(request_id, EVIDENCE, signature, sender=stranger)


def test_demander_may_still_confirm_when_there_is_an_attester(mkit, market, suppliers, supplier, buyer):
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], attester=fresh_key().address)
    receipt = market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    assert_single_event(receipt, market.RequestCompleted, confirmedBy=buyer.address)


def test_attestation_without_an_attester_is_refused(mkit, market, suppliers, supplier, buyer, stranger):
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0])
    with reverts(market.NoAttester, requestId=request_id):
        market.completeWithAttestation(request_id, EVIDENCE, b"\x00" * 65, sender=stranger)


@pytest.mark.parametrize(
    "forgery",
    ["other_key", "other_evidence", "other_offer", "other_round", "other_request", "other_chain", "other_market",
     "high_s", "compact", "empty", "v_flipped"],
)
def test_forged_or_misdirected_attestations_are_refused(mkit, market, market2, suppliers, supplier, buyer, stranger, chain_id, forgery):
    attester = fresh_key()
    request_id, offer_id = make_agreement(mkit, supplier, buyer, suppliers[0], attester=attester.address)
    kwargs, key = {}, attester
    if forgery == "other_key":
        key = fresh_key()
    elif forgery == "other_evidence":
        kwargs["evidence"] = OTHER_EVIDENCE
    elif forgery == "other_offer":
        kwargs["offer_id"] = offer_id + 1
    elif forgery == "other_round":
        kwargs["round_"] = 2
    elif forgery == "other_chain":
        kwargs["chain_id"] = chain_id + 1
    elif forgery == "other_market":
        kwargs["market"] = market2
    signed_request = request_id
    if forgery == "other_request":
        signed_request, kwargs = request_id + 1, {"offer_id": offer_id, "round_": 1}
    signature = mkit.completion_signature(key, signed_request, **kwargs)
    signature = {
        "high_s": to_high_s,
        "compact": to_compact,
        "empty": lambda s: b"",
        "v_flipped": lambda s: s[:64] + bytes([55 - s[64]]),
    }.get(forgery, lambda s: s)(signature)
    with reverts(market.InvalidAttestation, requestId=request_id):
        market.completeWithAttestation(request_id, EVIDENCE, signature, sender=stranger)
    assert market.getRequest(request_id).status == R_MATCHED


def test_attestation_of_one_round_cannot_complete_the_next(mkit, market, suppliers, supplier, buyer, stranger):
    """After a decline and a new match (round 2, another device: the declining one is barred), the statement
    for round 1 is void, even at the same price and payee; a statement naming the new offer but the old round,
    or the old offer but the new round, is void too."""
    attester = fresh_key()
    request_id, first_offer = make_agreement(mkit, supplier, buyer, suppliers[0], attester=attester.address)
    round_one = mkit.completion_signature(attester, request_id)
    mkit.decline(request_id, supplier)
    second_offer, _ = mkit.publish(suppliers[1], supplier, price=7)
    market.matchRequest(request_id, sender=stranger)
    r = market.getRequest(request_id)
    assert (r.offerId, r.round, r.payee) == (second_offer, 2, supplier.address)
    for stale in (
        round_one,
        mkit.completion_signature(attester, request_id, offer_id=second_offer, round_=1),
        mkit.completion_signature(attester, request_id, offer_id=first_offer, round_=2),
    ):
        with reverts(market.InvalidAttestation, requestId=request_id):
            market.completeWithAttestation(request_id, EVIDENCE, stale, sender=stranger)
    market.completeWithAttestation(request_id, EVIDENCE, mkit.completion_signature(attester, request_id), sender=stranger)
    assert market.getRequest(request_id).status == R_COMPLETED


def test_attestation_after_the_deadline_or_of_an_open_request_is_refused(chain, mkit, market, suppliers, supplier, buyer, stranger):
    attester = fresh_key()
    deadline = mkit.now() + 100
    open_id, _, _ = mkit.post(buyer, units=500, attester=attester.address)
    with reverts(market.WrongRequestStatus, requestId=open_id, status=R_OPEN):
        market.completeWithAttestation(open_id, EVIDENCE, mkit.completion_signature(attester, open_id), sender=stranger)
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], attester=attester.address, deadline=deadline)
    signature = mkit.completion_signature(attester, request_id)
    chain.pending_timestamp = deadline + 1
    with reverts(market.RequestExpired, requestId=request_id, deadline=deadline):
        market.completeWithAttestation(request_id, EVIDENCE, signature, sender=stranger)
    with reverts(market.UnknownRequest, requestId=99):
        market.completeWithAttestation(99, EVIDENCE, signature, sender=stranger)


@pytest.fixture
def actor(project, stranger):
    """A contract account (ReentrantActor): smart-wallet attester, contract demander or payee."""
    contract = stranger.deploy(project.ReentrantActor)
    stranger.transfer(contract, 100 * PRICE)
    return contract


def test_erc1271_attester_completes(mkit, market, suppliers, supplier, buyer, stranger, actor):
    owner_key = fresh_key()
    actor.setSigner(owner_key.address, sender=stranger)
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], attester=actor.address)
    # The wallet refuses a statement by another key.
    with reverts(market.InvalidAttestation, requestId=request_id):
        market.completeWithAttestation(request_id, EVIDENCE, mkit.completion_signature(fresh_key(), request_id), sender=stranger)
    receipt = market.completeWithAttestation(request_id, EVIDENCE, mkit.completion_signature(owner_key, request_id), sender=stranger)
    assert_single_event(receipt, market.RequestCompleted, confirmedBy=actor.address)


def test_erc1271_attester_without_a_signer_refuses_everything(mkit, market, suppliers, supplier, buyer, stranger, actor):
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], attester=actor.address)
    with reverts(market.InvalidAttestation, requestId=request_id):
        market.completeWithAttestation(request_id, EVIDENCE, b"\x00" * 65, sender=stranger)


def test_attester_with_code_that_is_not_a_wallet_is_refused(mkit, market, suppliers, supplier, buyer, stranger, registry):
    """A contract without isValidSignature (here the registry) never attests: the call fails, not the tx."""
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], attester=registry.address)
    with reverts(market.InvalidAttestation, requestId=request_id):
        market.completeWithAttestation(request_id, EVIDENCE, b"\x01" * 65, sender=stranger)


# =========================================================================== refund


def test_refund_after_the_deadline_pays_the_escrow_back(chain, mkit, market, suppliers, supplier, buyer):
    deadline = mkit.now() + 100
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], deadline=deadline)  # 21 in escrow
    chain.pending_timestamp = deadline + 1
    before = buyer.balance
    receipt = market.refund(request_id, sender=buyer)
    assert_single_event(receipt, market.RequestRefunded, requestId=request_id, demander=buyer.address, amount=21)
    assert buyer.balance == before + 21 - receipt.total_fees_paid
    assert market.getRequest(request_id).status == R_REFUNDED
    assert market.balance == market.creditOf(buyer) == 9
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_REFUNDED):
        market.refund(request_id, sender=buyer)
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_REFUNDED):  # no completion after it
        market.confirmCompletion(request_id, EVIDENCE, sender=buyer)


def test_refund_before_or_at_the_deadline_is_refused(chain, mkit, market, suppliers, supplier, buyer):
    deadline = mkit.now() + 100
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], deadline=deadline)
    with reverts(market.DeadlineNotReached, requestId=request_id, deadline=deadline):
        market.refund(request_id, sender=buyer)
    chain.pending_timestamp = deadline
    with reverts(market.DeadlineNotReached, requestId=request_id, deadline=deadline):
        market.refund(request_id, sender=buyer)


def test_refund_errors(chain, mkit, market, suppliers, supplier, buyer, stranger):
    with reverts(market.UnknownRequest, requestId=4):
        market.refund(4, sender=buyer)
    deadline = mkit.now() + 100
    open_id, _, _ = mkit.post(buyer, units=500, deadline=deadline)
    completed, _ = make_agreement(mkit, supplier, buyer, suppliers[0], units=1, deadline=deadline)
    matched, _ = make_agreement(mkit, supplier, buyer, suppliers[1], units=1, deadline=deadline)
    market.confirmCompletion(completed, EVIDENCE, sender=buyer)
    chain.pending_timestamp = deadline + 1
    with reverts(market.WrongRequestStatus, requestId=open_id, status=R_OPEN):
        market.refund(open_id, sender=buyer)
    with reverts(market.WrongRequestStatus, requestId=completed, status=R_COMPLETED):  # no refund after completion
        market.refund(completed, sender=buyer)
    with reverts(market.NotDemander, requestId=matched, caller=supplier.address):
        market.refund(matched, sender=supplier)
    market.refund(matched, sender=buyer)


# =========================================================================== withdraw


def test_withdraw_pays_the_whole_credit(mkit, market, suppliers, supplier, buyer):
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0])
    market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    for account, amount in ((supplier, 21), (buyer, 9)):
        before = account.balance
        receipt = market.withdraw(sender=account)
        assert_single_event(receipt, market.Withdrawn, account=account.address, amount=amount)
        assert account.balance == before + amount - receipt.total_fees_paid
        assert market.creditOf(account) == 0
        with reverts(market.NothingToWithdraw, account=account.address):
            market.withdraw(sender=account)
    assert market.balance == 0


def test_withdraw_with_no_credit_is_refused(market, stranger):
    with reverts(market.NothingToWithdraw, account=stranger.address):
        market.withdraw(sender=stranger)


# =========================================================================== fee


def test_set_fee_configures_recipient_and_rate(market, admin, fee_recipient):
    receipt = market.setFee(fee_recipient, MAX_FEE_BPS, sender=admin)
    assert_single_event(receipt, market.FeeConfigured, recipient=fee_recipient.address, feeBps=MAX_FEE_BPS)
    assert (market.feeRecipient(), market.feeBps()) == (fee_recipient.address, MAX_FEE_BPS)
    market.setFee(fee_recipient, 0, sender=admin)
    assert market.feeBps() == 0


def test_set_fee_bounds_and_zero_recipient(market, admin, fee_recipient):
    with reverts(market.FeeTooHigh, feeBps=MAX_FEE_BPS + 1, maxFeeBps=MAX_FEE_BPS):
        market.setFee(fee_recipient, MAX_FEE_BPS + 1, sender=admin)
    with reverts(market.FeeTooHigh, feeBps=2**256 - 1, maxFeeBps=MAX_FEE_BPS):
        market.setFee(fee_recipient, 2**256 - 1, sender=admin)
    for fee in (0, 5):  # never the zero address, not even with a zero fee
        with reverts(market.ZeroAddress):
            market.setFee(ZERO_ADDRESS, fee, sender=admin)
    assert market.feeRecipient() == admin.address


def test_set_fee_is_the_admins(market, admin, stranger, fee_recipient):
    with reverts(market.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=DEFAULT_ADMIN_ROLE):
        market.setFee(fee_recipient, 10, sender=stranger)
    market.grantRole(PAUSER_ROLE, stranger, sender=admin)  # pausing does not set fees
    with reverts(market.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=DEFAULT_ADMIN_ROLE):
        market.setFee(fee_recipient, 10, sender=stranger)


def test_fee_rate_is_fixed_at_match_time(mkit, market, suppliers, supplier, buyer, admin, fee_recipient):
    """Raising the fee after a match (or front-running a completion with it) does not touch that agreement."""
    market.setFee(fee_recipient, 100, sender=admin)
    early, _ = make_agreement(mkit, supplier, buyer, suppliers[0], price=10_000, units=1, max_price=10_000)
    assert market.getRequest(early).feeBps == 100
    market.setFee(fee_recipient, MAX_FEE_BPS, sender=admin)
    late, _ = make_agreement(mkit, supplier, buyer, suppliers[1], price=10_000, units=1, max_price=10_000)
    assert market.getRequest(late).feeBps == MAX_FEE_BPS
    receipt = market.confirmCompletion(early, EVIDENCE, sender=buyer)
    assert_single_event(receipt, market.RequestCompleted, supplierAmount=9_900, fee=100)
    receipt = market.confirmCompletion(late, EVIDENCE, sender=buyer)
    assert_single_event(receipt, market.RequestCompleted, supplierAmount=9_000, fee=1_000)


def test_fee_of_an_open_request_is_the_rate_at_its_match(mkit, market, suppliers, supplier, buyer, stranger, admin, fee_recipient):
    request_id, _, _ = mkit.post(buyer, units=1, max_price=10_000)
    market.setFee(fee_recipient, 300, sender=admin)
    mkit.publish(suppliers[0], supplier, price=10_000)
    market.matchRequest(request_id, sender=stranger)
    assert market.getRequest(request_id).feeBps == 300


def test_fee_goes_to_the_recipient_of_the_moment(mkit, market, suppliers, supplier, buyer, stranger, admin, fee_recipient):
    market.setFee(fee_recipient, 500, sender=admin)
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], price=1_000, units=1, max_price=1_000)
    market.setFee(stranger, 0, sender=admin)
    market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    assert (market.creditOf(stranger), market.creditOf(fee_recipient), market.creditOf(supplier)) == (50, 0, 950)


@pytest.mark.parametrize(
    "price,units,bps",
    [(1, 1, MAX_FEE_BPS), (9, 1, MAX_FEE_BPS), (10, 1, MAX_FEE_BPS), (3_333, 3, 7), (10**18 + 1, 7, 1), (MAX_UINT96, 1, 999)],
)
def test_fee_rounds_down_and_the_parts_add_up(mkit, market, suppliers, supplier, buyer, admin, fee_recipient, price, units, bps):
    market.setFee(fee_recipient, bps, sender=admin)
    if price * units > 10**24:
        mkit.kit.chain.set_balance(buyer, price * units + 10**21)
    request_id, _ = make_agreement(mkit, supplier, buyer, suppliers[0], price=price, units=units, max_price=price)
    receipt = market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    amount = price * units
    fee = amount * bps // 10_000
    log = assert_single_event(receipt, market.RequestCompleted, supplierAmount=amount - fee, fee=fee)
    assert log.supplierAmount + log.fee == amount
    assert market.creditOf(supplier) + market.creditOf(fee_recipient) == amount
    if price == 1:
        assert fee == 0  # dust: no fee at all


# =========================================================================== pause


def test_pause_and_unpause_events_and_roles(market, admin, stranger):
    with reverts(market.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=PAUSER_ROLE):
        market.pause(sender=stranger)
    with reverts(market.ExpectedPause):
        market.unpause(sender=admin)
    receipt = market.pause(sender=admin)
    assert_single_event(receipt, market.Paused, account=admin.address)
    assert market.paused()
    with reverts(market.EnforcedPause):
        market.pause(sender=admin)
    with reverts(market.AccessControlUnauthorizedAccount, account=stranger.address, neededRole=PAUSER_ROLE):
        market.unpause(sender=stranger)
    receipt = market.unpause(sender=admin)
    assert_single_event(receipt, market.Unpaused, account=admin.address)
    assert not market.paused()


def test_pause_stops_new_business_but_agreements_and_money_keep_moving(chain, mkit, market, suppliers, supplier, buyer, stranger, admin, fee_recipient):
    attester = fresh_key()
    deadline = mkit.now() + 1000
    market.setFee(fee_recipient, 100, sender=admin)
    terms = {"price": 7_000, "max_price": 10_000, "units": 1, "deadline": deadline}
    to_decline, _ = make_agreement(mkit, supplier, buyer, suppliers[0], offer_units=5, **terms)
    to_confirm, _ = make_agreement(mkit, supplier, buyer, suppliers[1], offer_units=1, **terms)
    to_attest, _ = make_agreement(mkit, supplier, buyer, suppliers[2], offer_units=1, attester=attester.address, **terms)
    to_refund, _ = make_agreement(mkit, supplier, buyer, suppliers[3], offer_units=1, **terms)
    listed, _ = mkit.publish(suppliers[4], supplier, price=3, valid_until=mkit.now() + 500)
    open_id, _, _ = mkit.post(buyer, units=1, max_price=2)  # below every offer
    market.pause(sender=admin)

    # Stopped: new offers, requests, raises and matches.
    with reverts(market.EnforcedPause):
        mkit.publish(suppliers[5], supplier, hint=0)
    with reverts(market.EnforcedPause):
        mkit.post(buyer)
    with reverts(market.EnforcedPause):
        market.raiseMaxUnitPrice(open_id, 3, sender=buyer, value=1)
    with reverts(market.EnforcedPause):
        market.matchRequest(open_id, sender=stranger)

    # Still working: everything else.
    mkit.update_price(listed, 4, supplier)
    mkit.decline(to_decline, supplier)
    market.confirmCompletion(to_confirm, EVIDENCE, sender=buyer)
    market.completeWithAttestation(to_attest, EVIDENCE, mkit.completion_signature(attester, to_attest), sender=stranger)
    market.cancelRequest(open_id, sender=buyer)
    market.setFee(fee_recipient, 200, sender=admin)
    chain.pending_timestamp = deadline + 1
    assert market.pruneOffers([listed], sender=stranger).decode_logs(market.OfferPruned)
    market.refund(to_refund, sender=buyer)
    market.cancelRequest(to_decline, sender=buyer)  # Open again after the decline
    for account in (supplier, buyer):
        market.withdraw(sender=account)
    assert market.balance == market.creditOf(fee_recipient) == 2 * 70
    market.withdraw(sender=fee_recipient)
    assert market.balance == 0


# =========================================================================== contract demanders and payees, reentrancy


def actor_post(mkit, market, actor, sender, **kwargs):
    terms = mkit.request_terms(**kwargs)
    deposit = terms[1] * terms[2]
    actor.execute(market, market.postRequest.encode_input(terms), deposit, sender=sender)
    return market.lastRequestId()


def test_contract_demander_cancels_and_reentry_is_refused(mkit, market, buyer, stranger, actor):
    mkit.post(buyer, units=5)  # other money in the contract
    request_id = actor_post(mkit, market, actor, stranger, units=2)
    actor.setReentry(market, market.cancelRequest.encode_input(request_id), 0, sender=stranger)
    before = actor.balance
    actor.execute(market, market.cancelRequest.encode_input(request_id), 0, sender=stranger)
    assert actor.reentryAttempted() and not actor.reentrySucceeded()
    assert bytes(actor.reentryReturnData()) == REENTRANT_CALL
    assert actor.balance == before + 2 * PRICE
    assert market.balance == 5 * PRICE
    assert market.getRequest(request_id).status == R_CANCELLED


@pytest.mark.parametrize("reentry", ["refund", "withdraw", "cancel_other", "confirm"])
def test_reentry_from_a_refund_payment_gets_nothing_extra(chain, mkit, market, suppliers, supplier, buyer, stranger, actor, reentry):
    mkit.post(buyer, units=5)  # other money in the contract
    deadline = mkit.now() + 100
    mkit.publish(suppliers[0], supplier, price=PRICE // 2, units=10)
    request_id = actor_post(mkit, market, actor, stranger, units=2, deadline=deadline)  # matched: PRICE credited
    other_open = actor_post(mkit, market, actor, stranger, units=20)  # the offer has 8 units left
    assert market.getRequest(request_id).status == R_MATCHED and market.creditOf(actor) == PRICE
    data = {
        "refund": market.refund.encode_input(request_id),
        "withdraw": market.withdraw.encode_input(),
        "cancel_other": market.cancelRequest.encode_input(other_open),
        "confirm": market.confirmCompletion.encode_input(request_id, EVIDENCE),
    }[reentry]
    actor.setReentry(market, data, 0, sender=stranger)
    chain.pending_timestamp = deadline + 1
    before, market_before = actor.balance, market.balance

    actor.execute(market, market.refund.encode_input(request_id), 0, sender=stranger)

    assert actor.reentryAttempted() and not actor.reentrySucceeded()
    if reentry == "confirm":  # not guarded, but the request is already Refunded
        expected = market.WrongRequestStatus.abi.selector
        assert bytes(actor.reentryReturnData())[:4] == keccak(text=expected)[:4]
    else:
        assert bytes(actor.reentryReturnData()) == REENTRANT_CALL
    assert actor.balance == before + PRICE  # the escrow of 2 units at PRICE / 2, once
    assert market.balance == market_before - PRICE
    assert market.creditOf(actor) == PRICE
    assert market.getRequest(other_open).status == R_OPEN


def test_reentrant_withdraw_from_a_withdraw_payment_is_refused(mkit, market, suppliers, supplier, buyer, stranger, actor):
    mkit.post(buyer, units=5)
    mkit.publish(suppliers[0], supplier, price=PRICE // 4, units=10)
    actor_post(mkit, market, actor, stranger, units=4)  # 3 * PRICE credited to the actor
    actor.setReentry(market, market.withdraw.encode_input(), 0, sender=stranger)
    before, market_before = actor.balance, market.balance
    actor.execute(market, market.withdraw.encode_input(), 0, sender=stranger)
    assert actor.reentryAttempted() and not actor.reentrySucceeded()
    assert bytes(actor.reentryReturnData()) == REENTRANT_CALL
    assert actor.balance == before + 3 * PRICE
    assert market.balance == market_before - 3 * PRICE
    assert market.creditOf(actor) == 0


def test_contract_demander_that_refuses_ether_cannot_cancel_and_keeps_its_request(mkit, market, stranger, actor):
    request_id = actor_post(mkit, market, actor, stranger, units=2)
    actor.setRejectPayments(True, sender=stranger)
    with reverts(market.FailedCall):
        actor.execute(market, market.cancelRequest.encode_input(request_id), 0, sender=stranger)
    assert market.getRequest(request_id).status == R_OPEN
    assert market.balance == 2 * PRICE
    actor.setRejectPayments(False, sender=stranger)
    actor.execute(market, market.cancelRequest.encode_input(request_id), 0, sender=stranger)
    assert market.getRequest(request_id).status == R_CANCELLED


def test_contract_payee_is_credited_and_withdraws(kit, mkit, market, registry, supplier, buyer, stranger, actor):
    """A supplier device owned by a contract: the device may not sign the offer (OwnerMustPublish), the
    contract publishes with its own call, is the payee and withdraws."""
    device = kit.new_device()  # Active, held by the manufacturer
    registry.transferFrom(kit.manufacturer, actor, device.id, sender=kit.manufacturer)
    with reverts(market.OwnerMustPublish, deviceId=device.id, owner=actor.address):
        mkit.publish(device, stranger, signed=True, price=PRICE)

    def publish_by_the_contract() -> int:
        terms = mkit.terms(price=PRICE)
        call = market.publishOffer.encode_input(device.id, terms, mkit.price_hint(SERVICE, PRICE), NO_AUTH)
        actor.execute(market, call, 0, sender=stranger)
        return market.lastOfferId()

    offer_id = publish_by_the_contract()
    assert market.listedOfferOf(device.id, SERVICE) == offer_id
    request_id, matched, receipt = mkit.post(buyer)
    assert matched == offer_id
    assert_single_event(receipt, market.RequestMatched, payee=actor.address)
    market.confirmCompletion(request_id, EVIDENCE, sender=buyer)
    assert market.creditOf(actor) == PRICE
    actor.setRejectPayments(True, sender=stranger)
    with reverts(market.FailedCall):
        actor.execute(market, market.withdraw.encode_input(), 0, sender=stranger)
    assert market.creditOf(actor) == PRICE
    actor.setRejectPayments(False, sender=stranger)
    before = actor.balance
    actor.execute(market, market.withdraw.encode_input(), 0, sender=stranger)
    assert actor.balance == before + PRICE
    # The contract payee declines through its own call.
    publish_by_the_contract()
    request_id, _, _ = mkit.post(buyer)
    actor.execute(market, market.declineAgreement.encode_input(request_id, NO_AUTH), 0, sender=stranger)
    assert market.getRequest(request_id).status == R_OPEN


# =========================================================================== escrow accounting


def test_contract_balance_is_open_escrow_plus_credits_through_a_scenario(chain, mkit, market, suppliers, supplier, buyer, stranger, admin, fee_recipient):
    accounts = [supplier, buyer, stranger, fee_recipient, admin]
    market.setFee(fee_recipient, 333, sender=admin)
    deadline = mkit.now() + 1000
    attester = fresh_key()
    steps = []

    def check(label):
        steps.append(label)
        assert_solvent(mkit, accounts)

    mkit.publish(suppliers[0], supplier, price=997, units=7)
    mkit.publish(suppliers[1], supplier, price=1_003, units=5)
    check("offers")
    r1, o1, _ = mkit.post(buyer, units=3, max_price=1_500, policy=LATEST, deadline=deadline)  # 1_003
    r2, o2, _ = mkit.post(stranger, units=4, max_price=1_000, policy=EARLIEST, deadline=deadline, attester=attester.address)
    r3, o3, _ = mkit.post(buyer, units=50, max_price=2_000, deadline=deadline)  # stays Open
    r4, _, _ = mkit.post(stranger, units=1, max_price=999, deadline=deadline)  # 997 offer: 3 units left
    assert 0 not in (o1, o2) and o3 == 0
    check("posted")
    mkit.decline(r1, supplier)
    check("declined")
    market.raiseMaxUnitPrice(r1, 1_010, sender=buyer, value=(1_010 - 1_003) * 3)
    check("raised")
    market.completeWithAttestation(r2, EVIDENCE, mkit.completion_signature(attester, r2), sender=buyer)
    check("attested")
    market.cancelRequest(r3, sender=buyer)
    check("cancelled")
    market.setFee(stranger, 1_000, sender=admin)
    for account in (supplier, stranger):
        if market.creditOf(account):
            market.withdraw(sender=account)
    check("withdrawn")
    chain.pending_timestamp = deadline + 1
    for request_id, demander in ((r1, buyer), (r4, stranger)):
        if market.getRequest(request_id).status == R_MATCHED:
            market.refund(request_id, sender=demander)
        elif market.getRequest(request_id).status == R_OPEN:
            market.cancelRequest(request_id, sender=demander)
    check("refunded")
    for account in accounts:
        if market.creditOf(account):
            market.withdraw(sender=account)
    assert market.balance == 0
    assert len(steps) == 8
