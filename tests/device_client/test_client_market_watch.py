"""`offers --watch` against a stand-in node: node-side filters with a catch-up for the blocks before them,
eth_getLogs ranges when filters are missing or lost, no block missed, no event twice, one market only."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from client_helpers import make_log
from eth_utils.crypto import keccak
from thingledger_device.market_watch import LOG_RANGE, MarketWatch

HVAC = keccak(b"hvac-repair")
WINDOWS = keccak(b"window-cleaning")
DEVICE = int("0x8B50F9712DB9403Bd9877497583046062A00cdE6", 16)


def _matches(topics: list[Any], log: dict[str, Any]) -> bool:
    for position, wanted in enumerate(topics):
        if wanted is None:
            continue
        options = wanted if isinstance(wanted, list) else [wanted]
        if position >= len(log["topics"]) or "0x" + log["topics"][position].hex() not in options:
            return False
    return True


@dataclass
class FakeNode:
    """A chain of ServiceMarket logs, with eth_getLogs and (optionally) filters; filters deliver only the
    blocks mined after they were installed, like geth and anvil."""

    head: int = 10
    supports_filters: bool = True
    # Some nodes also deliver the filter's fromBlock range on the first poll: the watch must drop what
    # precedes its start.
    filters_replay_from_block: bool = False
    logs: list[dict[str, Any]] = field(default_factory=list)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    offer_types: dict[int, bytes] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _tx: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- the chain

    def mine(self, *events: tuple[str, dict[str, Any]], removed: bool = False) -> int:
        """One block holding `events`."""
        self.head += 1
        for index, (name, values) in enumerate(events):
            log = make_log(name, values, block=self.head, index=index, tx_hash=next(self._tx).to_bytes(32, "big"))
            if removed:
                log["removed"] = True
            self.logs.append(log)
        return self.head

    def publish(self, offer_id: int, service_type: bytes = HVAC) -> int:
        self.offer_types[offer_id] = service_type
        values = {
            "offerId": offer_id, "serviceType": service_type, "deviceId": DEVICE, "unitPrice": 5, "units": 1,
            "validUntil": 2_000_000_000, "metadataURI": "",
        }  # fmt: skip
        return self.mine(("OfferPublished", values))

    def decline(self, request_id: int, offer_id: int) -> int:
        values = {"requestId": request_id, "offerId": offer_id, "deviceId": DEVICE, "round": 1}
        return self.mine(("AgreementDeclined", values))

    # ---- LogSource

    def block_number(self) -> int:
        return self.head

    def get_logs(self, from_block: int, to_block: int, topics: list[Any]) -> list[Any]:
        self.calls.append(("get_logs", from_block, to_block))
        assert to_block - from_block < LOG_RANGE
        return [log for log in self.logs if from_block <= log["blockNumber"] <= to_block and _matches(topics, log)]

    def new_filter(self, from_block: int, topics: list[Any]) -> str | None:
        self.calls.append(("new_filter", from_block))
        if not self.supports_filters:
            return None
        assert from_block <= self.head, "anvil refuses a filter starting after its head"
        filter_id = f"0x{next(self._ids):x}"
        seen = from_block - 1 if self.filters_replay_from_block else self.head
        self.filters[filter_id] = {"topics": topics, "seen": seen}
        return filter_id

    def filter_changes(self, filter_id: str) -> list[Any] | None:
        self.calls.append(("filter_changes", filter_id))
        installed = self.filters.get(filter_id)
        if installed is None:
            return None
        changes = [
            log
            for log in self.logs
            if installed["seen"] < log["blockNumber"] <= self.head and _matches(installed["topics"], log)
        ]
        installed["seen"] = self.head
        return changes

    def uninstall_filter(self, filter_id: str) -> None:
        self.calls.append(("uninstall_filter", filter_id))
        self.filters.pop(filter_id, None)

    def offer_service_type(self, offer_id: int) -> bytes:
        self.calls.append(("offer_service_type", offer_id))
        return self.offer_types[offer_id]


class Clock:
    """A fake clock; each sleep runs the next scripted step of the chain, then advances time."""

    def __init__(self, steps: list[Callable[[], Any]]) -> None:
        self.now = 0.0
        self.steps = list(steps)
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.steps:
            self.steps.pop(0)()
        self.now += seconds


def watch(node: FakeNode, start: int, steps: list[Callable[[], Any]], **options: Any) -> tuple[MarketWatch, Clock]:
    clock = Clock(steps)
    return MarketWatch(node, HVAC, start, 1.0, sleep=clock.sleep, clock=clock, **options), clock


def seen(events: Any) -> list[tuple[str, int, int]]:
    return [(event.name, event.block_number, int(event.args["offerId"])) for event in events]


@pytest.mark.parametrize("replay", [False, True])
def test_filters_with_a_catch_up_miss_nothing_and_repeat_nothing(replay: bool) -> None:
    node = FakeNode(filters_replay_from_block=replay)
    node.publish(1)  # block 11: before the watch's start
    start = node.head + 1
    first = node.publish(2)  # block 12: after the start but before the filters exist
    steps: list[Callable[[], Any]] = [
        lambda: node.publish(3),
        lambda: (node.publish(4, WINDOWS), node.decline(7, 4), node.decline(8, 3)),
        lambda: None,
    ]
    watcher, clock = watch(node, start, steps)
    events = list(watcher.events(timeout=3.5))
    assert watcher.mode == "filters"
    assert seen(events) == [("OfferPublished", first, 2), ("OfferPublished", 13, 3), ("AgreementDeclined", 16, 3)]
    # The offer of an AgreementDeclined is looked up once per offer, and only for those events.
    assert [call for call in node.calls if call[0] == "offer_service_type"] == [
        ("offer_service_type", 4),
        ("offer_service_type", 3),
    ]
    assert node.filters == {}  # uninstalled at the end
    assert clock.sleeps == [1.0, 1.0, 1.0, 0.5]


def test_without_filters_it_reads_block_ranges_from_the_start() -> None:
    node = FakeNode(supports_filters=False)
    start = node.head + 1
    steps: list[Callable[[], Any]] = [lambda: node.publish(1), lambda: None, lambda: node.publish(2)]
    watcher, _ = watch(node, start, steps)
    events = list(watcher.events(timeout=3.5))
    assert watcher.mode == "logs" and seen(events) == [("OfferPublished", 11, 1), ("OfferPublished", 12, 2)]
    ranges = [(call[1], call[2]) for call in node.calls if call[0] == "get_logs"]
    assert ranges == [(11, 11), (11, 11), (12, 12), (12, 12)]  # two topic sets per range, only new blocks


def test_a_lost_filter_falls_back_to_ranges_without_a_gap() -> None:
    node = FakeNode()
    start = node.head + 1
    steps: list[Callable[[], Any]] = [
        lambda: node.publish(1),
        lambda: (node.filters.clear(), node.publish(2)),  # the node restarted and forgot the filters
        lambda: node.publish(3),
    ]
    watcher, _ = watch(node, start, steps)
    events = list(watcher.events(timeout=3.5))
    assert watcher.mode == "logs"
    assert seen(events) == [("OfferPublished", 11, 1), ("OfferPublished", 12, 2), ("OfferPublished", 13, 3)]


def test_use_filters_false_reads_ranges() -> None:
    node = FakeNode()
    watcher, _ = watch(node, node.head + 1, [lambda: node.publish(1)], use_filters=False)
    assert seen(watcher.events(timeout=1.5)) == [("OfferPublished", 11, 1)]
    assert not [call for call in node.calls if call[0] == "new_filter"]


def test_a_long_way_behind_is_read_in_bounded_ranges() -> None:
    node = FakeNode(head=2_500, supports_filters=False)
    node.logs.append(make_log("OfferPublished", {
        "offerId": 1, "serviceType": HVAC, "deviceId": DEVICE, "unitPrice": 5, "units": 1,
        "validUntil": 2_000_000_000, "metadataURI": "",
    }, block=1_500))  # fmt: skip
    watcher, _ = watch(node, 1, [])
    events = watcher.events(timeout=0.5)
    assert seen(events) == [("OfferPublished", 1_500, 1)]
    ranges = sorted({(call[1], call[2]) for call in node.calls if call[0] == "get_logs"})
    assert ranges == [(1, 1_000), (1_001, 2_000), (2_001, 2_500)]


def test_removed_logs_are_not_reported() -> None:
    node = FakeNode(supports_filters=False)
    start = node.head + 1
    steps: list[Callable[[], Any]] = [
        lambda: node.mine(("OfferPriceUpdated", {"offerId": 1, "serviceType": HVAC, "unitPrice": 9}), removed=True)
    ]
    watcher, _ = watch(node, start, steps)
    assert list(watcher.events(timeout=1.5)) == []


def test_closing_the_iterator_uninstalls_the_filters() -> None:
    node = FakeNode()
    watcher, _ = watch(node, node.head + 1, [lambda: node.publish(1), lambda: node.publish(2)])
    events = watcher.events()  # no timeout: until the consumer stops
    assert seen([next(events)]) == [("OfferPublished", 11, 1)]
    assert len(node.filters) == 2
    events.close()
    assert node.filters == {}


def test_what_precedes_the_start_is_never_reported() -> None:
    # The start is after the node's head: the filter starts at the head (anvil refuses later blocks), and a
    # node that replays its fromBlock delivers block 11, which the listing before the watch already showed.
    node = FakeNode(filters_replay_from_block=True)
    node.publish(1)
    watcher, _ = watch(node, node.head + 1, [lambda: node.publish(2)])
    assert seen(watcher.events(timeout=1.5)) == [("OfferPublished", 12, 2)]
    assert ("new_filter", 11) in node.calls
