"""The market's chain logic against a stand-in chain: what the devices sign (DeviceAction over the right
action hash, nonce and target; the attester's Completion), the price hint loop, the checks made before
anything is sent, and what the commands report. (test_client_market_e2e.py runs it on the real contracts.)"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from client_helpers import DEPLOYER, REGISTRY, SALES_ORDER, SERVICE_MARKET, make_log
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st
from thingledger_device.chain import Chain, DeviceInfo, TransactionResult
from thingledger_device.contracts import load_abi
from thingledger_device.deployment import ContractLocation, Deployment
from thingledger_device.errors import DeviceClientError
from thingledger_device.market import ACTION_SIGNATURE_LIFETIME, MarketClient, walk_price_hint
from thingledger_device.market_demand import attestation, post_request, raise_max_unit_price, withdraw_credit
from thingledger_device.market_state import OfferInfo, offer_health, request_report
from thingledger_device.market_supplier import decline, publish_offer, update_offer_price, withdraw_offer
from thingledger_device.report import Report
from thingledger_device.typed_data import (
    completion_message,
    decline_agreement_action_hash,
    device_action_message,
    publish_offer_action_hash,
    update_offer_price_action_hash,
    withdraw_offer_action_hash,
)

NOW = 1_700_000_000
DEPLOYMENT = Deployment(
    31337,
    "local",
    DEPLOYER,
    ContractLocation(REGISTRY, 1),
    ContractLocation(SALES_ORDER, 2),
    ContractLocation(SERVICE_MARKET, 3),
)
DEVICE = Account.from_key("0x" + "d1" * 32)
OTHER_DEVICE = Account.from_key("0x" + "d2" * 32)
RELAYER = Account.from_key("0x" + "a1" * 32)
DEMANDER = Account.from_key("0x" + "de" * 32)
SENSOR = Account.from_key("0x" + "5e" * 32)
DEVICE_ID = int(DEVICE.address, 16)
OTHER_ID = int(OTHER_DEVICE.address, 16)
HVAC = keccak(b"hvac-repair")
OWNER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
ZERO = "0x" + "00" * 20


class Functions:
    """contract.functions: every function call becomes the tuple (name, *args)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: (name, *args)


@dataclass
class FakeChain:
    """Answers ServiceMarket's and DeviceRegistry's calls from a few stored offers and requests; records
    transactions, which emit the events the test scripts."""

    deployment: Deployment = DEPLOYMENT
    device_state: str = "Active"
    block_time: int = NOW - 30
    balance: int = 10**18
    offers: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    requests: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    prices: list[tuple[int, int]] = field(default_factory=list)  # (price, offer id), cheapest first
    emits: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)
    failures: list[DeviceClientError] = field(default_factory=list)
    sent: list[tuple[str, int, tuple[Any, ...]]] = field(default_factory=list)
    credits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.web3 = type("Web3", (), {"eth": type("Eth", (), {"get_balance": lambda _, address: self.balance})()})()

    # ---- Chain

    def rpc(self, what: str, operation: Any) -> Any:
        return operation()

    def call(self, function: tuple[Any, ...], what: str, block: int | None = None) -> Any:
        name, *args = function
        if name == "getOffer":
            return self.offers.get(args[0], (0, 0, 0, 0, 0, 0, 0, 0, 0, b"\x00" * 32))
        if name == "getRequest":
            empty = (ZERO, 0, 0, 0, 0, 0, ZERO, 0, ZERO, 0, 0, b"\x00" * 32)
            return self.requests.get(args[0], empty)
        if name == "lastRequestId":
            return len(self.requests)
        if name == "lastOfferId":
            return len(self.offers)
        if name == "findPriceHint":
            _type, price, _start, _steps = args
            return (max([offer for p, offer in self.prices if p <= price], default=0), True)
        if name == "creditOf":
            return self.credits.get(args[0], 0)
        raise AssertionError(f"unexpected call {name}")

    def device_id_of_key(self, key: str) -> int:
        return {DEVICE.address: DEVICE_ID, OTHER_DEVICE.address: OTHER_ID}.get(key, 0)

    def device(self, device_id: int, block: int | None = None) -> DeviceInfo:
        key = DEVICE.address if device_id == DEVICE_ID else OTHER_DEVICE.address
        return DeviceInfo(device_id, key, self.device_state, NOW + 10**6, 5, 1)

    def latest_timestamp(self) -> int:
        return self.block_time

    def transact(
        self, account: Any, function: tuple[Any, ...], what: str, receipt_timeout: float = 120.0, value: int = 0
    ) -> TransactionResult:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((account.address, value, function))
        if function[0] == "publishOffer" or function[0] == "updateOfferPrice" or function[0] == "declineAgreement":
            # A device action is valid for two minutes; the client waits until it can no longer be mined.
            assert receipt_timeout >= ACTION_SIGNATURE_LIFETIME
        logs = [make_log(name, values, block=12, index=index) for index, (name, values) in enumerate(self.emits.pop(0))]
        return TransactionResult("0x" + "ab" * 32, 90_000, 12, tuple(logs))


def market(chain: FakeChain) -> MarketClient:
    return MarketClient(cast(Chain, chain), contract=cast(Any, type("Contract", (), {"functions": Functions()})()))


def offer_tuple(device_id: int = DEVICE_ID, units: int = 5, price: int = 100, epoch: int = 1) -> tuple[Any, ...]:
    return (device_id, epoch, NOW + 3_600, units, price, 0, 0, 0, 0, HVAC)


def request_tuple(
    status: int = 2, offer_id: int = 1, attester: str = SENSOR.address, round_: int = 3
) -> tuple[Any, ...]:
    return (DEMANDER.address, 1, status, NOW + 600, round_, 0, attester, 100, OWNER, offer_id, 2, HVAC)


def signer_of(message: dict[str, Any], signature: bytes) -> str:
    return str(Account.recover_message(encode_typed_data(full_message=message), signature=signature))


def published(offer_id: int, price: int = 100, units: int = 5) -> tuple[str, dict[str, Any]]:
    return ("OfferPublished", {
        "offerId": offer_id, "serviceType": HVAC, "deviceId": DEVICE_ID, "unitPrice": price, "units": units,
        "validUntil": NOW + 3_600, "metadataURI": "ipfs://x",
    })  # fmt: skip


def test_the_shipped_abi_holds_what_the_client_calls() -> None:
    functions = {entry["name"]: entry for entry in load_abi("ServiceMarket") if entry["type"] == "function"}
    called = {
        "getOffer", "getRequest", "marketOf", "listOffers", "findPriceHint", "creditOf", "lastOfferId",
        "lastRequestId", "publishOffer", "updateOfferPrice", "withdrawOffer", "declineAgreement", "postRequest",
        "raiseMaxUnitPrice", "confirmCompletion", "completeWithAttestation", "cancelRequest", "refund",
        "matchRequest", "withdraw",
    }  # fmt: skip
    assert called <= set(functions)
    # The client unpacks these structs by position.
    assert [c["name"] for c in functions["getOffer"]["outputs"][0]["components"]] == [
        "deviceId", "epoch", "validUntil", "units", "unitPrice", "older", "newer", "cheaper", "dearer", "serviceType",
    ]  # fmt: skip
    assert [c["name"] for c in functions["getRequest"]["outputs"][0]["components"]] == [
        "demander", "policy", "status", "deadline", "round", "feeBps", "attester", "unitPrice", "payee", "offerId",
        "units", "serviceType",
    ]  # fmt: skip
    assert [c["name"] for c in functions["postRequest"]["inputs"][0]["components"]] == [
        "serviceType", "units", "maxUnitPrice", "deadline", "policy", "attester",
    ]  # fmt: skip
    assert functions["marketOf"]["outputs"][0]["components"][4]["name"] == "listed"


# --------------------------------------------------------------------------- price hint


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=60), st.integers(1, 50), st.integers(1, 5))
def test_the_hint_loop_finds_the_place_after_every_equal_price(prices: list[int], price: int, steps: int) -> None:
    ordered = sorted(prices)  # offer i + 1 has the i-th cheapest price

    def find(start: int) -> tuple[int, bool]:
        """findPriceHint from `start`, stepping over at most `steps` offers (prices only go up from 0)."""
        position = start
        for _ in range(steps):
            if position < len(ordered) and ordered[position] <= price:
                position += 1
            else:
                return position, True
        done = position >= len(ordered) or ordered[position] > price
        return position, done

    assert walk_price_hint(find, max_calls=100) == bisect.bisect_right(ordered, price)


def test_the_hint_loop_gives_up_clearly() -> None:
    with pytest.raises(DeviceClientError, match="made no progress from offer 0"):
        walk_price_hint(lambda start: (start, False))
    with pytest.raises(DeviceClientError, match="within 3 findPriceHint calls"):
        walk_price_hint(lambda start: (start + 1, False), max_calls=3)


# --------------------------------------------------------------------------- reading


def test_offer_health_follows_the_contracts_order() -> None:
    offer = OfferInfo(1, DEVICE_ID, 2, NOW, 5, 100, HVAC)
    assert offer_health(offer, "Active", 2, NOW) == "alive"
    assert offer_health(offer, "Active", 2, NOW + 1) == "expired"
    assert offer_health(offer, "Decommissioned", 3, NOW + 1) == "expired"
    assert offer_health(offer, "Suspended", 3, NOW) == "supplierNotActive"
    assert offer_health(offer, "Active", 3, NOW) == "supplierOwnerChanged"


def test_unknown_ids_say_how_many_exist() -> None:
    chain = FakeChain(offers={1: offer_tuple()}, requests={1: request_tuple()})
    with pytest.raises(DeviceClientError, match="unknown offer 9: the last offer id is 1"):
        market(chain).offer(9)
    with pytest.raises(DeviceClientError, match="unknown request 9: the last request id is 1"):
        market(chain).request(9)


def test_requests_are_decoded_with_names() -> None:
    request = market(FakeChain(requests={4: request_tuple()})).request(4)
    assert (request.status, request.policy, request.round, request.offer_id) == ("Matched", "LowestPrice", 3, 1)
    assert request.agreed and request.escrow == 200 and request.attester == SENSOR.address and request.payee == OWNER
    shown = request_report(request, DEMANDER.address, 7).to_json()
    assert shown["agreedUnitPrice"] == 100 and shown["maxUnitPrice"] is None and shown["credit"] == 7
    open_request = market(FakeChain(requests={4: request_tuple(status=1, offer_id=0, attester=ZERO)})).request(4)
    assert open_request.offer_id is None and open_request.attester is None and open_request.payee == OWNER
    shown = request_report(open_request, None, None).to_json()
    assert shown["maxUnitPrice"] == 100 and shown["agreedUnitPrice"] is None and shown["escrow"] == 200


def test_a_deployment_without_the_market_is_refused() -> None:
    old = Deployment(31337, "local", DEPLOYER, ContractLocation(REGISTRY, 1), ContractLocation(SALES_ORDER, 2))
    with pytest.raises(DeviceClientError, match="has no ServiceMarket contract"):
        MarketClient(cast(Chain, FakeChain(deployment=old)))


def test_reports_keep_their_field_order() -> None:
    report = (
        Report("t").add("a", "A", 1).add("c", "C", 3, "three").add("b", "B", 2, after="a").add("z", "Z", 0, after="q")
    )
    assert list(report.to_json()) == ["a", "b", "c", "z"]
    assert report.rows() == [("A", 1), ("B", 2), ("C", "three"), ("Z", 0)]


# --------------------------------------------------------------------------- supplier device


def test_publish_signs_the_offer_and_retries_an_outdated_hint() -> None:
    chain = FakeChain(prices=[(50, 1)], block_time=NOW + 500)  # the chain's clock is ahead: it decides
    chain.failures.append(DeviceClientError("reverted: BadPriceHint(hint=1)", reason="BadPriceHint"))
    chain.emits.append([("OfferWithdrawn", {"offerId": 1, "serviceType": HVAC, "deviceId": DEVICE_ID}), published(2)])
    report = publish_offer(market(chain), DEVICE, RELAYER, HVAC, 100, 5, 3_600, None, "ipfs://x", NOW)

    payer, value, (name, device_id, terms, hint, (deadline, signature)) = chain.sent[0]
    assert (payer, value, name, device_id, hint) == (RELAYER.address, 0, "publishOffer", DEVICE_ID, 1)
    assert terms == (HVAC, 100, 5, NOW + 500 + 3_600, "ipfs://x")
    assert deadline == NOW + 500 + ACTION_SIGNATURE_LIFETIME
    action = publish_offer_action_hash(HVAC, 100, 5, NOW + 500 + 3_600, "ipfs://x")
    message = device_action_message(31337, REGISTRY, DEVICE_ID, SERVICE_MARKET, action, 5, deadline)
    assert signer_of(message, signature) == DEVICE.address
    document = report.to_json()
    assert document["offerId"] == 2 and document["replacedOfferId"] == 1 and document["gasPaidBy"] == RELAYER.address
    assert document["validUntil"] == NOW + 500 + 3_600 and document["txHash"] == "0x" + "ab" * 32


def test_publish_gives_up_after_three_outdated_hints() -> None:
    chain = FakeChain()
    chain.failures.extend(
        DeviceClientError("reverted: PriceHintTooFar(hint=0)", reason="PriceHintTooFar") for _ in range(3)
    )
    with pytest.raises(DeviceClientError, match="PriceHintTooFar"):
        publish_offer(market(chain), DEVICE, DEVICE, HVAC, 100, 5, 3_600, None, "", NOW)
    other = FakeChain()
    other.failures.append(DeviceClientError("reverted: SupplierNotActive(deviceId=1)", reason="SupplierNotActive"))
    with pytest.raises(DeviceClientError, match="SupplierNotActive"):  # not a hint problem: no second try
        publish_offer(market(other), DEVICE, DEVICE, HVAC, 100, 5, 3_600, None, "", NOW)
    assert other.failures == [] and other.sent == []


@pytest.mark.parametrize(
    ("chain", "device", "valid_until", "message"),
    [
        (FakeChain(), DEMANDER, None, f"key {DEMANDER.address} is not a device of DeviceRegistry"),
        (FakeChain(device_state="Suspended"), DEVICE, None, "is Suspended, not Active: it cannot act in the market"),
        (FakeChain(), DEVICE, NOW - 30, r"valid until: \d+ is not in the future"),
    ],
)
def test_publish_refuses_before_signing(chain: FakeChain, device: Any, valid_until: int | None, message: str) -> None:
    valid_for = None if valid_until is not None else 60
    with pytest.raises(DeviceClientError, match=message):
        publish_offer(market(chain), device, device, HVAC, 1, 1, valid_for, valid_until, "", NOW)
    assert chain.sent == []


def test_update_and_withdraw_sign_their_actions() -> None:
    chain = FakeChain(offers={7: offer_tuple(price=100)}, prices=[(100, 7)])
    chain.emits.append([("OfferPriceUpdated", {"offerId": 7, "serviceType": HVAC, "unitPrice": 150})])
    report = update_offer_price(market(chain), DEVICE, DEVICE, 7, 150, NOW)
    _, _, (name, offer_id, price, hint, (deadline, signature)) = chain.sent[0]
    assert (name, offer_id, price, hint) == ("updateOfferPrice", 7, 150, 7)
    message = device_action_message(
        31337, REGISTRY, DEVICE_ID, SERVICE_MARKET, update_offer_price_action_hash(7, 150), 5, deadline
    )
    assert signer_of(message, signature) == DEVICE.address
    assert report.to_json()["previousUnitPrice"] == 100

    chain.emits.append([("OfferWithdrawn", {"offerId": 7, "serviceType": HVAC, "deviceId": DEVICE_ID})])
    assert withdraw_offer(market(chain), DEVICE, RELAYER, 7, NOW).to_json()["unitsWithdrawn"] == 5
    payer, _, (name, offer_id, (deadline, signature)) = chain.sent[1]
    message = device_action_message(
        31337, REGISTRY, DEVICE_ID, SERVICE_MARKET, withdraw_offer_action_hash(7), 5, deadline
    )
    assert (payer, name, offer_id) == (RELAYER.address, "withdrawOffer", 7) and signer_of(
        message, signature
    ) == DEVICE.address


def test_offers_of_another_device_or_unlisted_are_refused() -> None:
    chain = FakeChain(offers={7: offer_tuple(device_id=OTHER_ID), 8: offer_tuple(units=0)})
    with pytest.raises(
        DeviceClientError, match=f"offer 7 belongs to device {OTHER_DEVICE.address}, not to this device"
    ):
        withdraw_offer(market(chain), DEVICE, DEVICE, 7, NOW)
    with pytest.raises(DeviceClientError, match="offer 8 is not listed"):
        update_offer_price(market(chain), DEVICE, DEVICE, 8, 5, NOW)
    assert chain.sent == []


def test_decline_signs_the_current_round() -> None:
    chain = FakeChain(offers={1: offer_tuple()}, requests={4: request_tuple(round_=3)})
    chain.emits.append([
        ("AgreementDeclined", {"requestId": 4, "offerId": 1, "deviceId": DEVICE_ID, "round": 3}),
        ("OfferWithdrawn", {"offerId": 1, "serviceType": HVAC, "deviceId": DEVICE_ID}),
    ])  # fmt: skip
    report = decline(market(chain), DEVICE, DEVICE, 4, NOW).to_json()
    assert report["round"] == 3 and report["offerWithdrawn"] is True
    _, _, (name, request_id, (deadline, signature)) = chain.sent[0]
    action = decline_agreement_action_hash(4, 3)
    message = device_action_message(31337, REGISTRY, DEVICE_ID, SERVICE_MARKET, action, 5, deadline)
    assert (name, request_id) == ("declineAgreement", 4) and signer_of(message, signature) == DEVICE.address


@pytest.mark.parametrize(
    ("request_fields", "offer", "message"),
    [
        (request_tuple(status=1, offer_id=0), offer_tuple(), "request 4 is Open, not Matched: no agreement to decline"),
        (request_tuple(), offer_tuple(device_id=OTHER_ID), "request 4 is matched with offer 1 of device"),
    ],
)
def test_decline_refuses_what_is_not_this_devices_agreement(
    request_fields: tuple[Any, ...], offer: tuple[Any, ...], message: str
) -> None:
    chain = FakeChain(offers={1: offer}, requests={4: request_fields})
    with pytest.raises(DeviceClientError, match=message):
        decline(market(chain), DEVICE, DEVICE, 4, NOW)


# --------------------------------------------------------------------------- demander and attester


def test_a_request_sends_its_deposit_and_reports_the_match() -> None:
    chain = FakeChain(block_time=NOW + 100)
    chain.emits.append([
        ("RequestPosted", {
            "requestId": 4, "serviceType": HVAC, "demander": DEMANDER.address, "policy": 1, "units": 2,
            "maxUnitPrice": 150, "deadline": NOW + 700, "attester": SENSOR.address,
        }),
        ("RequestMatched", {
            "requestId": 4, "serviceType": HVAC, "deviceId": DEVICE_ID, "offerId": 1, "payee": OWNER,
            "unitPrice": 100, "round": 1, "refunded": 100, "unitsLeft": 3,
        }),
    ])  # fmt: skip
    report = post_request(market(chain), DEMANDER, HVAC, 2, 150, 1, 600, SENSOR.address, NOW)
    payer, value, (name, terms) = chain.sent[0]
    assert (payer, value, name) == (DEMANDER.address, 300, "postRequest")
    assert terms == (HVAC, 2, 150, NOW + 700, 1, SENSOR.address)
    document = report.to_json()
    assert report.title == "request 4 matched offer 1"
    assert document["status"] == "Matched" and document["agreedUnitPrice"] == 100 and document["refunded"] == 100
    assert document["policy"] == "LowestPrice" and document["deposit"] == 300 and document["payee"] == OWNER

    chain.emits.append([("RequestPosted", {
        "requestId": 5, "serviceType": HVAC, "demander": DEMANDER.address, "policy": 0, "units": 1,
        "maxUnitPrice": 1, "deadline": NOW + 700, "attester": ZERO,
    })])  # fmt: skip
    unmatched = post_request(market(chain), DEMANDER, HVAC, 1, 1, 0, 600, None, NOW)
    assert unmatched.title == "request 5 open, no offer yet"
    assert unmatched.to_json()["offerId"] is None and chain.sent[1][2][1][5] == ZERO


def test_a_request_beyond_the_balance_is_refused_before_sending() -> None:
    chain = FakeChain(balance=299)
    with pytest.raises(DeviceClientError, match="holds 299 wei but the deposit is 300 wei"):
        post_request(market(chain), DEMANDER, HVAC, 2, 150, 1, 600, None, NOW)
    assert chain.sent == []


def test_the_attester_signs_the_current_agreement() -> None:
    chain = FakeChain(requests={4: request_tuple(offer_id=1, round_=3)})
    evidence = b"\x11" * 32
    request, signature = attestation(market(chain), SENSOR, 4, evidence)
    assert signer_of(completion_message(31337, SERVICE_MARKET, 4, 1, 3, evidence), signature) == SENSOR.address
    assert request.round == 3
    with pytest.raises(
        DeviceClientError, match=f"key {DEMANDER.address} is not the attester of request 4: its attester is"
    ):
        attestation(market(chain), DEMANDER, 4, evidence)
    chain.requests[5] = request_tuple(attester=ZERO)
    with pytest.raises(DeviceClientError, match="it names no attester"):
        attestation(market(chain), SENSOR, 5, evidence)
    chain.requests[6] = request_tuple(status=3)
    with pytest.raises(DeviceClientError, match="request 6 is Completed, not Matched: no agreement to attest"):
        attestation(market(chain), SENSOR, 6, evidence)


def test_raising_the_maximum_sends_the_difference() -> None:
    chain = FakeChain(requests={4: request_tuple(status=1, offer_id=0)})  # max 100 for 2 units
    chain.emits.append([("RequestMaxRaised", {"requestId": 4, "maxUnitPrice": 130, "added": 60})])
    report = raise_max_unit_price(market(chain), DEMANDER, 4, 130).to_json()
    assert chain.sent[0][:2] == (DEMANDER.address, 60) and report["added"] == 60 and report["status"] == "Open"
    with pytest.raises(
        DeviceClientError, match="--max-unit-price: 100 wei does not raise request 4's maximum of 100 wei"
    ):
        raise_max_unit_price(market(FakeChain(requests={4: request_tuple(status=1, offer_id=0)})), DEMANDER, 4, 100)


def test_nothing_to_withdraw_is_said_before_sending() -> None:
    chain = FakeChain()
    with pytest.raises(DeviceClientError, match=f"{OWNER} has no market credit to withdraw"):
        withdraw_credit(market(chain), cast(Any, type("Account", (), {"address": OWNER})()))
    assert chain.sent == []
