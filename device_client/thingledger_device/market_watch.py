"""Following one service type's market as it changes: ServiceMarket's logs, delivered in chain order.

Offer events, RequestPosted and RequestMatched carry the service type as an indexed topic, so a topic
filter selects them; AgreementDeclined names only the offer, so it is kept when its offer is of the type
(each offer's type is read once and cached).

Logs come from node-side filters (eth_newFilter, polled with eth_getFilterChanges). A node without filters,
or one that forgets a filter, is read with eth_getLogs over block ranges instead, from the first block not
yet covered. When a filter is installed, the blocks from the start up to then are read with eth_getLogs, so
no block is missed; logs seen twice are delivered once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .market_events import OFFER_EVENTS, TYPED_EVENTS, MarketEvent, decode_log, event_topic

LOG_RANGE = 1_000  # blocks per eth_getLogs call (public nodes limit the range)


class LogSource(Protocol):
    """What a watch needs from the chain (MarketClient provides it)."""

    def block_number(self) -> int: ...

    def get_logs(self, from_block: int, to_block: int, topics: list[Any]) -> list[Any]: ...

    def new_filter(self, from_block: int, topics: list[Any]) -> str | None: ...

    def filter_changes(self, filter_id: str) -> list[Any] | None: ...

    def uninstall_filter(self, filter_id: str) -> None: ...

    def offer_service_type(self, offer_id: int) -> bytes: ...


def watch_topics(service_type: bytes) -> list[list[Any]]:
    """The topic filters of a watch: typed events of `service_type`, then the offer-named events."""
    typed: list[Any] = [["0x" + event_topic(name).hex() for name in TYPED_EVENTS], None, "0x" + service_type.hex()]
    by_offer: list[Any] = [["0x" + event_topic(name).hex() for name in OFFER_EVENTS]]
    return [typed, by_offer]


class MarketWatch:
    """The events of one service type from block `start_block` on."""

    def __init__(
        self,
        source: LogSource,
        service_type: bytes,
        start_block: int,
        poll_interval: float,
        *,
        use_filters: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.service_type = service_type
        self.poll_interval = poll_interval
        self.topics = watch_topics(service_type)
        # Every block below `cursor` has been read (by eth_getLogs, or by a filter polled after it was mined).
        self.cursor = start_block
        self.start_block = start_block
        self.use_filters = use_filters
        self.filters: list[str] = []
        self.mode = "none"
        self._sleep = sleep
        self._clock = clock
        self._seen: dict[tuple[str, int], int] = {}
        self._offer_types: dict[int, bytes] = {}
        self._caught_up = False

    # ------------------------------------------------------------------ the loop

    def events(self, timeout: float | None = None) -> Iterator[MarketEvent]:
        """The events as they arrive, until `timeout` seconds have passed (forever if None). Closing the
        iterator (a consumer's break) removes the node's filters."""
        deadline = None if timeout is None else self._clock() + timeout
        self._install_filters()
        try:
            while True:
                yield from self._poll()
                if deadline is not None:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return
                    self._sleep(min(self.poll_interval, remaining))
                else:
                    self._sleep(self.poll_interval)
        finally:
            self._uninstall_filters()

    def _install_filters(self) -> None:
        if not self.use_filters:
            self.mode = "logs"
            return
        # Some nodes (anvil) refuse a filter starting after their head; the blocks below the cursor a filter
        # may deliver are dropped in _select.
        from_block = min(self.cursor, self.source.block_number())
        for topics in self.topics:
            filter_id = self.source.new_filter(from_block, topics)
            if filter_id is None:
                self._uninstall_filters()
                self.mode = "logs"
                return
            self.filters.append(filter_id)
        self.mode = "filters"

    def _uninstall_filters(self) -> None:
        for filter_id in self.filters:
            self.source.uninstall_filter(filter_id)
        self.filters = []

    def _poll(self) -> list[MarketEvent]:
        head = self.source.block_number()
        logs: list[Any] = []
        if self.mode == "filters":
            for filter_id in self.filters:
                changes = self.source.filter_changes(filter_id)
                if changes is None:  # the node lost the filter: read ranges from the last covered block
                    self._uninstall_filters()
                    self.mode = "logs"
                    return self._poll()
                logs.extend(changes)
            if not self._caught_up:  # blocks mined before the filters existed
                logs.extend(self._range_logs(self.cursor, head))
                self._caught_up = True
            # The filters were polled after `head` was read: they delivered every block up to it.
            self.cursor = max(self.cursor, head + 1)
        elif head >= self.cursor:
            logs.extend(self._range_logs(self.cursor, head))
            self.cursor = head + 1
        return self._select(logs)

    def _range_logs(self, first: int, last: int) -> list[Any]:
        logs: list[Any] = []
        for start in range(first, last + 1, LOG_RANGE):
            end = min(start + LOG_RANGE - 1, last)
            for topics in self.topics:
                logs.extend(self.source.get_logs(start, end, topics))
        return logs

    # ------------------------------------------------------------------ selection

    def _select(self, logs: list[Any]) -> list[MarketEvent]:
        selected: list[MarketEvent] = []
        for log in logs:
            if _removed(log):
                continue
            event = decode_log(log)
            if event is None or event.block_number < self.start_block or event.key in self._seen:
                continue
            if not self._of_this_market(event):
                continue
            self._seen[event.key] = event.block_number
            selected.append(event)
        # No read will return logs of blocks below the cursor again.
        self._seen = {key: block for key, block in self._seen.items() if block >= self.cursor - 1}
        selected.sort(key=lambda event: (event.block_number, event.log_index))
        return selected

    def _of_this_market(self, event: MarketEvent) -> bool:
        if event.name in TYPED_EVENTS:
            return bytes(event.args["serviceType"]) == self.service_type
        if event.name in OFFER_EVENTS:
            offer_id = int(event.args["offerId"])
            if offer_id not in self._offer_types:
                self._offer_types[offer_id] = self.source.offer_service_type(offer_id)
            return self._offer_types[offer_id] == self.service_type
        return False


def _removed(log: Any) -> bool:
    """Whether the node withdrew the log (its block left the chain in a reorganisation)."""
    try:
        return bool(log["removed"])
    except (KeyError, TypeError):
        return False
