"""Decoding ServiceMarket's logs against the shipped ABI (enum values named, addresses checksummed), and
how events are shown to people and machines."""

from __future__ import annotations

from typing import Any

import pytest
from client_helpers import SERVICE_MARKET, abi_event, make_log
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st
from thingledger_device.contracts import decode_error
from thingledger_device.market_events import (
    OFFER_EVENTS,
    TYPED_EVENTS,
    MarketEvent,
    decode_log,
    device_label,
    event_topic,
    events_named,
)

SERVICE_TYPE = keccak(b"hvac-repair")
DEMANDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
DEVICE = "0x8B50F9712DB9403Bd9877497583046062A00cdE6"
TX = b"\x77" * 32  # make_log's default transaction hash


PUBLISHED = {
    "offerId": 3,
    "serviceType": SERVICE_TYPE,
    "deviceId": int(DEVICE, 16),
    "unitPrice": 2 * 10**9,
    "units": 5,
    "validUntil": 1_800_000_000,
    "metadataURI": "ipfs://offer",
}
POSTED = {
    "requestId": 9,
    "serviceType": SERVICE_TYPE,
    "demander": DEMANDER.lower(),
    "policy": 1,
    "units": 2,
    "maxUnitPrice": 5 * 10**9,
    "deadline": 1_800_000_000,
    "attester": "0x" + "00" * 20,
}
MATCHED = {
    "requestId": 9,
    "serviceType": SERVICE_TYPE,
    "deviceId": int(DEVICE, 16),
    "offerId": 3,
    "payee": DEMANDER,
    "unitPrice": 2 * 10**9,
    "round": 1,
    "refunded": 6 * 10**9,
    "unitsLeft": 3,
}


def test_the_watched_events_carry_what_the_watch_filters_on() -> None:
    for name in TYPED_EVENTS:  # the service type is the second indexed argument: topic 2
        indexed = [spec["name"] for spec in abi_event(name)["inputs"] if spec["indexed"]]
        assert indexed[1] == "serviceType", name
    for name in OFFER_EVENTS:
        assert "offerId" in [spec["name"] for spec in abi_event(name)["inputs"] if spec["indexed"]]


@pytest.mark.parametrize("hex_strings", [False, True])
def test_decodes_a_published_offer(hex_strings: bool) -> None:
    event = decode_log(make_log("OfferPublished", PUBLISHED, block=12, index=4, hex_strings=hex_strings))
    assert event is not None and event.name == "OfferPublished"
    assert event.args == PUBLISHED and (event.block_number, event.log_index) == (12, 4)
    assert event.tx_hash == "0x" + TX.hex() and event.key == ("0x" + TX.hex(), 4)
    document = event.to_json()
    assert document == {
        "event": "OfferPublished",
        **PUBLISHED,
        "serviceType": "0x" + SERVICE_TYPE.hex(),
        "blockNumber": 12,
        "logIndex": 4,
        "transactionHash": "0x" + TX.hex(),
    }
    assert list(document)[:4] == ["event", "offerId", "serviceType", "deviceId"]  # declaration order


def test_enum_values_are_named_and_addresses_checksummed() -> None:
    posted = decode_log(make_log("RequestPosted", POSTED))
    assert posted is not None and posted.args["policy"] == "LowestPrice" and posted.args["demander"] == DEMANDER
    pruned = decode_log(make_log("OfferPruned", {"offerId": 3, "serviceType": SERVICE_TYPE, "reason": 2}))
    assert pruned is not None and pruned.args["reason"] == "SupplierOwnerChanged"
    unknown = decode_log(make_log("OfferPruned", {"offerId": 3, "serviceType": SERVICE_TYPE, "reason": 9}))
    assert unknown is not None and unknown.args["reason"] == "unknown(9)"


def test_logs_of_other_events_or_malformed_are_not_market_events() -> None:
    assert decode_log({**make_log("OfferPublished", PUBLISHED), "topics": [keccak(b"Transfer()")]}) is None
    assert decode_log({**make_log("OfferPublished", PUBLISHED), "topics": []}) is None
    short = make_log("OfferPublished", PUBLISHED)
    short["topics"] = short["topics"][:2]
    assert decode_log(short) is None
    assert decode_log({**make_log("OfferPublished", PUBLISHED), "data": b"\x01"}) is None
    assert decode_log({"topics": [event_topic("OfferPublished")]}) is None
    assert decode_log("not a log") is None


@given(st.binary(max_size=200), st.lists(st.binary(min_size=32, max_size=32), max_size=4))
def test_arbitrary_logs_decode_or_give_none(data: bytes, topics: list[bytes]) -> None:
    for first in (event_topic("OfferPublished"), event_topic("RequestMatched")):
        log = {"topics": [first, *topics], "data": data, "blockNumber": 1, "logIndex": 0, "transactionHash": TX}
        event = decode_log(log)
        assert event is None or isinstance(event, MarketEvent)


def test_events_named_keeps_the_contracts_events_of_that_name() -> None:
    logs = [
        make_log("RequestPosted", POSTED, index=0),
        make_log("RequestMatched", MATCHED, index=1),
        {**make_log("RequestMatched", MATCHED, index=2), "address": DEMANDER},  # another contract
    ]
    found = events_named(logs, "RequestMatched", SERVICE_MARKET.lower())
    assert [event.log_index for event in found] == [1]
    assert found[0].args["offerId"] == 3 and found[0].args["payee"] == DEMANDER
    assert events_named(logs, "OfferPublished", SERVICE_MARKET) == []


@pytest.mark.parametrize(
    ("name", "values", "fragment"),
    [
        ("OfferPublished", PUBLISHED, f"offer 3 by device {DEVICE}: 5 units at 2000000000 wei, valid until 2027-01-15"),
        ("OfferPriceUpdated", {"offerId": 3, "serviceType": SERVICE_TYPE, "unitPrice": 7}, "offer 3 now at 7 wei"),
        (
            "OfferWithdrawn",
            {"offerId": 3, "serviceType": SERVICE_TYPE, "deviceId": int(DEVICE, 16)},
            f"offer 3 of device {DEVICE} left the market",
        ),
        ("OfferPruned", {"offerId": 3, "serviceType": SERVICE_TYPE, "reason": 0}, "offer 3 pruned (Expired)"),
        ("RequestPosted", POSTED, f"request 9 by {DEMANDER}: 2 units at most 5000000000 wei, LowestPrice"),
        ("RequestMatched", MATCHED, "request 9 matched offer 3 at 2000000000 wei (round 1, 3 units left"),
        (
            "AgreementDeclined",
            {"requestId": 9, "offerId": 3, "deviceId": int(DEVICE, 16), "round": 1},
            "offer 3 declined request 9 (round 1)",
        ),
    ],
)
def test_people_see_one_line_per_event(name: str, values: dict[str, Any], fragment: str) -> None:
    event = decode_log(make_log(name, values, block=12))
    assert event is not None
    line = event.describe()
    assert line.startswith(f"[dim]block 12[/dim] [bold cyan]{name}[/bold cyan] ") and fragment in line
    assert "\n" not in line


def test_an_event_of_another_abi_version_is_still_shown() -> None:
    event = MarketEvent("RequestMatched", {"requestId": 1}, 3, 0, "0x" + TX.hex())
    assert "requestId=1" in event.describe()


def test_device_ids_are_shown_as_the_address_they_derive_from() -> None:
    assert device_label(int(DEVICE, 16)) == DEVICE
    assert device_label(2**160) == str(2**160) and device_label(0) == "0"


def test_service_market_errors_are_decoded_by_name_with_enum_names() -> None:
    def selector(signature: str) -> bytes:
        return keccak(text=signature)[:4]

    status = selector("WrongRequestStatus(uint256,uint8)") + encode(["uint256", "uint8"], [4, 2])
    assert str(decode_error(status)) == "WrongRequestStatus(requestId=4, status=Matched)"
    deposit = selector("WrongDeposit(uint256,uint256)") + encode(["uint256", "uint256"], [10, 9])
    assert str(decode_error(deposit)) == "WrongDeposit(expected=10, received=9)"
    unknown = selector("UnknownRequest(uint256)") + encode(["uint256"], [999])
    decoded = decode_error("0x" + unknown.hex())
    assert decoded is not None and decoded.name == "UnknownRequest" and str(decoded) == "UnknownRequest(requestId=999)"
    # Shared by DeviceRegistry and ServiceMarket: one selector, one decoding.
    owner = selector("NotDeviceOwner(uint256,address)") + encode(["uint256", "address"], [5, DEMANDER])
    assert str(decode_error(owner)) == f"NotDeviceOwner(deviceId=5, caller={DEMANDER})"
