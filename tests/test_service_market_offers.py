"""ServiceMarket, supplier side: deployment, the supplier action hashes against the device client's
encoding, publishOffer (owner's call and device-signed action, one listed offer per device and service
type, at most MAX_OFFER_LIFETIME), the publication and price lists, updateOfferPrice and its hints,
withdrawOffer, pruneOffers, listOffers, findPriceHint and listedOfferOf.

The session's supplier devices (``suppliers``, SUPPLIER_POOL of them) are Active and owned by
``supplier``; a device-signed action may be submitted by anyone (``stranger`` relays it).  A device lists
at most one offer per service type, so a market of n offers takes n devices (``publish_many``).
"""

from __future__ import annotations

import pytest
from eth_account import Account

from contract_helpers import (
    DAY,
    DEFAULT_ADMIN_ROLE,
    MAX_UINT32,
    PAUSER_ROLE,
    ZERO_ADDRESS,
    assert_no_event,
    assert_single_event,
    domain_separator,
    event_logs,
    reverts,
    to_compact,
    to_high_s,
)
from market_helpers import (
    EARLIEST,
    LATEST,
    LOWEST,
    MAX_FEE_BPS,
    MAX_HINT_STEPS,
    MAX_MATCH_STEPS,
    MAX_OFFER_LIFETIME,
    MAX_UINT40,
    MAX_UINT96,
    NO_AUTH,
    OTHER_SERVICE,
    P_EXPIRED,
    P_NOT_ACTIVE,
    P_OWNER_CHANGED,
    PRICE,
    SERVICE,
    offer_terms,
    publish_action,
)
from thingledger_device import typed_data

pytestmark = pytest.mark.usefixtures("_deployments")


def links(market, offer_id):
    """(older, newer, cheaper, dearer) of an offer."""
    o = market.getOffer(offer_id)
    return (o.older, o.newer, o.cheaper, o.dearer)


def ends(market, service=SERVICE):
    """(oldest, newest, cheapest, dearest, listed) of a service type."""
    m = market.marketOf(service)
    return (m.oldest, m.newest, m.cheapest, m.dearest, m.listed)


def assert_lists(mkit, service, by_publication, by_price):
    """The three walk orders and the list ends agree with the expected publication and price orders."""
    assert mkit.listed(service, EARLIEST) == by_publication
    assert mkit.listed(service, LATEST) == by_publication[::-1]
    assert mkit.listed(service, LOWEST) == by_price
    if by_publication:
        assert ends(mkit.market, service) == (
            by_publication[0], by_publication[-1], by_price[0], by_price[-1], len(by_publication)
        )
    else:
        assert ends(mkit.market, service) == (0, 0, 0, 0, 0)


# =========================================================================== deployment


def test_constructor_sets_registry_roles_and_no_fee(market, registry, admin, stranger, chain_id):
    """The admin is the first fee recipient (never the zero address); the fee starts at zero."""
    assert market.registry() == registry.address
    assert market.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert market.hasRole(PAUSER_ROLE, admin)
    assert not market.hasRole(PAUSER_ROLE, stranger)
    assert bytes(market.PAUSER_ROLE()) == PAUSER_ROLE
    assert (market.feeRecipient(), market.feeBps()) == (admin.address, 0)
    assert (market.lastOfferId(), market.lastRequestId()) == (0, 0)
    assert (market.MAX_MATCH_STEPS(), market.MAX_HINT_STEPS(), market.MAX_FEE_BPS()) == (
        MAX_MATCH_STEPS, MAX_HINT_STEPS, MAX_FEE_BPS
    )
    assert market.MAX_OFFER_LIFETIME() == MAX_OFFER_LIFETIME == 30 * DAY
    assert not market.paused()
    assert bytes(market.domainSeparator()) == domain_separator(
        typed_data.SERVICE_MARKET_DOMAIN_NAME, chain_id, market.address
    )
    assert market.supportsInterface(bytes.fromhex("7965db0b"))  # IAccessControl
    assert ends(market) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("zero", ["registry", "admin"])
def test_constructor_rejects_zero_registry_or_admin(project, market, registry, admin, zero):
    args = (ZERO_ADDRESS, admin) if zero == "registry" else (registry, ZERO_ADDRESS)
    with reverts(market.ZeroAddress):
        admin.deploy(project.ServiceMarket, *args)


# =========================================================================== action hashes (device client encoding)


@pytest.mark.parametrize(
    "terms",
    [
        offer_terms(valid_until=1_900_000_000),
        offer_terms(service=OTHER_SERVICE, price=1, units=1, valid_until=1, uri=""),
        offer_terms(price=MAX_UINT96, units=MAX_UINT32, valid_until=MAX_UINT40, uri="ipfs://\u00e9t\u00e9 \U0001f50c"),
        # Out-of-range values are still hashed as uint256 (publishOffer refuses them later).
        offer_terms(price=2**256 - 1, units=2**200, valid_until=2**255, uri="x" * 300),
    ],
    ids=["typical", "minimal", "max", "out_of_range"],
)
def test_publish_offer_action_hash_matches_device_client(market, terms):
    assert bytes(market.publishOfferActionHash(terms)) == typed_data.publish_offer_action_hash(*terms)


@pytest.mark.parametrize("offer_id,price", [(1, 1), (2**40 - 1, MAX_UINT96), (2**256 - 1, 2**256 - 1)])
def test_update_and_withdraw_action_hashes_match_device_client(market, offer_id, price):
    assert bytes(market.updateOfferPriceActionHash(offer_id, price)) == typed_data.update_offer_price_action_hash(
        offer_id, price
    )
    assert bytes(market.withdrawOfferActionHash(offer_id)) == typed_data.withdraw_offer_action_hash(offer_id)


@pytest.mark.parametrize("request_id,round_", [(1, 1), (7, 65535), (2**64 - 1, 2**256 - 1)])
def test_decline_agreement_action_hash_matches_device_client(market, request_id, round_):
    assert bytes(market.declineAgreementActionHash(request_id, round_)) == typed_data.decline_agreement_action_hash(
        request_id, round_
    )


def test_action_hashes_differ_between_actions_and_arguments(market):
    hashes = {
        bytes(market.withdrawOfferActionHash(1)),
        bytes(market.withdrawOfferActionHash(2)),
        bytes(market.updateOfferPriceActionHash(1, 5)),
        bytes(market.updateOfferPriceActionHash(1, 6)),
        bytes(market.declineAgreementActionHash(1, 1)),
        bytes(market.declineAgreementActionHash(1, 2)),
        bytes(market.publishOfferActionHash(offer_terms(valid_until=10))),
        bytes(market.publishOfferActionHash(offer_terms(valid_until=10, uri="ipfs://other"))),
    }
    assert len(hashes) == 8


# =========================================================================== publishOffer


def test_publish_offer_by_owner_stores_lists_and_emits(mkit, market, registry, suppliers, supplier):
    device = suppliers[0]
    terms = mkit.terms(price=3 * PRICE, units=25, uri="ipfs://charger-7")
    nonce = registry.getDevice(device.id).nonce

    offer_id, receipt = mkit.publish(device, supplier, terms=terms, hint=0)

    assert offer_id == 1 == market.lastOfferId()
    assert_single_event(
        receipt,
        market.OfferPublished,
        offerId=1,
        serviceType=SERVICE,
        deviceId=device.id,
        unitPrice=3 * PRICE,
        units=25,
        validUntil=terms[3],
        metadataURI="ipfs://charger-7",
    )
    assert_no_event(receipt, registry.DeviceActionExecuted)
    assert registry.getDevice(device.id).nonce == nonce  # the owner's call uses no device nonce
    offer = market.getOffer(1)
    assert (offer.deviceId, offer.epoch, offer.validUntil, offer.units, offer.unitPrice) == (
        device.id, registry.getDevice(device.id).epoch, terms[3], 25, 3 * PRICE
    )
    assert bytes(offer.serviceType) == SERVICE
    assert links(market, 1) == (0, 0, 0, 0)
    assert ends(market) == (1, 1, 1, 1, 1)
    assert ends(market, OTHER_SERVICE) == (0, 0, 0, 0, 0)


def test_publish_offer_signed_by_device_is_relayed_by_anyone(mkit, market, registry, suppliers, stranger):
    device = suppliers[1]
    terms = mkit.terms(price=PRICE, units=4)
    nonce = registry.getDevice(device.id).nonce
    auth = mkit.auth(device, publish_action(terms))

    offer_id, receipt = mkit.publish(device, stranger, terms=terms, auth=auth, hint=0)

    assert_single_event(receipt, market.OfferPublished, offerId=offer_id, deviceId=device.id, units=4)
    assert_single_event(
        receipt,
        registry.DeviceActionExecuted,
        deviceId=device.id,
        target=market.address,
        actionHash=publish_action(terms),
        nonce=nonce,
    )
    assert registry.getDevice(device.id).nonce == nonce + 1
    assert market.getOffer(offer_id).deviceId == device.id


def test_publish_signed_while_the_owner_is_a_contract_is_refused(mkit, market, registry, sales, suppliers, supplier, stranger):
    """A device whose token sits in SalesOrder's escrow may not sign an offer: SalesOrder would become the
    payee of every match and could never withdraw the money."""
    device = suppliers[2]
    registry.approve(sales, device.id, sender=supplier)
    sales.createOrder(("Acme", "FieldKit", 2024, "SN-42"), 10**9, 0, device.id, sender=supplier)
    assert registry.ownerOf(device.id) == sales.address
    assert registry.getDevice(device.id).state == 2  # still Active
    nonce = registry.getDevice(device.id).nonce
    terms = mkit.terms(price=PRICE, units=1)
    auth = mkit.auth(device, publish_action(terms))
    with reverts(market.OwnerMustPublish, deviceId=device.id, owner=sales.address):
        mkit.publish(device, stranger, terms=terms, auth=auth, hint=0)
    assert market.listedOfferOf(device.id, SERVICE) == 0
    assert registry.getDevice(device.id).nonce == nonce  # the refused signature was not used


def test_publish_offer_accepts_the_largest_values(chain, mkit, market, suppliers, supplier):
    at = mkit.now() + 10
    terms = mkit.terms(price=MAX_UINT96, units=MAX_UINT32, valid_until=at + MAX_OFFER_LIFETIME)
    chain.pending_timestamp = at
    offer_id, _ = mkit.publish(suppliers[0], supplier, terms=terms, hint=0)
    offer = market.getOffer(offer_id)
    assert (offer.unitPrice, offer.units, offer.validUntil) == (MAX_UINT96, MAX_UINT32, at + MAX_OFFER_LIFETIME)


@pytest.mark.parametrize("beyond", [1, DAY, MAX_UINT40])
def test_publish_offer_refuses_a_validity_beyond_the_lifetime(chain, mkit, market, suppliers, supplier, beyond):
    at = mkit.now() + 10
    valid_until = at + MAX_OFFER_LIFETIME + beyond
    terms = mkit.terms(valid_until=valid_until)
    chain.pending_timestamp = at
    with reverts(market.TimestampTooFar, timestamp=valid_until, latest=at + MAX_OFFER_LIFETIME):
        market.publishOffer(suppliers[0].id, terms, 0, NO_AUTH, sender=supplier)


def test_publish_offer_accepts_dust_price_and_one_unit(mkit, market, suppliers, supplier):
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=1, units=1, valid_until=mkit.now() + 60)
    offer = market.getOffer(offer_id)
    assert (offer.unitPrice, offer.units) == (1, 1)


def test_metadata_uri_is_emitted_not_stored(mkit, market, suppliers, supplier):
    _, receipt = mkit.publish(suppliers[0], supplier, uri="ipfs://" + "m" * 500)
    assert_single_event(receipt, market.OfferPublished, metadataURI="ipfs://" + "m" * 500)


def test_offers_of_other_service_types_are_separate_markets(mkit, market, suppliers, supplier):
    a, _ = mkit.publish(suppliers[0], supplier, service=SERVICE)
    b, receipt = mkit.publish(suppliers[0], supplier, service=OTHER_SERVICE)  # same device, another type
    assert_no_event(receipt, market.OfferWithdrawn)
    c, _ = mkit.publish(suppliers[1], supplier, service=SERVICE)
    assert_lists(mkit, SERVICE, [a, c], [a, c])
    assert_lists(mkit, OTHER_SERVICE, [b], [b])
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == a
    assert market.listedOfferOf(suppliers[0].id, OTHER_SERVICE) == b
    assert market.listedOfferOf(suppliers[1].id, SERVICE) == c
    assert market.listedOfferOf(suppliers[1].id, OTHER_SERVICE) == 0


# ---- one listed offer per device and service type


def test_publishing_again_replaces_the_devices_listed_offer(mkit, market, registry, suppliers, supplier, stranger):
    device = suppliers[0]
    old, _ = mkit.publish(device, supplier, price=10)
    other, _ = mkit.publish(suppliers[1], supplier, price=20)

    new, receipt = mkit.publish(device, stranger, price=30, signed=True)  # the device's own signature too

    assert_single_event(receipt, market.OfferWithdrawn, offerId=old, serviceType=SERVICE, deviceId=device.id)
    assert_single_event(receipt, market.OfferPublished, offerId=new, deviceId=device.id, unitPrice=30)
    withdrawn_log = event_logs(receipt, market.OfferWithdrawn)[0]
    published_log = event_logs(receipt, market.OfferPublished)[0]
    assert withdrawn_log.log_index < published_log.log_index
    assert market.getOffer(old).units == 0 and links(market, old) == (0, 0, 0, 0)
    assert market.listedOfferOf(device.id, SERVICE) == new
    assert_lists(mkit, SERVICE, [other, new], [other, new])
    with reverts(market.OfferNotListed, offerId=old):
        mkit.withdraw_offer(old, supplier)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_replacing_with_the_replaced_offer_as_hint_uses_its_place(mkit, market, suppliers, supplier, which):
    ids = mkit.publish_many(suppliers, supplier, [10, 20, 30])
    new, _ = mkit.publish(suppliers[which], supplier, price=[10, 20, 30][which], hint=ids[which])
    expected = list(ids)
    expected[which] = new
    assert mkit.listed(SERVICE, LOWEST) == expected
    assert mkit.listed(SERVICE, EARLIEST) == [i for i in ids if i != ids[which]] + [new]


def test_replacing_a_dead_offer_of_a_sold_device(mkit, market, registry, suppliers, supplier, stranger):
    device = suppliers[0]
    old, _ = mkit.publish(device, supplier)
    registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    new, receipt = mkit.publish(device, stranger)
    assert_single_event(receipt, market.OfferWithdrawn, offerId=old, deviceId=device.id)
    assert market.listedOfferOf(device.id, SERVICE) == new
    assert mkit.listed() == [new]


def test_publish_with_its_own_future_id_as_hint_is_refused(mkit, market, suppliers, supplier):
    """The new offer's id (lastOfferId() + 1, known in advance) is no place in the price list."""
    mkit.publish(suppliers[1], supplier, price=10)
    next_id = market.lastOfferId() + 1
    with reverts(market.BadPriceHint, hint=next_id):
        mkit.publish(suppliers[0], supplier, price=10, hint=next_id)
    mkit.publish(suppliers[0], supplier, price=10, hint=next_id - 1)
    assert mkit.listed(SERVICE, LOWEST) == [next_id - 1, next_id]


def test_self_hint_is_refused_even_when_replacing(mkit, market, suppliers, supplier):
    old, _ = mkit.publish(suppliers[0], supplier, price=10)
    with reverts(market.BadPriceHint, hint=old + 1):
        mkit.publish(suppliers[0], supplier, price=10, hint=old + 1)
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == old


@pytest.mark.parametrize(
    "field,value,error,args",
    [
        ("price", 0, "ZeroAmount", {}),
        ("price", MAX_UINT96 + 1, "AmountOutOfRange", {"value": MAX_UINT96 + 1, "max": MAX_UINT96}),
        ("units", 0, "ZeroAmount", {}),
        ("units", MAX_UINT32 + 1, "AmountOutOfRange", {"value": MAX_UINT32 + 1, "max": MAX_UINT32}),
    ],
)
def test_publish_offer_rejects_out_of_range_terms(mkit, market, suppliers, supplier, field, value, error, args):
    terms = mkit.terms(**{field: value})
    with reverts(getattr(market, error), **args):
        market.publishOffer(suppliers[0].id, terms, 0, NO_AUTH, sender=supplier)


@pytest.mark.parametrize("offset", [0, -1, -DAY])
def test_publish_offer_rejects_validity_not_in_the_future(mkit, market, suppliers, supplier, offset):
    valid_until = mkit.now() + offset
    terms = mkit.terms(valid_until=valid_until)
    with reverts(market.TimestampInPast, timestamp=valid_until):
        market.publishOffer(suppliers[0].id, terms, 0, NO_AUTH, sender=supplier)


def test_publish_offer_rejects_a_provisioned_device(kit, mkit, market, supplier):
    device = kit.new_device(owner=supplier, active=False)
    with reverts(market.SupplierNotActive, deviceId=device.id):
        mkit.publish(device, supplier, hint=0)


@pytest.mark.parametrize("state", ["suspended", "decommissioned"])
def test_publish_offer_rejects_a_device_not_active(mkit, market, registry, suppliers, supplier, stranger, state):
    device = suppliers[0]
    getattr(registry, "suspend" if state == "suspended" else "decommission")(device.id, sender=supplier)
    with reverts(market.SupplierNotActive, deviceId=device.id):
        mkit.publish(device, supplier, hint=0)
    with reverts(market.SupplierNotActive, deviceId=device.id):  # not even signed by the device
        mkit.publish(device, stranger, hint=0, signed=True)


def test_publish_offer_rejects_an_unknown_device(mkit, market, supplier):
    unknown = int(Account.create().address, 16)
    with reverts(market.SupplierNotActive, deviceId=unknown):
        market.publishOffer(unknown, mkit.terms(), 0, NO_AUTH, sender=supplier)


def test_publish_offer_by_someone_else_than_the_owner_is_refused(mkit, market, registry, suppliers, supplier, stranger):
    device = suppliers[0]
    with reverts(market.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        mkit.publish(device, stranger, hint=0)
    # An ERC-721 operator moves the token but does not act for the device.
    registry.approve(stranger, device.id, sender=supplier)
    registry.setApprovalForAll(stranger, True, sender=supplier)
    with reverts(market.NotDeviceOwner, deviceId=device.id, caller=stranger.address):
        mkit.publish(device, stranger, hint=0)
    assert market.lastOfferId() == 0


def test_publish_offer_after_the_device_was_sold_is_the_new_owners(mkit, market, registry, suppliers, supplier, stranger):
    device = suppliers[0]
    registry.transferFrom(supplier, stranger, device.id, sender=supplier)
    with reverts(market.NotDeviceOwner, deviceId=device.id, caller=supplier.address):
        mkit.publish(device, supplier, hint=0)
    offer_id, _ = mkit.publish(device, stranger, hint=0)
    assert market.getOffer(offer_id).epoch == registry.getDevice(device.id).epoch == 2


def test_publish_offer_when_paused_is_refused(mkit, market, suppliers, supplier, admin, stranger):
    market.pause(sender=admin)
    with reverts(market.EnforcedPause):
        mkit.publish(suppliers[0], supplier, hint=0)
    with reverts(market.EnforcedPause):
        mkit.publish(suppliers[0], stranger, hint=0, signed=True)


# ---- device-signed publication: the registry's checks surface


def test_publish_signed_with_a_key_that_is_not_the_devices_is_refused(mkit, market, registry, suppliers, stranger):
    device = suppliers[0]
    terms = mkit.terms()
    auth = mkit.auth(device, publish_action(terms), key=Account.create())
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        mkit.publish(device, stranger, terms=terms, auth=auth, hint=0)


def test_publish_signed_with_an_expired_deadline_is_refused(kit, mkit, market, registry, suppliers, stranger):
    device = suppliers[0]
    terms = mkit.terms()
    deadline = kit.now() + 10
    auth = mkit.auth(device, publish_action(terms), deadline=deadline)
    kit.warp(11)
    with reverts(registry.SignatureExpired, deadline=deadline):
        mkit.publish(device, stranger, terms=terms, auth=auth, hint=0)


def test_publish_signature_cannot_be_replayed(mkit, market, registry, suppliers, stranger):
    device = suppliers[0]
    terms = mkit.terms()
    auth = mkit.auth(device, publish_action(terms))
    mkit.publish(device, stranger, terms=terms, auth=auth, hint=0)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):  # its nonce was consumed
        mkit.publish(device, stranger, terms=terms, auth=auth, hint=0)
    assert market.lastOfferId() == 1


@pytest.mark.parametrize(
    "change",
    ["price", "units", "valid_until", "uri", "service", "other_device", "other_target", "other_chain", "other_action"],
)
def test_publish_signature_binds_terms_device_target_and_chain(mkit, market, market2, registry, suppliers, stranger, chain_id, change):
    device, other = suppliers[:2]
    signed_terms = mkit.terms(price=PRICE, units=3, uri="ipfs://a")
    submitted = list(signed_terms)
    kwargs = {}
    action = publish_action(signed_terms)
    submit_device = device
    if change == "price":
        submitted[1] = PRICE - 1
    elif change == "units":
        submitted[2] = 4
    elif change == "valid_until":
        submitted[3] += 1
    elif change == "uri":
        submitted[4] = "ipfs://b"
    elif change == "service":
        submitted[0] = OTHER_SERVICE
    elif change == "other_device":
        submit_device = other  # device's signature submitted for the other device
    elif change == "other_target":
        kwargs["target"] = market2
    elif change == "other_chain":
        kwargs["chain_id"] = chain_id + 1
    elif change == "other_action":
        action = typed_data.withdraw_offer_action_hash(1)
    auth = mkit.auth(device, action, **kwargs)
    with reverts(registry.InvalidDeviceSignature, deviceId=submit_device.id):
        market.publishOffer(submit_device.id, tuple(submitted), 0, auth, sender=stranger)


@pytest.mark.parametrize("malform", [to_high_s, to_compact, lambda sig: sig[:64] + b"\x00"], ids=["high_s", "compact", "v_zero"])
def test_publish_signature_malformed_or_malleable_is_refused(mkit, market, registry, suppliers, stranger, malform):
    device = suppliers[0]
    terms = mkit.terms()
    deadline, sig = mkit.auth(device, publish_action(terms))
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        mkit.publish(device, stranger, terms=terms, auth=(deadline, malform(sig)), hint=0)


# =========================================================================== the two lists


def test_publication_and_price_lists_order_offers(mkit, market, suppliers, supplier):
    # Prices: 20, 10, 20, 10, 30 -> by price 2, 4 (10s in entry order), 1, 3 (20s), 5.
    ids = mkit.publish_many(suppliers, supplier, [20, 10, 20, 10, 30])
    assert ids == [1, 2, 3, 4, 5]
    assert_lists(mkit, SERVICE, [1, 2, 3, 4, 5], [2, 4, 1, 3, 5])
    assert links(market, 1) == (0, 2, 4, 3)
    assert links(market, 3) == (2, 4, 1, 5)
    assert links(market, 5) == (4, 0, 3, 0)


@pytest.mark.parametrize("hint", [0, 1, 2, 3, 4])
def test_any_hint_at_or_before_the_place_finds_it_after_equal_prices(mkit, market, suppliers, supplier, hint):
    # 1:10 2:20 3:20 4:30; a new 20 belongs after 3 whichever listed hint of the type is given.
    mkit.publish_many(suppliers, supplier, [10, 20, 20, 30])
    new, _ = mkit.publish(suppliers[4], supplier, price=20, hint=hint)
    assert mkit.listed(SERVICE, LOWEST) == [1, 2, 3, new, 4]
    assert_lists(mkit, SERVICE, [1, 2, 3, 4, new], [1, 2, 3, new, 4])


def test_cheapest_and_dearest_new_offers_become_list_ends(mkit, market, suppliers, supplier):
    mkit.publish_many(suppliers, supplier, [10, 20])
    cheap, _ = mkit.publish(suppliers[2], supplier, price=5, hint=2)
    dear, _ = mkit.publish(suppliers[3], supplier, price=50, hint=0)
    assert_lists(mkit, SERVICE, [1, 2, cheap, dear], [cheap, 1, 2, dear])


@pytest.mark.parametrize("kind", ["unknown", "withdrawn", "other_type", "above_uint40"])
def test_publish_with_a_bad_hint_is_refused(mkit, market, suppliers, supplier, kind):
    mkit.publish_many(suppliers, supplier, [10, 20])
    foreign, _ = mkit.publish(suppliers[0], supplier, price=15, service=OTHER_SERVICE)
    mkit.withdraw_offer(1, supplier)
    hint = {"unknown": 999, "withdrawn": 1, "other_type": foreign, "above_uint40": 2**40 + 2}[kind]
    with reverts(market.BadPriceHint, hint=hint):
        mkit.publish(suppliers[2], supplier, price=15, hint=hint)


def build_ladder(mkit, devices, owner, count, start_price=10):
    """``count`` offers (one per device) priced start_price, start_price+1, ... each published with the
    exact hint."""
    ids = []
    for i in range(count):
        offer_id, _ = mkit.publish(devices[i], owner, price=start_price + i, hint=ids[-1] if ids else 0)
        ids.append(offer_id)
    return ids


def test_hint_placing_steps_over_at_most_max_hint_steps(mkit, market, suppliers, supplier):
    ids = build_ladder(mkit, suppliers, supplier, MAX_HINT_STEPS + 1)
    high_device, low_device = suppliers[MAX_HINT_STEPS + 1], suppliers[MAX_HINT_STEPS + 2]
    # From the cheapest end, a price above all 33 would step over 33 offers: too far.
    with reverts(market.PriceHintTooFar, hint=0):
        mkit.publish(high_device, supplier, price=1000, hint=0)
    # Exactly MAX_HINT_STEPS steps is fine: from the first offer, 32 offers to step over.
    high, _ = mkit.publish(high_device, supplier, price=1000, hint=ids[0])
    # Walking back towards the cheap end from the dearest: a price below all is 34 steps away.
    with reverts(market.PriceHintTooFar, hint=high):
        mkit.publish(low_device, supplier, price=1, hint=high)
    with reverts(market.PriceHintTooFar, hint=ids[-1]):
        mkit.publish(low_device, supplier, price=1, hint=ids[-1])
    low, _ = mkit.publish(low_device, supplier, price=1, hint=ids[MAX_HINT_STEPS - 1])  # 32 steps back
    assert mkit.listed(SERVICE, LOWEST) == [low, *ids, high]


def test_find_price_hint_called_again_from_its_answer_reaches_the_place(mkit, market, suppliers, supplier):
    ids = build_ladder(mkit, suppliers, supplier, MAX_HINT_STEPS + 1)  # prices 10..42
    hint, found = market.findPriceHint(SERVICE, 1000, 0, MAX_HINT_STEPS)
    assert (hint, found) == (ids[MAX_HINT_STEPS - 1], False)
    hint, found = market.findPriceHint(SERVICE, 1000, hint, MAX_HINT_STEPS)
    assert (hint, found) == (ids[-1], True)
    # Small steps: five at a time, each call going on from the last answer.
    hint, calls = 0, 0
    found = False
    while not found:
        hint, found = market.findPriceHint(SERVICE, 25, hint, 5)
        calls += 1
    assert hint == ids[15] and calls == 4  # price 25 belongs after the 16th offer (price 25)
    mkit.publish(suppliers[MAX_HINT_STEPS + 1], supplier, price=25, hint=hint)
    # Backwards from a dear start.
    hint, found = market.findPriceHint(SERVICE, 12, ids[-1], 10)
    assert not found
    hint = mkit.price_hint(SERVICE, 12)
    assert hint == ids[2]


def test_find_price_hint_on_an_empty_market_and_with_zero_steps(mkit, market, suppliers, supplier):
    assert market.findPriceHint(SERVICE, PRICE, 0, 0) == (0, True)
    mkit.publish_many(suppliers, supplier, [10, 20])
    assert market.findPriceHint(SERVICE, 15, 1, 0) == (1, True)
    assert market.findPriceHint(SERVICE, 25, 1, 0) == (1, False)
    assert market.findPriceHint(SERVICE, 25, 1, 1) == (2, True)
    assert market.findPriceHint(SERVICE, 5, 2, 1) == (1, False)
    assert market.findPriceHint(SERVICE, 5, 2, 2) == (0, True)
    assert market.findPriceHint(SERVICE, 10, 0, 5) == (1, True)  # after the equal price


@pytest.mark.parametrize("start", [3, 99, 2**40])
def test_find_price_hint_rejects_a_bad_start(mkit, market, suppliers, supplier, start):
    mkit.publish_many(suppliers, supplier, [10, 20])
    mkit.publish(suppliers[0], supplier, price=10, service=OTHER_SERVICE)  # id 3, another type
    with reverts(market.BadPriceHint, hint=start):
        market.findPriceHint(SERVICE, 15, start, 5)


# =========================================================================== updateOfferPrice


def test_update_price_moves_the_offer_behind_equal_prices(mkit, market, suppliers, supplier):
    mkit.publish_many(suppliers, supplier, [10, 20, 20, 30])
    receipt = mkit.update_price(1, 20, supplier)  # hint: its own id (its current place)
    assert_single_event(receipt, market.OfferPriceUpdated, offerId=1, serviceType=SERVICE, unitPrice=20)
    assert market.getOffer(1).unitPrice == 20
    assert_lists(mkit, SERVICE, [1, 2, 3, 4], [2, 3, 1, 4])
    # The same price again still moves it behind the offers of that price.
    mkit.update_price(2, 20, supplier)
    assert mkit.listed(SERVICE, LOWEST) == [3, 1, 2, 4]


def test_update_price_down_and_up_with_own_id_as_hint(mkit, market, suppliers, supplier):
    mkit.publish_many(suppliers, supplier, [10, 20, 30, 40])
    mkit.update_price(4, 5, supplier)
    assert_lists(mkit, SERVICE, [1, 2, 3, 4], [4, 1, 2, 3])
    mkit.update_price(4, 100, supplier)
    assert_lists(mkit, SERVICE, [1, 2, 3, 4], [1, 2, 3, 4])
    mkit.update_price(1, 35, supplier)
    assert_lists(mkit, SERVICE, [1, 2, 3, 4], [2, 3, 1, 4])
    assert links(market, 1) == (0, 2, 3, 4)


def test_update_price_with_explicit_hints(mkit, market, suppliers, supplier):
    mkit.publish_many(suppliers, supplier, [10, 20, 30, 40])
    mkit.update_price(1, 35, supplier, hint=3)
    assert mkit.listed(SERVICE, LOWEST) == [2, 3, 1, 4]
    mkit.update_price(1, 15, supplier, hint=4)  # walks back from a dearer hint
    assert mkit.listed(SERVICE, LOWEST) == [1, 2, 3, 4]
    mkit.update_price(4, 1, supplier, hint=0)
    assert mkit.listed(SERVICE, LOWEST) == [4, 1, 2, 3]
    assert ends(market) == (1, 4, 4, 3, 4)


def test_update_price_signed_by_the_device(mkit, market, registry, suppliers, stranger, supplier):
    device = suppliers[1]
    offer_id, _ = mkit.publish(device, supplier, price=10)
    nonce = registry.getDevice(device.id).nonce
    receipt = mkit.update_price(offer_id, 12, stranger, signed=True, device=device)
    assert_single_event(receipt, market.OfferPriceUpdated, offerId=offer_id, unitPrice=12)
    assert_single_event(
        receipt,
        registry.DeviceActionExecuted,
        deviceId=device.id,
        actionHash=typed_data.update_offer_price_action_hash(offer_id, 12),
        nonce=nonce,
    )
    assert market.getOffer(offer_id).unitPrice == 12


def test_update_price_signature_binds_offer_and_price(mkit, market, registry, suppliers, supplier, stranger):
    device = suppliers[0]
    a, _ = mkit.publish(device, supplier, price=10)
    b, _ = mkit.publish(device, supplier, price=10, service=OTHER_SERVICE)
    auth = mkit.auth(device, typed_data.update_offer_price_action_hash(a, 12))
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        market.updateOfferPrice(a, 13, a, auth, sender=stranger)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):
        market.updateOfferPrice(b, 12, b, auth, sender=stranger)
    market.updateOfferPrice(a, 12, a, auth, sender=stranger)
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):  # replayed
        market.updateOfferPrice(a, 12, a, auth, sender=stranger)


@pytest.mark.parametrize("kind", ["withdrawn", "other_type", "unknown", "above_uint40"])
def test_update_price_with_a_stale_or_foreign_hint_is_refused(mkit, market, suppliers, supplier, kind):
    mkit.publish_many(suppliers, supplier, [10, 20, 30])
    foreign, _ = mkit.publish(suppliers[0], supplier, price=15, service=OTHER_SERVICE)
    mkit.withdraw_offer(2, supplier)
    hint = {"withdrawn": 2, "other_type": foreign, "unknown": 77, "above_uint40": 2**41}[kind]
    with reverts(market.BadPriceHint, hint=hint):
        mkit.update_price(1, 25, supplier, hint=hint)
    assert market.getOffer(1).unitPrice == 10


def test_update_price_with_a_hint_too_far_is_refused(mkit, market, suppliers, supplier):
    ids = build_ladder(mkit, suppliers, supplier, MAX_HINT_STEPS + 2)
    # The cheapest moves above all: from its place (the cheap end) 33 offers to step over.  The error
    # names the hint the caller gave (the offer's own id, which stands for its former place).
    with reverts(market.PriceHintTooFar, hint=ids[0]):
        mkit.update_price(ids[0], 1000, supplier)
    mkit.update_price(ids[0], 1000, supplier, hint=ids[1])  # 32 steps from the next one
    assert mkit.listed(SERVICE, LOWEST) == [*ids[1:], ids[0]]


@pytest.mark.parametrize(
    "price,error,args",
    [(0, "ZeroAmount", {}), (MAX_UINT96 + 1, "AmountOutOfRange", {"value": MAX_UINT96 + 1, "max": MAX_UINT96})],
)
def test_update_price_rejects_out_of_range_price(mkit, market, suppliers, supplier, price, error, args):
    offer_id, _ = mkit.publish(suppliers[0], supplier)
    with reverts(getattr(market, error), **args):
        mkit.update_price(offer_id, price, supplier)


def test_update_price_of_unknown_or_unlisted_offer_is_refused(mkit, market, suppliers, supplier):
    offer_id, _ = mkit.publish(suppliers[0], supplier)
    for unknown in (0, 2, 2**40 + 1):
        with reverts(market.UnknownOffer, offerId=unknown):
            mkit.update_price(unknown, 5, supplier, hint=0)
    mkit.withdraw_offer(offer_id, supplier)
    with reverts(market.OfferNotListed, offerId=offer_id):
        mkit.update_price(offer_id, 5, supplier, hint=0)


def test_update_price_by_a_stranger_is_refused(mkit, market, suppliers, supplier, stranger):
    offer_id, _ = mkit.publish(suppliers[0], supplier, price=10)
    with reverts(market.NotDeviceOwner, deviceId=suppliers[0].id, caller=stranger.address):
        mkit.update_price(offer_id, 1, stranger)
    assert market.getOffer(offer_id).unitPrice == 10


def test_update_price_and_withdraw_keep_working_while_paused(mkit, market, suppliers, supplier, admin):
    mkit.publish_many(suppliers, supplier, [10, 20])
    market.pause(sender=admin)
    mkit.update_price(1, 30, supplier)
    mkit.withdraw_offer(2, supplier)
    assert_lists(mkit, SERVICE, [1], [1])


# =========================================================================== withdrawOffer


@pytest.mark.parametrize("which", [1, 2, 3])
def test_withdraw_offer_unlinks_it_from_both_lists(mkit, market, suppliers, supplier, which):
    mkit.publish_many(suppliers, supplier, [20, 10, 30])
    device = suppliers[which - 1]
    receipt = mkit.withdraw_offer(which, supplier)
    assert_single_event(receipt, market.OfferWithdrawn, offerId=which, serviceType=SERVICE, deviceId=device.id)
    offer = market.getOffer(which)
    assert offer.units == 0 and links(market, which) == (0, 0, 0, 0)
    assert offer.deviceId == device.id and offer.unitPrice == [20, 10, 30][which - 1]  # the rest is kept
    assert market.listedOfferOf(device.id, SERVICE) == 0
    by_publication = [i for i in (1, 2, 3) if i != which]
    by_price = [i for i in (2, 1, 3) if i != which]
    assert_lists(mkit, SERVICE, by_publication, by_price)


def test_withdraw_the_only_offer_empties_the_market(mkit, market, suppliers, supplier):
    offer_id, _ = mkit.publish(suppliers[0], supplier)
    mkit.withdraw_offer(offer_id, supplier)
    assert_lists(mkit, SERVICE, [], [])
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == 0
    again, receipt = mkit.publish(suppliers[0], supplier)  # the emptied market works as a new one
    assert_no_event(receipt, market.OfferWithdrawn)
    assert_lists(mkit, SERVICE, [again], [again])


def test_withdraw_offer_signed_by_the_device(mkit, market, registry, suppliers, supplier, stranger):
    device = suppliers[0]
    offer_id, _ = mkit.publish(device, supplier)
    other, _ = mkit.publish(device, supplier, service=OTHER_SERVICE)
    auth = mkit.auth(device, typed_data.withdraw_offer_action_hash(offer_id))
    with reverts(registry.InvalidDeviceSignature, deviceId=device.id):  # signed for another offer
        market.withdrawOffer(other, auth, sender=stranger)
    receipt = market.withdrawOffer(offer_id, auth, sender=stranger)
    assert_single_event(receipt, market.OfferWithdrawn, offerId=offer_id)
    assert_single_event(receipt, registry.DeviceActionExecuted, actionHash=typed_data.withdraw_offer_action_hash(offer_id))
    assert mkit.listed() == []
    assert mkit.listed(OTHER_SERVICE) == [other]


def test_withdraw_offer_errors(mkit, market, suppliers, supplier, stranger):
    offer_id, _ = mkit.publish(suppliers[0], supplier)
    with reverts(market.UnknownOffer, offerId=5):
        mkit.withdraw_offer(5, supplier)
    with reverts(market.NotDeviceOwner, deviceId=suppliers[0].id, caller=stranger.address):
        mkit.withdraw_offer(offer_id, stranger)
    mkit.withdraw_offer(offer_id, supplier)
    with reverts(market.OfferNotListed, offerId=offer_id):
        mkit.withdraw_offer(offer_id, supplier)


def test_withdraw_of_a_sold_devices_offer_is_the_new_owners(mkit, market, registry, suppliers, supplier, stranger):
    offer_id, _ = mkit.publish(suppliers[0], supplier)
    registry.transferFrom(supplier, stranger, suppliers[0].id, sender=supplier)
    with reverts(market.NotDeviceOwner, deviceId=suppliers[0].id, caller=supplier.address):
        mkit.withdraw_offer(offer_id, supplier)
    mkit.withdraw_offer(offer_id, stranger)
    assert market.marketOf(SERVICE).listed == 0


# =========================================================================== pruneOffers


def test_prune_removes_expired_offers(kit, mkit, market, suppliers, supplier, stranger):
    now = kit.now()
    short, _ = mkit.publish(suppliers[0], supplier, price=10, valid_until=now + 100)
    long_, _ = mkit.publish(suppliers[1], supplier, price=20, valid_until=now + DAY)
    kit.mine_at(now + 100)  # at validUntil the offer is still alive
    assert market.pruneOffers.call([short, long_]) == 0
    kit.mine_at(now + 101)
    assert market.pruneOffers.call([short, long_]) == 1
    receipt = market.pruneOffers([short, long_], sender=stranger)  # anyone
    log = assert_single_event(receipt, market.OfferPruned, offerId=short, serviceType=SERVICE, reason=P_EXPIRED)
    assert log is not None
    assert market.getOffer(short).units == 0
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == 0
    assert_lists(mkit, SERVICE, [long_], [long_])


@pytest.mark.parametrize("state", ["suspend", "decommission"])
def test_prune_removes_offers_of_suppliers_no_longer_active(mkit, market, registry, suppliers, supplier, stranger, state):
    a, _ = mkit.publish(suppliers[0], supplier, price=10)
    b, _ = mkit.publish(suppliers[1], supplier, price=10)
    getattr(registry, state)(suppliers[0].id, sender=supplier)
    receipt = market.pruneOffers([a, b], sender=stranger)
    assert_single_event(receipt, market.OfferPruned, offerId=a, serviceType=SERVICE, reason=P_NOT_ACTIVE)
    assert_lists(mkit, SERVICE, [b], [b])
    assert market.listedOfferOf(suppliers[0].id, SERVICE) == 0


def test_suspended_supplier_offer_not_yet_pruned_is_alive_again_on_resume(mkit, market, registry, suppliers, supplier, stranger):
    a, _ = mkit.publish(suppliers[0], supplier)
    registry.suspend(suppliers[0].id, sender=supplier)
    assert market.pruneOffers.call([a]) == 1
    registry.resume(suppliers[0].id, sender=supplier)
    assert market.pruneOffers.call([a]) == 0
    assert_no_event(market.pruneOffers([a], sender=stranger), market.OfferPruned)
    assert mkit.listed() == [a]


@pytest.mark.parametrize("resold_back", [False, True])
def test_prune_removes_offers_whose_supplier_changed_owner(mkit, market, registry, suppliers, supplier, stranger, resold_back):
    a, _ = mkit.publish(suppliers[0], supplier)
    registry.transferFrom(supplier, stranger, suppliers[0].id, sender=supplier)
    if resold_back:  # back with the publisher: still another epoch, the offer stays dead
        registry.transferFrom(stranger, supplier, suppliers[0].id, sender=stranger)
    receipt = market.pruneOffers([a], sender=stranger)
    assert_single_event(receipt, market.OfferPruned, offerId=a, reason=P_OWNER_CHANGED)
    assert_lists(mkit, SERVICE, [], [])


def test_prune_reports_expiry_before_other_reasons(kit, mkit, market, registry, suppliers, supplier, stranger):
    now = kit.now()
    a, _ = mkit.publish(suppliers[0], supplier, valid_until=now + 50)
    b, _ = mkit.publish(suppliers[1], supplier)
    registry.decommission(suppliers[0].id, sender=supplier)
    registry.suspend(suppliers[1].id, sender=supplier)
    registry.transferFrom(supplier, stranger, suppliers[1].id, sender=supplier)  # not active and sold
    kit.warp(100)
    receipt = market.pruneOffers([a, b], sender=stranger)
    pruned = [(log.offerId, log.reason) for log in event_logs(receipt, market.OfferPruned)]
    assert pruned == [(a, P_EXPIRED), (b, P_NOT_ACTIVE)]


def test_prune_skips_alive_unlisted_unknown_and_repeated_ids(mkit, market, registry, suppliers, supplier, stranger):
    sold, _ = mkit.publish(suppliers[0], supplier, price=10)
    alive, _ = mkit.publish(suppliers[1], supplier, price=20)
    withdrawn, _ = mkit.publish(suppliers[2], supplier, price=30)
    suspended, _ = mkit.publish(suppliers[3], supplier, service=OTHER_SERVICE)
    mkit.withdraw_offer(withdrawn, supplier)
    registry.suspend(suppliers[3].id, sender=supplier)
    registry.transferFrom(supplier, stranger, suppliers[0].id, sender=supplier)
    ids = [sold, alive, withdrawn, 999, 0, suspended, suspended, sold, 2**256 - 1]
    assert market.pruneOffers.call(ids) == 2
    receipt = market.pruneOffers(ids, sender=stranger)
    pruned = [(log.offerId, log.reason) for log in event_logs(receipt, market.OfferPruned)]
    assert pruned == [(sold, P_OWNER_CHANGED), (suspended, P_NOT_ACTIVE)]
    assert_lists(mkit, SERVICE, [alive], [alive])
    assert_lists(mkit, OTHER_SERVICE, [], [])
    assert market.pruneOffers.call([]) == 0


def test_prune_keeps_working_while_paused(kit, mkit, market, suppliers, supplier, admin, stranger):
    a, _ = mkit.publish(suppliers[0], supplier, valid_until=kit.now() + 10)
    market.pause(sender=admin)
    kit.warp(20)
    market.pruneOffers([a], sender=stranger)
    assert market.marketOf(SERVICE).listed == 0


# =========================================================================== listOffers


def test_list_offers_pages_through_each_order(mkit, market, suppliers, supplier):
    mkit.publish_many(suppliers, supplier, [50, 10, 40, 20, 30])
    assert market.listOffers(SERVICE, EARLIEST, 0, 2) == ([1, 2], 3)
    assert market.listOffers(SERVICE, EARLIEST, 3, 2) == ([3, 4], 5)
    assert market.listOffers(SERVICE, EARLIEST, 5, 2) == ([5], 0)
    assert market.listOffers(SERVICE, LATEST, 0, 3) == ([5, 4, 3], 2)
    assert market.listOffers(SERVICE, LATEST, 2, 3) == ([2, 1], 0)
    assert market.listOffers(SERVICE, LOWEST, 0, 4) == ([2, 4, 5, 3], 1)
    assert market.listOffers(SERVICE, LOWEST, 1, 4) == ([1], 0)
    assert market.listOffers(SERVICE, LOWEST, 0, 100) == ([2, 4, 5, 3, 1], 0)
    # A limit far above what is listed allocates only what is listed.
    assert market.listOffers(SERVICE, LOWEST, 0, 2**255) == ([2, 4, 5, 3, 1], 0)
    assert market.listOffers(SERVICE, LOWEST, 0, 0) == ([], 2)  # an empty page points at the start
    assert market.listOffers(OTHER_SERVICE, LOWEST, 0, 10) == ([], 0)
    # A page may start anywhere in the list.
    assert market.listOffers(SERVICE, LOWEST, 5, 10) == ([5, 3, 1], 0)


def test_list_offers_includes_dead_offers_not_yet_pruned(kit, mkit, market, registry, suppliers, supplier):
    a, _ = mkit.publish(suppliers[0], supplier, valid_until=kit.now() + 10)
    b, _ = mkit.publish(suppliers[1], supplier)
    registry.suspend(suppliers[1].id, sender=supplier)
    kit.mine_at(kit.now() + 20)
    assert mkit.listed(SERVICE, EARLIEST) == [a, b]


@pytest.mark.parametrize("kind", ["unknown", "withdrawn", "other_type", "above_uint40"])
def test_list_offers_rejects_a_bad_cursor(mkit, market, suppliers, supplier, kind):
    mkit.publish_many(suppliers, supplier, [10, 20])
    foreign, _ = mkit.publish(suppliers[0], supplier, service=OTHER_SERVICE)
    mkit.withdraw_offer(2, supplier)
    cursor = {"unknown": 9, "withdrawn": 2, "other_type": foreign, "above_uint40": 2**40 + 1}[kind]
    with reverts(market.OfferNotListed, offerId=cursor):
        market.listOffers(SERVICE, LOWEST, cursor, 5)


# =========================================================================== views of unknown ids


def test_views_of_unknown_ids_are_zero(market, stranger):
    offer = market.getOffer(42)
    assert (offer.deviceId, offer.units, offer.unitPrice, offer.validUntil) == (0, 0, 0, 0)
    request = market.getRequest(42)
    assert (request.demander, request.status, request.unitPrice, request.units) == (ZERO_ADDRESS, 0, 0, 0)
    assert market.creditOf(stranger) == 0
    assert market.listedOfferOf(42, SERVICE) == 0
    assert not market.hasDeclined(42, 42)
