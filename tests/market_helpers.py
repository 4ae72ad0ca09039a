"""Helpers of the ServiceMarket `ape test` suites: enums and constants, ``MarketKit``, which
publishes offers (owner's call or device-signed action), changes and withdraws them, declines
agreements, posts requests, signs attesters' Completion statements and reads the lists, and the
setups several suites start from (``make_agreement``, ``declined_request``).

Every signed message is built with thingledger_device.typed_data, the module the device client
uses, so the suites also check the client's encoding against the contract.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from contract_helpers import DAY, GWEI, ZERO_ADDRESS, Device, Kit, sign
from thingledger_device import typed_data

# IServiceMarket.MatchingPolicy
LATEST, LOWEST, EARLIEST = range(3)
POLICIES = (LATEST, LOWEST, EARLIEST)
# IServiceMarket.RequestStatus
R_NONE, R_OPEN, R_MATCHED, R_COMPLETED, R_REFUNDED, R_CANCELLED = range(6)
# IServiceMarket.PruneReason
P_EXPIRED, P_NOT_ACTIVE, P_OWNER_CHANGED = range(3)

MAX_MATCH_STEPS = 16
MAX_HINT_STEPS = 32
MAX_FEE_BPS = 1_000
MAX_OFFER_LIFETIME = 30 * DAY
# Session supplier devices (conftest ``suppliers``): enough for MAX_HINT_STEPS + 2 offers of one type.
SUPPLIER_POOL = MAX_HINT_STEPS + 4
MAX_UINT96 = 2**96 - 1
MAX_UINT40 = 2**40 - 1

SERVICE = keccak(text="thingledger/charging-kWh")
OTHER_SERVICE = keccak(text="thingledger/parking-hour")
PRICE = 1_000 * GWEI
EVIDENCE = keccak(text="meter reading 42.0 kWh")
NO_AUTH = (0, b"")
REENTRANT_CALL = keccak(text="ReentrancyGuardReentrantCall()")[:4]


def offer_terms(
    *,
    service: bytes = SERVICE,
    price: int = PRICE,
    units: int = 10,
    valid_until: int,
    uri: str = "ipfs://offer",
) -> tuple:
    """IServiceMarket.OfferTerms as a tuple."""
    return (service, price, units, valid_until, uri)


def publish_action(terms: tuple) -> bytes:
    return typed_data.publish_offer_action_hash(*terms)


class MarketKit:
    """Helpers bound to the session's ServiceMarket (``market``) and the Kit of the registry."""

    def __init__(self, kit: Kit, market):
        self.kit = kit
        self.market = market
        self.registry = kit.registry

    # ---- time
    def now(self) -> int:
        return self.kit.now()

    # ---- device authorization
    def auth(self, device: Device, action: bytes, **kwargs: Any) -> tuple[int, bytes]:
        """DeviceAuth(deadline, signature): ``device`` signs DeviceAction(action) with target the market.
        ``kwargs`` go to Kit.action_signature (key, nonce, deadline, registry, chain_id)."""
        target = kwargs.pop("target", self.market)
        return self.kit.action_signature(device, target, action, **kwargs)

    # ---- offers
    def terms(self, *, valid_until: int | None = None, valid_for: int = DAY, **kwargs: Any) -> tuple:
        if valid_until is None:
            valid_until = self.now() + valid_for
        return offer_terms(valid_until=valid_until, **kwargs)

    def price_hint(self, service: bytes, price: int) -> int:
        """The exact priceHint for ``price``, found with as many findPriceHint calls as needed."""
        hint, found = self.market.findPriceHint(service, price, 0, MAX_HINT_STEPS)
        while not found:
            hint, found = self.market.findPriceHint(service, price, hint, MAX_HINT_STEPS)
        return hint

    def publish(
        self,
        device: Device,
        sender,
        *,
        hint: int | None = None,
        signed: bool = False,
        auth: tuple | None = None,
        terms: tuple | None = None,
        **terms_kwargs: Any,
    ) -> tuple[int, Any]:
        """Publish an offer of ``device``; ``sender`` is the owner (owner's call) or any relayer
        (``signed=True``: the device signs PublishOffer).  Returns (offerId, receipt)."""
        terms = terms or self.terms(**terms_kwargs)
        if hint is None:
            hint = self.price_hint(terms[0], terms[1])
        if auth is None:
            auth = self.auth(device, publish_action(terms)) if signed else NO_AUTH
        receipt = self.market.publishOffer(device.id, terms, hint, auth, sender=sender)
        return self.market.lastOfferId(), receipt

    def publish_many(self, devices, sender, prices, **terms_kwargs: Any) -> list[int]:
        """One offer per price, the i-th by ``devices[i]`` (a device lists one offer per service type)."""
        assert len(devices) >= len(prices)
        return [self.publish(device, sender, price=p, **terms_kwargs)[0] for device, p in zip(devices, prices)]

    def update_price(self, offer_id: int, price: int, sender, *, hint: int | None = None, signed: bool = False, device: Device | None = None):
        if hint is None:
            hint = offer_id
        auth = NO_AUTH
        if signed:
            auth = self.auth(device, typed_data.update_offer_price_action_hash(offer_id, price))
        return self.market.updateOfferPrice(offer_id, price, hint, auth, sender=sender)

    def withdraw_offer(self, offer_id: int, sender, *, signed: bool = False, device: Device | None = None):
        auth = self.auth(device, typed_data.withdraw_offer_action_hash(offer_id)) if signed else NO_AUTH
        return self.market.withdrawOffer(offer_id, auth, sender=sender)

    def decline(self, request_id: int, sender, *, signed: bool = False, device: Device | None = None, round_: int | None = None):
        """Decline the request's agreement: the payee's call (``sender``), or ``device``'s signed action."""
        auth = NO_AUTH
        if signed:
            if round_ is None:
                round_ = self.market.getRequest(request_id).round
            auth = self.auth(device, typed_data.decline_agreement_action_hash(request_id, round_))
        return self.market.declineAgreement(request_id, auth, sender=sender)

    # ---- requests
    def request_terms(
        self,
        *,
        service: bytes = SERVICE,
        units: int = 1,
        max_price: int = PRICE,
        deadline: int | None = None,
        policy: int = LATEST,
        attester: str = ZERO_ADDRESS,
    ) -> tuple:
        if deadline is None:
            deadline = self.now() + DAY
        return (service, units, max_price, deadline, policy, attester)

    def post(self, demander, *, value: int | None = None, terms: tuple | None = None, **kwargs: Any) -> tuple[int, int, Any]:
        """Post a request with its exact deposit (unless ``value``).  Returns (requestId, offerId
        matched or 0, receipt)."""
        terms = terms or self.request_terms(**kwargs)
        if value is None:
            value = terms[1] * terms[2]
        receipt = self.market.postRequest(terms, sender=demander, value=value)
        request_id = self.market.lastRequestId()
        return request_id, self.market.getRequest(request_id).offerId, receipt

    # ---- completion statements
    def completion_signature(
        self,
        key: LocalAccount,
        request_id: int,
        evidence: bytes = EVIDENCE,
        *,
        offer_id: int | None = None,
        round_: int | None = None,
        chain_id: int | None = None,
        market=None,
    ) -> bytes:
        """``key``'s signature of Completion(request, offer, round, evidence) in the market's domain;
        offer and round default to the request's current agreement."""
        request = self.market.getRequest(request_id)
        message = typed_data.completion_message(
            chain_id if chain_id is not None else self.kit.chain_id,
            (market or self.market).address,
            request_id,
            request.offerId if offer_id is None else offer_id,
            request.round if round_ is None else round_,
            evidence,
        )
        return sign(key, message)

    # ---- reading the lists
    def listed(self, service: bytes = SERVICE, order: int = LOWEST, page: int = 7) -> list[int]:
        """Every listed offer id of ``service`` in ``order`` (through listOffers pages)."""
        ids, cursor = [], 0
        while True:
            page_ids, cursor = self.market.listOffers(service, order, cursor, page)
            ids.extend(page_ids)
            if cursor == 0:
                return ids

    def escrow_held(self) -> int:
        """The escrow of every Open or Matched request (unitPrice * units)."""
        total = 0
        for request_id in range(1, self.market.lastRequestId() + 1):
            request = self.market.getRequest(request_id)
            if request.status in (R_OPEN, R_MATCHED):
                total += request.unitPrice * request.units
        return total


def fresh_key() -> LocalAccount:
    return Account.create()


def make_agreement(
    mkit: MarketKit,
    supplier,
    buyer,
    device: Device,
    *,
    price: int = 7,
    units: int = 3,
    max_price: int = 10,
    offer_units: int = 10,
    **request_kwargs: Any,
) -> tuple[int, int]:
    """``device`` offers ``offer_units`` at ``price``; ``buyer`` asks ``units`` at most ``max_price``: matched.
    Returns (requestId, offerId)."""
    offer_id, _ = mkit.publish(device, supplier, price=price, units=offer_units)
    request_id, matched, _ = mkit.post(buyer, units=units, max_price=max_price, **request_kwargs)
    assert matched == offer_id
    return request_id, offer_id


def declined_request(mkit: MarketKit, supplier, buyer, device: Device, **agreement_kwargs: Any) -> int:
    """``make_agreement``, then the payee (``supplier``) declines: the request is Open again, its maximum now
    the declined price, and ``device`` is barred from it.  Returns the requestId."""
    request_id, _ = make_agreement(mkit, supplier, buyer, device, **agreement_kwargs)
    mkit.decline(request_id, supplier)
    assert mkit.market.hasDeclined(request_id, device.id)
    return request_id
