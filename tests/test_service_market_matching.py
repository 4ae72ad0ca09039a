"""ServiceMarket, matching: postRequest (deposit, immediate match or Open), matchRequest, previewMatch,
the three policies on one market, deterministic tie-breaking, what each walk skips, prunes and where it
stops, the MAX_MATCH_STEPS bound, the offers of a device that declined the request (skipped, never taken
by it), and the supplier device's state at match time (suspended,
decommissioned, sold: the offer is dead and pruned).  A device lists one offer per service type, so the
markets here are built over several of the session's ``suppliers`` devices.
"""

from __future__ import annotations

import pytest

from contract_helpers import (
    DAY,
    MAX_UINT32,
    ZERO_ADDRESS,
    assert_no_event,
    assert_single_event,
    event_logs,
    reverts,
)
from market_helpers import (
    EARLIEST,
    LATEST,
    LOWEST,
    MAX_MATCH_STEPS,
    MAX_UINT40,
    MAX_UINT96,
    OTHER_SERVICE,
    P_EXPIRED,
    P_NOT_ACTIVE,
    P_OWNER_CHANGED,
    POLICIES,
    PRICE,
    R_CANCELLED,
    R_MATCHED,
    R_OPEN,
    SERVICE,
    declined_request,
    fresh_key,
)

pytestmark = pytest.mark.usefixtures("_deployments")

POLICY_IDS = ["latest", "lowest", "earliest"]


def status(market, request_id):
    return market.getRequest(request_id).status


def matched_offer(market, request_id):
    return market.getRequest(request_id).offerId


# =========================================================================== postRequest


def test_post_request_without_offers_stays_open_with_its_deposit(mkit, market, buyer):
    attester = fresh_key().address
    terms = mkit.request_terms(units=3, max_price=5 * PRICE, policy=EARLIEST, attester=attester)
    assert market.postRequest.call(terms, sender=buyer, value=15 * PRICE) == (1, 0)

    request_id, offer_id, receipt = mkit.post(buyer, terms=terms)

    assert (request_id, offer_id) == (1, 0)
    assert market.lastRequestId() == 1
    assert_single_event(
        receipt,
        market.RequestPosted,
        requestId=1,
        serviceType=SERVICE,
        demander=buyer.address,
        policy=EARLIEST,
        units=3,
        maxUnitPrice=5 * PRICE,
        deadline=terms[3],
        attester=attester,
    )
    assert_no_event(receipt, market.RequestMatched)
    r = market.getRequest(1)
    assert (r.demander, r.policy, r.status, r.deadline, r.round, r.feeBps) == (
        buyer.address, EARLIEST, R_OPEN, terms[3], 0, 0
    )
    assert (r.attester, r.unitPrice, r.payee, r.offerId, r.units) == (attester, 5 * PRICE, ZERO_ADDRESS, 0, 3)
    assert bytes(r.serviceType) == SERVICE
    assert market.balance == 15 * PRICE
    assert market.creditOf(buyer) == 0


def test_post_request_matches_at_once_and_credits_the_price_difference(mkit, market, suppliers, supplier, buyer, fee_recipient, admin):
    market.setFee(fee_recipient, 250, sender=admin)
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=7, units=10)
    terms = mkit.request_terms(units=3, max_price=10)
    assert market.postRequest.call(terms, sender=buyer, value=30) == (1, offer_id)

    request_id, matched, receipt = mkit.post(buyer, terms=terms)

    assert matched == offer_id
    assert_single_event(
        receipt,
        market.RequestMatched,
        requestId=request_id,
        serviceType=SERVICE,
        offerId=offer_id,
        deviceId=suppliers[0].id,
        payee=supplier.address,
        unitPrice=7,
        round=1,
        refunded=9,
        unitsLeft=7,
    )
    r = market.getRequest(request_id)
    assert (r.status, r.unitPrice, r.payee, r.offerId, r.round, r.feeBps, r.units) == (
        R_MATCHED, 7, supplier.address, offer_id, 1, 250, 3
    )
    assert market.creditOf(buyer) == 9
    assert market.balance == 30  # 21 in escrow, 9 the demander's credit
    assert market.getOffer(offer_id).units == 7
    assert mkit.listed() == [offer_id]


def test_match_that_takes_every_unit_unlists_the_offer(mkit, market, suppliers, supplier, buyer):
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=PRICE, units=4)
    _, _, receipt = mkit.post(buyer, units=4)
    assert_single_event(receipt, market.RequestMatched, offerId=offer_id, unitsLeft=0, refunded=0)
    assert market.getOffer(offer_id).units == 0
    assert market.marketOf(SERVICE).listed == 0
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == 0
    assert mkit.listed() == []


@pytest.mark.parametrize("delta", [-1, 1, "zero"])
def test_post_request_rejects_a_wrong_deposit(mkit, market, buyer, delta):
    value = 0 if delta == "zero" else 6 * PRICE + delta
    with reverts(market.WrongDeposit, expected=6 * PRICE, received=value):
        mkit.post(buyer, units=2, max_price=3 * PRICE, value=value)
    assert market.lastRequestId() == 0


@pytest.mark.parametrize(
    "field,value,error,args",
    [
        ("units", 0, "ZeroAmount", {}),
        ("units", MAX_UINT32 + 1, "AmountOutOfRange", {"value": MAX_UINT32 + 1, "max": MAX_UINT32}),
        ("max_price", 0, "ZeroAmount", {}),
        ("max_price", MAX_UINT96 + 1, "AmountOutOfRange", {"value": MAX_UINT96 + 1, "max": MAX_UINT96}),
        ("deadline", MAX_UINT40 + 1, "TimestampTooFar", {"timestamp": MAX_UINT40 + 1, "latest": MAX_UINT40}),
        ("policy", 3, "UnknownPolicy", {"policy": 3}),
        ("policy", 255, "UnknownPolicy", {"policy": 255}),
    ],
)
def test_post_request_rejects_out_of_range_terms(mkit, market, buyer, field, value, error, args):
    with reverts(getattr(market, error), **args):
        mkit.post(buyer, value=0, **{field: value})


@pytest.mark.parametrize("offset", [0, -1])
def test_post_request_rejects_a_deadline_not_in_the_future(mkit, market, buyer, offset):
    deadline = mkit.now() + offset
    with reverts(market.TimestampInPast, timestamp=deadline):
        mkit.post(buyer, deadline=deadline)


def test_post_request_accepts_a_deadline_far_ahead(mkit, market, buyer):
    request_id, _, _ = mkit.post(buyer, deadline=MAX_UINT40)
    assert market.getRequest(request_id).deadline == MAX_UINT40


def test_post_request_when_paused_is_refused(mkit, market, buyer, admin):
    market.pause(sender=admin)
    with reverts(market.EnforcedPause):
        mkit.post(buyer)


def test_max_price_times_max_units_is_deposited_exactly(chain, mkit, market, suppliers, supplier, buyer, stranger, admin, fee_recipient):
    """(2^96 - 1) * (2^32 - 1) wei, about 3.4e20 ether: computed in uint256, no overflow, exact."""
    deposit = MAX_UINT96 * MAX_UINT32
    chain.set_balance(buyer, deposit + 10**21)
    terms = mkit.request_terms(units=MAX_UINT32, max_price=MAX_UINT96)
    # One wei off, one unit off, and the product truncated to 96 bits.
    for wrong in (deposit - 1, deposit + 1, deposit - MAX_UINT96, deposit % 2**96):
        with reverts(market.WrongDeposit, expected=deposit, received=wrong):
            market.postRequest(terms, sender=buyer, value=wrong)
    request_id, _, _ = mkit.post(buyer, terms=terms)
    assert market.balance == deposit
    # A supplier selling every unit at the top price: the whole deposit becomes the agreement.
    market.setFee(fee_recipient, 1_000, sender=admin)
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=MAX_UINT96, units=MAX_UINT32)
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_single_event(receipt, market.RequestMatched, offerId=offer_id, refunded=0, unitsLeft=0)
    receipt = market.confirmCompletion(request_id, b"\x00" * 32, sender=buyer)
    fee = deposit * 1_000 // 10_000
    assert_single_event(receipt, market.RequestCompleted, supplierAmount=deposit - fee, fee=fee)
    assert market.creditOf(supplier) == deposit - fee
    assert market.creditOf(fee_recipient) == fee
    market.withdraw(sender=supplier)
    market.withdraw(sender=fee_recipient)
    assert market.balance == 0


# =========================================================================== matchRequest and previewMatch


def test_match_request_by_anyone_once_an_offer_arrives(mkit, market, suppliers, supplier, buyer, stranger):
    request_id, _, _ = mkit.post(buyer, units=2, max_price=PRICE)
    assert market.previewMatch(request_id) == (0, 0)
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=PRICE // 2, units=5)
    assert market.previewMatch(request_id) == (offer_id, 1)
    assert market.matchRequest.call(request_id, sender=stranger) == offer_id

    receipt = market.matchRequest(request_id, sender=stranger)

    assert_single_event(
        receipt,
        market.RequestMatched,
        requestId=request_id,
        serviceType=SERVICE,
        offerId=offer_id,
        deviceId=suppliers[0].id,
        payee=supplier.address,
        unitPrice=PRICE // 2,
        round=1,
        refunded=PRICE,
        unitsLeft=3,
    )
    assert market.creditOf(buyer) == PRICE
    assert market.creditOf(stranger) == 0


def test_match_request_finding_nothing_returns_zero_and_keeps_it_open(mkit, market, suppliers, supplier, buyer, stranger):
    mkit.publish(suppliers[0], supplier, price=2 * PRICE)  # too dear
    mkit.publish(suppliers[0], supplier, price=PRICE, service=OTHER_SERVICE)  # another service type
    request_id, _, _ = mkit.post(buyer, max_price=PRICE)
    assert market.matchRequest.call(request_id, sender=stranger) == 0
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_no_event(receipt, market.RequestMatched)
    assert status(market, request_id) == R_OPEN
    assert market.getRequest(request_id).round == 0


def test_matching_a_request_twice_is_refused(mkit, market, suppliers, supplier, buyer, stranger):
    mkit.publish(suppliers[0], supplier, units=10)
    request_id, offer_id, _ = mkit.post(buyer)
    assert offer_id != 0
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_MATCHED):
        market.matchRequest(request_id, sender=stranger)
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_MATCHED):
        market.previewMatch(request_id)
    assert market.getOffer(offer_id).units == 9  # taken once


@pytest.mark.parametrize("request_id", [0, 1, 2**64])
def test_match_and_preview_of_an_unknown_request_are_refused(market, stranger, request_id):
    with reverts(market.UnknownRequest, requestId=request_id):
        market.matchRequest(request_id, sender=stranger)
    with reverts(market.UnknownRequest, requestId=request_id):
        market.previewMatch(request_id)


def test_match_of_a_cancelled_request_is_refused(mkit, market, buyer, stranger):
    request_id, _, _ = mkit.post(buyer)
    market.cancelRequest(request_id, sender=buyer)
    with reverts(market.WrongRequestStatus, requestId=request_id, status=R_CANCELLED):
        market.matchRequest(request_id, sender=stranger)


def test_match_request_until_the_deadline_and_not_after(chain, mkit, market, suppliers, supplier, buyer, stranger):
    deadline = mkit.now() + 1000
    first, _, _ = mkit.post(buyer, deadline=deadline)
    second, _, _ = mkit.post(buyer, deadline=deadline)
    mkit.publish(suppliers[0], supplier, units=1)
    chain.pending_timestamp = deadline
    market.matchRequest(first, sender=stranger)  # at the deadline: still in time
    assert status(market, first) == R_MATCHED
    chain.pending_timestamp = deadline + 1
    mkit.publish(suppliers[0], supplier, units=1)
    with reverts(market.RequestExpired, requestId=second, deadline=deadline):
        market.matchRequest(second, sender=stranger)
    assert status(market, second) == R_OPEN
    market.cancelRequest(second, sender=buyer)  # the demander takes the deposit back


def test_preview_after_the_deadline_is_refused(chain, mkit, market, buyer):
    deadline = mkit.now() + 100
    request_id, _, _ = mkit.post(buyer, deadline=deadline)
    chain.mine(timestamp=deadline)
    assert market.previewMatch(request_id) == (0, 0)
    chain.mine(timestamp=deadline + 1)
    with reverts(market.RequestExpired, requestId=request_id, deadline=deadline):
        market.previewMatch(request_id)


def test_match_request_when_paused_is_refused(mkit, market, suppliers, supplier, buyer, stranger, admin):
    request_id, _, _ = mkit.post(buyer)
    mkit.publish(suppliers[0], supplier)
    market.pause(sender=admin)
    with reverts(market.EnforcedPause):
        market.matchRequest(request_id, sender=stranger)
    assert market.previewMatch(request_id)[0] != 0  # the view still answers
    market.unpause(sender=admin)
    market.matchRequest(request_id, sender=stranger)
    assert status(market, request_id) == R_MATCHED


def test_withdrawn_offers_are_not_seen_by_the_walk(mkit, market, suppliers, supplier, buyer):
    a, _ = mkit.publish(suppliers[0], supplier)
    b, _ = mkit.publish(suppliers[1], supplier)
    mkit.withdraw_offer(b, supplier)
    request_id, offer_id, _ = mkit.post(buyer, policy=LATEST)
    assert offer_id == a
    assert market.getRequest(request_id).round == 1


# =========================================================================== policies


@pytest.fixture
def three_offers(mkit, suppliers, supplier):
    """Offers 1 (price 30), 2 (price 10) and 3 (price 20), published in that order."""
    return mkit.publish_many(suppliers, supplier, [30, 10, 20], units=5)


@pytest.mark.parametrize("policy,expected", [(LATEST, 3), (LOWEST, 2), (EARLIEST, 1)], ids=POLICY_IDS)
def test_each_policy_picks_its_offer(mkit, market, buyer, three_offers, policy, expected):
    request_id, offer_id, _ = mkit.post(buyer, policy=policy, max_price=30)
    assert offer_id == expected
    assert market.getRequest(request_id).unitPrice == market.getOffer(expected).unitPrice


def test_three_policies_on_one_market_pick_three_offers(mkit, market, suppliers, supplier, buyer, stranger):
    mkit.publish_many(suppliers, supplier, [30, 10, 20], units=1)  # each sells out when taken
    requests = {policy: mkit.post(buyer, policy=policy, max_price=30, deadline=mkit.now() + DAY)[0] for policy in (LOWEST, LATEST, EARLIEST)}
    assert {p: matched_offer(market, r) for p, r in requests.items()} == {LOWEST: 2, LATEST: 3, EARLIEST: 1}
    assert [market.getRequest(r).unitPrice for r in requests.values()] == [10, 20, 30]
    assert market.creditOf(buyer) == (30 - 10) + (30 - 20)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_preview_counts_the_steps_of_the_walk(mkit, market, buyer, three_offers, policy):
    request_id, _, _ = mkit.post(buyer, policy=policy, max_price=5, units=1)  # nothing that cheap
    expected_steps = 1 if policy == LOWEST else 3  # LowestPrice stops at the first dearer offer
    assert market.previewMatch(request_id) == (0, expected_steps)


def test_equal_prices_are_taken_in_price_list_order(mkit, market, suppliers, supplier, buyer):
    a, _ = mkit.publish(suppliers[0], supplier, price=10)
    b, _ = mkit.publish(suppliers[1], supplier, price=10)
    _, offer_id, _ = mkit.post(buyer, policy=LOWEST, max_price=10)
    assert offer_id == a  # entered the price list first
    _, offer_id, _ = mkit.post(buyer, policy=LOWEST, max_price=10)
    assert offer_id == a  # again: the order is deterministic, not round robin
    # Re-entering the price at the same value moves `a` behind `b`.
    mkit.update_price(a, 10, supplier)
    _, offer_id, _ = mkit.post(buyer, policy=LOWEST, max_price=10)
    assert offer_id == b
    # The publication policies ignore the price order.
    _, offer_id, _ = mkit.post(buyer, policy=EARLIEST, max_price=10)
    assert offer_id == a
    _, offer_id, _ = mkit.post(buyer, policy=LATEST, max_price=10)
    assert offer_id == b


def test_lowest_price_stops_at_the_first_alive_offer_above_the_maximum(kit, mkit, market, suppliers, supplier, buyer, stranger):
    now = kit.now()
    small, _ = mkit.publish(suppliers[0], supplier, price=10, units=1)  # too few units: skipped
    mkit.publish(suppliers[1], supplier, price=20, units=5)  # above the maximum: the walk ends here
    mkit.publish(suppliers[2], supplier, price=14, units=5, valid_until=now + 50)  # cheap but dead soon
    dear_dead, _ = mkit.publish(suppliers[3], supplier, price=40, units=5, valid_until=now + 50)
    kit.warp(100)
    request_id, offer_id, receipt = mkit.post(buyer, policy=LOWEST, max_price=15, units=2)
    assert offer_id == 0
    # The dead offer priced 14 came before the stop: pruned.  The dead one priced 40 was never reached.
    assert [log.offerId for log in event_logs(receipt, market.OfferPruned)] == [3]
    assert dear_dead in mkit.listed(SERVICE, LOWEST)
    assert market.previewMatch(request_id) == (0, 2)
    # A later cheaper offer is found on the next try.
    cheap, _ = mkit.publish(suppliers[4], supplier, price=15, units=2)
    assert market.matchRequest.call(request_id, sender=stranger) == cheap
    assert small in mkit.listed(SERVICE, LOWEST)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_walk_skips_dearer_and_short_offers_and_prunes_dead_ones(kit, mkit, market, registry, suppliers, supplier, buyer, stranger, policy):
    p = 100
    kinds = ["short", "suspended", "expired", "sold", "dearer", "good"]
    devices = dict(zip(kinds, suppliers))

    def publish(kind):
        price = p + 1 if kind == "dearer" else p
        units = 1 if kind == "short" else 5
        valid_until = kit.now() + 50 if kind == "expired" else None
        return mkit.publish(devices[kind], supplier, price=price, units=units, valid_until=valid_until)[0]

    order = kinds[::-1] if policy == LATEST else kinds  # the walk meets them in `kinds` order
    ids = {kind: publish(kind) for kind in order}
    registry.suspend(devices["suspended"].id, sender=supplier)
    registry.transferFrom(supplier, stranger, devices["sold"].id, sender=supplier)
    kit.warp(100)

    request_id, offer_id, receipt = mkit.post(buyer, policy=policy, max_price=p, units=2)

    assert offer_id == ids["good"]
    pruned = [(log.offerId, log.reason) for log in event_logs(receipt, market.OfferPruned)]
    assert pruned == [(ids["suspended"], P_NOT_ACTIVE), (ids["expired"], P_EXPIRED), (ids["sold"], P_OWNER_CHANGED)]
    assert_single_event(receipt, market.RequestMatched, offerId=ids["good"], round=1)
    # Skipped offers are alive: they stay listed.  (Under LowestPrice the dearer offer sits after `good`.)
    assert set(mkit.listed()) == {ids["short"], ids["dearer"], ids["good"]}


def test_supplier_raising_its_price_charges_at_most_the_maximum(mkit, market, suppliers, supplier, buyer, stranger):
    """A supplier that sees a request coming may raise its price up to the request's maximum, never above."""
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=5, units=10)
    mkit.update_price(offer_id, 10, supplier)  # "front-running" the request below
    _, matched, receipt = mkit.post(buyer, units=2, max_price=10)
    assert_single_event(receipt, market.RequestMatched, offerId=offer_id, unitPrice=10, refunded=0)
    mkit.update_price(offer_id, 11, supplier)
    request_id, matched, _ = mkit.post(buyer, units=2, max_price=10)
    assert matched == 0
    assert market.creditOf(buyer) == 0


# =========================================================================== the step bound


def publish_untakeable(mkit, devices, owner, count, price):
    """``count`` alive offers at ``price`` with one unit each (a request for two cannot take them), one per
    device of ``devices``."""
    return mkit.publish_many(devices, owner, [price] * count, units=1)


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_walk_gives_up_after_max_match_steps_and_the_request_stays_open(mkit, market, suppliers, supplier, buyer, stranger, policy):
    device, blocker_devices = suppliers[0], suppliers[1:]
    if policy == LATEST:
        good, _ = mkit.publish(device, supplier, price=PRICE, units=5)
        blockers = publish_untakeable(mkit, blocker_devices, supplier, MAX_MATCH_STEPS, PRICE)
    else:
        blockers = publish_untakeable(mkit, blocker_devices, supplier, MAX_MATCH_STEPS, PRICE)
        good, _ = mkit.publish(device, supplier, price=PRICE, units=5)
    terms = mkit.request_terms(policy=policy, units=2)
    assert market.postRequest.call(terms, sender=buyer, value=2 * PRICE)[1] == 0

    request_id, offer_id, receipt = mkit.post(buyer, terms=terms)

    assert offer_id == 0 and status(market, request_id) == R_OPEN
    assert_no_event(receipt, market.RequestMatched)
    assert market.previewMatch(request_id) == (0, MAX_MATCH_STEPS)
    assert market.matchRequest.call(request_id, sender=stranger) == 0
    # One blocker fewer: the good offer is the 16th step.
    mkit.withdraw_offer(blockers[0], supplier)
    assert market.previewMatch(request_id) == (good, MAX_MATCH_STEPS)
    market.matchRequest(request_id, sender=stranger)
    assert matched_offer(market, request_id) == good


def test_lowest_price_walk_is_immune_to_dear_blockers(mkit, market, suppliers, supplier, buyer, stranger):
    """MAX_MATCH_STEPS offers priced above the maximum, published first, hide a cheap later offer from the
    publication walks; LowestPrice finds it at its first step."""
    blockers = mkit.publish_many(suppliers[1:], supplier, [2 * PRICE] * MAX_MATCH_STEPS)
    cheap, _ = mkit.publish(suppliers[0], supplier, price=PRICE)
    early, matched, _ = mkit.post(buyer, policy=EARLIEST)
    assert matched == 0 and market.previewMatch(early) == (0, MAX_MATCH_STEPS)
    _, matched, _ = mkit.post(buyer, policy=LOWEST)
    assert matched == cheap
    assert set(mkit.listed()) == {*blockers, cheap}


def test_dead_offers_met_are_pruned_even_when_nothing_is_found(kit, mkit, market, registry, suppliers, supplier, buyer, stranger):
    now = kit.now()
    device, doomed, sold = suppliers[:3]
    expired, _ = mkit.publish(device, supplier, valid_until=now + 50)
    decommissioned, _ = mkit.publish(doomed, supplier)
    owner_changed, _ = mkit.publish(sold, supplier)
    blockers = publish_untakeable(mkit, suppliers[3:], supplier, MAX_MATCH_STEPS - 3, PRICE)
    good, _ = mkit.publish(suppliers[MAX_MATCH_STEPS], supplier, units=5)
    registry.decommission(doomed.id, sender=supplier)
    registry.transferFrom(supplier, stranger, sold.id, sender=supplier)
    kit.warp(100)

    request_id, offer_id, receipt = mkit.post(buyer, policy=EARLIEST, units=2)

    assert offer_id == 0 and status(market, request_id) == R_OPEN
    pruned = [(log.offerId, log.serviceType, log.reason) for log in event_logs(receipt, market.OfferPruned)]
    assert pruned == [
        (expired, SERVICE, P_EXPIRED),
        (decommissioned, SERVICE, P_NOT_ACTIVE),
        (owner_changed, SERVICE, P_OWNER_CHANGED),
    ]
    assert mkit.listed(SERVICE, EARLIEST) == [*blockers, good]
    assert market.marketOf(SERVICE).listed == len(blockers) + 1
    # Pruning made room: the next walk reaches the good offer.
    assert market.previewMatch(request_id) == (good, len(blockers) + 1)
    market.matchRequest(request_id, sender=stranger)
    assert matched_offer(market, request_id) == good


def test_walk_prunes_and_matches_in_one_call(kit, mkit, market, suppliers, supplier, buyer):
    good, _ = mkit.publish(suppliers[0], supplier, price=PRICE)
    dead, _ = mkit.publish(suppliers[1], supplier, price=PRICE, valid_until=kit.now() + 20)
    kit.warp(30)
    _, offer_id, receipt = mkit.post(buyer, policy=LATEST)
    assert offer_id == good
    assert_single_event(receipt, market.OfferPruned, offerId=dead, reason=P_EXPIRED)
    assert_single_event(receipt, market.RequestMatched, offerId=good)
    assert mkit.listed() == [good]


def test_preview_does_not_prune(kit, mkit, market, suppliers, supplier, buyer):
    dead, _ = mkit.publish(suppliers[0], supplier, valid_until=kit.now() + 20)
    request_id, _, _ = mkit.post(buyer, units=20)  # nothing to take yet
    kit.mine_at(kit.now() + 30)
    assert market.previewMatch(request_id) == (0, 1)
    assert mkit.listed() == [dead]


# =========================================================================== devices that declined the request


@pytest.mark.parametrize("policy", POLICIES, ids=POLICY_IDS)
def test_walk_skips_the_offer_of_a_device_that_declined_the_request(mkit, market, suppliers, supplier, buyer, stranger, policy):
    """The declined device's new offer is alive but not takeable by that request: the walk counts it as a
    step, skips it (no pruning: it stays listed) and takes the next offer, under every policy."""
    declined, honest = suppliers[0], suppliers[1]
    request_id = declined_request(mkit, supplier, buyer, declined, policy=policy)
    # The walk meets the declined device's offer first: the newest (LatestPublished), the cheapest
    # (LowestPrice), the oldest (EarliestPublished).
    if policy == LATEST:
        next_offer, _ = mkit.publish(honest, supplier, price=7)
        again, _ = mkit.publish(declined, supplier, price=5)
    else:
        again, _ = mkit.publish(declined, supplier, price=5)
        next_offer, _ = mkit.publish(honest, supplier, price=7)
    assert mkit.listed(SERVICE, policy) == [again, next_offer]
    assert market.previewMatch(request_id) == (next_offer, 2)

    receipt = market.matchRequest(request_id, sender=stranger)

    assert_single_event(
        receipt,
        market.RequestMatched,
        requestId=request_id,
        offerId=next_offer,
        deviceId=honest.id,
        unitPrice=7,
        round=2,
        refunded=0,
        unitsLeft=7,
    )
    assert_no_event(receipt, market.OfferPruned)
    assert market.getOffer(again).units == 10
    assert mkit.listed(SERVICE, policy) == [again, next_offer]
    assert market.listedOfferOf(declined.id, SERVICE) == again


def test_declined_devices_offer_counts_toward_the_step_bound(mkit, market, suppliers, supplier, buyer, stranger):
    """Under LatestPublished, the declined device's offer at the front plus MAX_MATCH_STEPS - 1 offers too
    short for the request fill the walk: the good offer behind them is the 17th.  Withdrawing the declined
    device's offer (not a blocker) brings it within reach."""
    declined = suppliers[0]
    request_id = declined_request(mkit, supplier, buyer, declined, price=PRICE, units=2, max_price=PRICE)
    good, _ = mkit.publish(suppliers[1], supplier, price=PRICE, units=5)
    blockers = publish_untakeable(mkit, suppliers[2:], supplier, MAX_MATCH_STEPS - 1, PRICE)
    again, _ = mkit.publish(declined, supplier, price=PRICE)
    assert mkit.listed(SERVICE, LATEST) == [again, *blockers[::-1], good]

    assert market.previewMatch(request_id) == (0, MAX_MATCH_STEPS)
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_no_event(receipt, market.RequestMatched)
    assert_no_event(receipt, market.OfferPruned)
    assert status(market, request_id) == R_OPEN

    mkit.withdraw_offer(again, supplier)
    assert market.previewMatch(request_id) == (good, MAX_MATCH_STEPS)
    market.matchRequest(request_id, sender=stranger)
    assert matched_offer(market, request_id) == good


def test_declined_devices_dead_offers_are_still_pruned(kit, mkit, market, registry, suppliers, supplier, buyer, stranger):
    """Death is checked first: the dead offers of devices that declined the request are pruned like any other."""
    first, second = suppliers[0], suppliers[1]
    request_id = declined_request(mkit, supplier, buyer, first)
    mkit.publish(second, supplier, price=7)
    market.matchRequest(request_id, sender=stranger)  # round 2, with the second device
    mkit.decline(request_id, supplier)  # both devices have declined
    expired, _ = mkit.publish(first, supplier, price=7, valid_until=kit.now() + 20)
    not_active, _ = mkit.publish(second, supplier, price=7)
    registry.suspend(second.id, sender=supplier)
    kit.warp(30)

    receipt = market.matchRequest(request_id, sender=stranger)

    pruned = [(log.offerId, log.reason) for log in event_logs(receipt, market.OfferPruned)]
    assert pruned == [(not_active, P_NOT_ACTIVE), (expired, P_EXPIRED)]
    assert_no_event(receipt, market.RequestMatched)
    assert mkit.listed() == []


# =========================================================================== supplier state at match time


@pytest.mark.parametrize("state", ["suspend", "decommission"])
def test_offer_of_a_supplier_not_active_is_pruned_at_match(mkit, market, registry, suppliers, supplier, buyer, stranger, state):
    offer_id, _ = mkit.publish(suppliers[0], supplier)
    getattr(registry, state)(suppliers[0].id, sender=supplier)
    request_id, matched, receipt = mkit.post(buyer)
    assert matched == 0
    assert_single_event(receipt, market.OfferPruned, offerId=offer_id, serviceType=SERVICE, reason=P_NOT_ACTIVE)
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == 0
    if state == "suspend":  # resuming does not bring the pruned offer back; publishing again does
        registry.resume(suppliers[0].id, sender=supplier)
        assert market.matchRequest.call(request_id, sender=stranger) == 0
        again, _ = mkit.publish(suppliers[0], supplier)
        market.matchRequest(request_id, sender=stranger)
        assert matched_offer(market, request_id) == again


def test_sold_supplier_offer_is_pruned_and_new_owners_offer_pays_the_new_owner(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    old_offer, _ = mkit.publish(device, supplier, price=PRICE)
    registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    request_id, matched, receipt = mkit.post(buyer)
    assert matched == 0
    assert_single_event(receipt, market.OfferPruned, offerId=old_offer, reason=P_OWNER_CHANGED)
    new_offer, receipt = mkit.publish(device, stranger, price=PRICE)
    assert_no_event(receipt, market.OfferWithdrawn)  # the old one was pruned already
    receipt = market.matchRequest(request_id, sender=stranger)
    assert_single_event(receipt, market.RequestMatched, offerId=new_offer, deviceId=device.id, payee=stranger.address)


def test_payee_is_the_owner_at_match_time_even_if_the_device_is_sold_later(mkit, market, registry, suppliers, supplier, buyer, stranger):
    device = suppliers[0]
    mkit.publish(device, supplier, price=PRICE)
    request_id, _, _ = mkit.post(buyer)
    registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    market.confirmCompletion(request_id, b"\x01" * 32, sender=buyer)
    assert market.creditOf(supplier) == PRICE
    assert market.creditOf(stranger) == 0


def test_offers_of_another_service_type_are_never_taken(mkit, market, suppliers, supplier, buyer):
    mkit.publish(suppliers[0], supplier, service=OTHER_SERVICE)
    for policy in POLICIES:
        _, offer_id, _ = mkit.post(buyer, policy=policy)
        assert offer_id == 0
