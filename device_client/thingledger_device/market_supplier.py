"""The supply side of ServiceMarket: a supplier device publishes, reprices and withdraws its offers and
declines agreements, each time by signing a DeviceAction (the registry's EIP-712 message with target
ServiceMarket, the struct hash of the call, the device's current nonce, a two-minute deadline). Anyone may
submit it: `payer` pays the gas, the device needs none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import DeviceClientError
from .market import ACTION_SIGNATURE_LIFETIME
from .market_events import device_label
from .market_values import check_timestamp
from .report import Report

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from .market import MarketClient


def publish_offer(
    market: MarketClient,
    device: LocalAccount,
    payer: LocalAccount,
    service_type: bytes,
    unit_price: int,
    units: int,
    valid_for: int | None,
    valid_until: int | None,
    metadata_uri: str,
    now: int,
) -> Report:
    """Publishes an offer with the device's signed PublishOffer action (replacing the device's listed offer
    of that service type, if any: one per device and type)."""
    from .challenge import describe_time
    from .typed_data import publish_offer_action_hash

    info = market.supplier(device.address)
    chain_now = max(now, market.chain.latest_timestamp())
    if valid_until is None:
        if valid_for is None:
            raise DeviceClientError("an offer needs --valid-for SECONDS or --valid-until TS")
        valid_until = chain_now + valid_for
    check_timestamp(valid_until, "valid until", chain_now)
    action = publish_offer_action_hash(service_type, unit_price, units, valid_until, metadata_uri)
    deadline = chain_now + ACTION_SIGNATURE_LIFETIME
    signature = market.sign_action(device, info, action, deadline)
    terms = (service_type, unit_price, units, valid_until, metadata_uri)
    what = "ServiceMarket.publishOffer"
    transaction, hint = market.send_priced_action(
        payer,
        lambda hint: market.contract.functions.publishOffer(info.device_id, terms, hint, (deadline, signature)),
        service_type,
        unit_price,
        what,
    )
    published = market.event(transaction, "OfferPublished", what)
    # A device has one listed offer per service type: publishing again replaces it.
    replaced = [event.args["offerId"] for event in market.events(transaction, "OfferWithdrawn")]
    return (
        Report(f"offer {published.args['offerId']} published")
        .add("offerId", "offer", published.args["offerId"])
        .add("serviceType", "service type", "0x" + service_type.hex())
        .add("deviceId", "device id", info.device_id, device_label(info.device_id))
        .add("unitPrice", "unit price", unit_price, f"{unit_price} wei")
        .add("units", "units", units)
        .add("validUntil", "valid until", valid_until, describe_time(valid_until))
        .add("metadataURI", "metadata", metadata_uri or None)
        .add("priceHint", "price hint", hint)
        .add("replacedOfferId", "replaced offer", replaced[0] if replaced else None)
        .add_transaction(transaction, payer.address)
    )


def update_offer_price(
    market: MarketClient, device: LocalAccount, payer: LocalAccount, offer_id: int, unit_price: int, now: int
) -> Report:
    """Changes a listed offer's unit price with the device's signed UpdateOfferPrice action."""
    from .typed_data import update_offer_price_action_hash

    info = market.supplier(device.address)
    offer = market.owned_listed_offer(offer_id, info)
    deadline = market.action_deadline(now)
    signature = market.sign_action(device, info, update_offer_price_action_hash(offer_id, unit_price), deadline)
    transaction, hint = market.send_priced_action(
        payer,
        lambda hint: market.contract.functions.updateOfferPrice(offer_id, unit_price, hint, (deadline, signature)),
        offer.service_type,
        unit_price,
        f"ServiceMarket.updateOfferPrice({offer_id})",
    )
    return (
        Report(f"offer {offer_id} repriced")
        .add("offerId", "offer", offer_id)
        .add("previousUnitPrice", "previous unit price", offer.unit_price, f"{offer.unit_price} wei")
        .add("unitPrice", "unit price", unit_price, f"{unit_price} wei")
        .add("priceHint", "price hint", hint)
        .add_transaction(transaction, payer.address)
    )


def withdraw_offer(market: MarketClient, device: LocalAccount, payer: LocalAccount, offer_id: int, now: int) -> Report:
    """Takes a listed offer out of the market with the device's signed WithdrawOffer action."""
    from .typed_data import withdraw_offer_action_hash

    info = market.supplier(device.address)
    offer = market.owned_listed_offer(offer_id, info)
    deadline = market.action_deadline(now)
    signature = market.sign_action(device, info, withdraw_offer_action_hash(offer_id), deadline)
    function = market.contract.functions.withdrawOffer(offer_id, (deadline, signature))
    transaction = market.send_action(payer, function, f"ServiceMarket.withdrawOffer({offer_id})")
    return (
        Report(f"offer {offer_id} withdrawn")
        .add("offerId", "offer", offer_id)
        .add("unitsWithdrawn", "units withdrawn", offer.units)
        .add_transaction(transaction, payer.address)
    )


def decline(market: MarketClient, device: LocalAccount, payer: LocalAccount, request_id: int, now: int) -> Report:
    """Declines the current agreement of a request with one of this device's offers (signed
    DeclineAgreement for the request's current round)."""
    from .typed_data import decline_agreement_action_hash

    info = market.supplier(device.address)
    request = market.request(request_id)
    if request.status != "Matched" or request.offer_id is None:
        raise DeviceClientError(f"request {request_id} is {request.status}, not Matched: no agreement to decline")
    offer = market.offer(request.offer_id)
    if offer.device_id != info.device_id:
        raise DeviceClientError(
            f"request {request_id} is matched with offer {offer.offer_id} of device "
            f"{device_label(offer.device_id)}, not of this device ({device_label(info.device_id)})"
        )
    deadline = market.action_deadline(now)
    action = decline_agreement_action_hash(request_id, request.round)
    signature = market.sign_action(device, info, action, deadline)
    function = market.contract.functions.declineAgreement(request_id, (deadline, signature))
    what = f"ServiceMarket.declineAgreement({request_id})"
    transaction = market.send_action(payer, function, what)
    market.event(transaction, "AgreementDeclined", what)
    # The declining offer leaves the market (if it was still listed); the device may publish again.
    withdrawn = bool(market.events(transaction, "OfferWithdrawn"))
    return (
        Report(f"request {request_id} declined")
        .add("requestId", "request", request_id)
        .add("offerId", "offer", offer.offer_id)
        .add("round", "round", request.round)
        .add("offerWithdrawn", "offer withdrawn", withdrawn)
        .add_transaction(transaction, payer.address)
    )
