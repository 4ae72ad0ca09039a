"""The deployment's ServiceMarket on a Chain: reading offers and requests, the price hint loop, the logs a
watch reads, and what every market transaction shares (sending, the events of its receipt, the supplier
device's signed DeviceAction). The actions themselves live in market_supplier.py and market_demand.py.

A supplier device acts through its signed DeviceAction (DeviceRegistry's EIP-712 message with target
ServiceMarket, the struct hash of the call as `action`, the device's current nonce and a two-minute
deadline): anyone may submit it, so the gas may come from another account.

Only commands that talk to the chain import this module (it needs web3 through chain.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .contracts import MATCHING_POLICIES, REQUEST_STATUSES, SERVICE_MARKET, enum_name, load_abi
from .errors import DeviceClientError
from .market_events import MarketEvent, device_label, events_named
from .market_state import ListedOffer, OfferInfo, RequestInfo, offer_health

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract.contract import Contract, ContractFunction

    from .chain import Chain, DeviceInfo, TransactionResult

# A device's signed action is valid for two minutes, enough for its transaction to be mined; the client
# waits for the receipt until the signature has expired (plus a margin), as the pickup does.
ACTION_SIGNATURE_LIFETIME = 120
ACTION_WAIT_MARGIN = 30
LIST_PAGE_SIZE = 50
# findPriceHint is a view: each call may walk far; the loop restarts from the hint it got until found.
HINT_STEPS_PER_CALL = 256
MAX_HINT_CALLS = 64
# A hint computed off chain can be outdated by the time the transaction is estimated (offers came or
# went): the client computes it again, with the same device signature (the hint is not part of it).
HINT_ATTEMPTS = 3
HINT_ERRORS = ("BadPriceHint", "PriceHintTooFar")


def walk_price_hint(find: Callable[[int], tuple[int, bool]], max_calls: int = MAX_HINT_CALLS) -> int:
    """The exact price hint: calls `find(start)` (findPriceHint from `start`) from 0, then again from the
    hint it returned, until the place is found."""
    start = 0
    for _ in range(max_calls):
        hint, found = find(start)
        if found:
            return hint
        if hint == start:
            raise DeviceClientError(f"findPriceHint made no progress from offer {start}: cannot place the price")
        start = hint
    raise DeviceClientError(f"could not place the price in the market within {max_calls} findPriceHint calls")


def _address_or_none(address: str) -> str | None:
    from eth_utils.address import to_checksum_address

    return None if int(address, 16) == 0 else str(to_checksum_address(address))


class MarketClient:
    """The deployment's ServiceMarket on a Chain."""

    def __init__(self, chain: Chain, contract: Contract | None = None) -> None:
        location = chain.deployment.require_service_market()
        self.chain = chain
        self.address = location.address
        self.contract: Contract = (
            contract
            if contract is not None
            else chain.web3.eth.contract(address=location.address, abi=load_abi(SERVICE_MARKET))
        )

    # ------------------------------------------------------------------ reading

    def _call(self, function: ContractFunction, what: str, block: int | None = None) -> Any:
        return self.chain.call(function, f"ServiceMarket.{what}", block)

    def last_offer_id(self) -> int:
        return int(self._call(self.contract.functions.lastOfferId(), "lastOfferId()"))

    def last_request_id(self) -> int:
        return int(self._call(self.contract.functions.lastRequestId(), "lastRequestId()"))

    def offer(self, offer_id: int, block: int | None = None) -> OfferInfo:
        """The offer; an unknown id is an error that says how many offers exist."""
        fields = self._call(self.contract.functions.getOffer(offer_id), f"getOffer({offer_id})", block)
        device_id, epoch, valid_until, units, unit_price, _older, _newer, _cheaper, _dearer, service_type = fields
        if int(device_id) == 0:
            raise DeviceClientError(f"unknown offer {offer_id}: the last offer id is {self.last_offer_id()}")
        return OfferInfo(
            offer_id=offer_id,
            device_id=int(device_id),
            epoch=int(epoch),
            valid_until=int(valid_until),
            units=int(units),
            unit_price=int(unit_price),
            service_type=bytes(service_type),
        )

    def request(self, request_id: int) -> RequestInfo:
        """The request; an unknown id is an error that says how many requests exist."""
        fields = self._call(self.contract.functions.getRequest(request_id), f"getRequest({request_id})")
        (demander, policy, status, deadline, round_, fee_bps, attester, unit_price, payee, offer_id, units,
         service_type) = fields  # fmt: skip
        if int(status) == 0:
            raise DeviceClientError(f"unknown request {request_id}: the last request id is {self.last_request_id()}")
        from eth_utils.address import to_checksum_address

        return RequestInfo(
            request_id=request_id,
            demander=str(to_checksum_address(demander)),
            policy=enum_name(MATCHING_POLICIES, policy),
            status=enum_name(REQUEST_STATUSES, status),
            deadline=int(deadline),
            round=int(round_),
            fee_bps=int(fee_bps),
            attester=_address_or_none(attester),
            unit_price=int(unit_price),
            payee=_address_or_none(payee),
            offer_id=int(offer_id) or None,
            units=int(units),
            service_type=bytes(service_type),
        )

    def listed_count(self, service_type: bytes, block: int | None = None) -> int:
        market = self._call(self.contract.functions.marketOf(service_type), "marketOf(...)", block)
        return int(market[4])

    def offer_ids(self, service_type: bytes, policy: int, limit: int, block: int | None = None) -> list[int]:
        """Up to `limit` listed offer ids of a service type in the order policy `policy` walks them."""
        ids: list[int] = []
        cursor = 0
        while len(ids) < limit:
            page = min(LIST_PAGE_SIZE, limit - len(ids))
            function = self.contract.functions.listOffers(service_type, policy, cursor, page)
            found, cursor = self._call(function, f"listOffers(..., cursor {cursor})", block)
            ids.extend(int(offer_id) for offer_id in found)
            if int(cursor) == 0 or not found:
                break
        return ids

    def listing(self, service_type: bytes, policy: int, limit: int, block: int) -> list[ListedOffer]:
        """The listed offers (as `offer_ids`) with their health, all read at `block`."""
        now = self.chain.block_timestamp(block)
        devices: dict[int, DeviceInfo] = {}
        listed: list[ListedOffer] = []
        for offer_id in self.offer_ids(service_type, policy, limit, block):
            offer = self.offer(offer_id, block)
            device = devices.get(offer.device_id)
            if device is None:
                device = devices[offer.device_id] = self.chain.device(offer.device_id, block)
            listed.append(ListedOffer(offer, device.key, offer_health(offer, device.state, device.epoch, now)))
        return listed

    def credit_of(self, account: str) -> int:
        return int(self._call(self.contract.functions.creditOf(account), f"creditOf({account})"))

    def find_price_hint(self, service_type: bytes, unit_price: int) -> int:
        """The offer after which `unit_price` belongs in the price list (0: the cheapest end)."""

        def find(start: int) -> tuple[int, bool]:
            function = self.contract.functions.findPriceHint(service_type, unit_price, start, HINT_STEPS_PER_CALL)
            hint, found = self._call(function, f"findPriceHint(..., {unit_price}, {start})")
            return int(hint), bool(found)

        return walk_price_hint(find)

    def offer_service_type(self, offer_id: int) -> bytes:
        """The service type of any offer ever published (listed or not)."""
        return self.offer(offer_id).service_type

    # ------------------------------------------------------------------ logs (for market_watch)

    def _log_filter(self, topics: list[Any], from_block: int, to_block: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"address": self.address, "fromBlock": from_block, "topics": topics}
        if to_block is not None:
            params["toBlock"] = to_block
        return params

    def block_number(self) -> int:
        return self.chain.block_number()

    def get_logs(self, from_block: int, to_block: int, topics: list[Any]) -> list[Any]:
        web3 = self.chain.web3
        return list(
            self.chain.rpc(
                f"eth_getLogs (blocks {from_block} to {to_block})",
                lambda: web3.eth.get_logs(self._log_filter(topics, from_block, to_block)),  # type: ignore[arg-type]
            )
        )

    def new_filter(self, from_block: int, topics: list[Any]) -> str | None:
        """A log filter's id on the node, or None when the node does not offer filters."""
        from web3.exceptions import Web3Exception

        web3 = self.chain.web3

        def create() -> str | None:
            try:
                return str(web3.eth.filter(self._log_filter(topics, from_block)).filter_id)  # type: ignore[arg-type]
            except (Web3Exception, ValueError):  # not connection trouble (that is retried): no filters here
                return None

        return self.chain.rpc("eth_newFilter", create)

    def filter_changes(self, filter_id: str) -> list[Any] | None:
        """The logs a filter collected since the last poll, or None when the node lost (or refuses) it."""
        from web3.exceptions import Web3Exception

        web3 = self.chain.web3

        def changes() -> list[Any] | None:
            try:
                return list(web3.eth.get_filter_changes(filter_id))  # type: ignore[arg-type]
            except (Web3Exception, ValueError):
                return None

        return self.chain.rpc("eth_getFilterChanges", changes)

    def uninstall_filter(self, filter_id: str) -> None:
        # Best effort: the node forgets idle filters anyway.
        with contextlib.suppress(Exception):
            self.chain.web3.eth.uninstall_filter(filter_id)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ supplier device

    def supplier(self, device_address: str) -> DeviceInfo:
        """The registry entry of the device holding `device_address`; it must be Active to act."""
        device_id = self.chain.device_id_of_key(device_address)
        if device_id == 0:
            raise DeviceClientError(
                f"key {device_address} is not a device of DeviceRegistry {self.chain.deployment.registry.address} "
                "(provision and activate it first)"
            )
        device = self.chain.device(device_id)
        if device.state != "Active":
            raise DeviceClientError(
                f"device {device_label(device_id)} is {device.state}, not Active: it cannot act in the market"
            )
        return device

    def sign_action(self, device: LocalAccount, info: DeviceInfo, action: bytes, deadline: int) -> bytes:
        """The device's DeviceAction signature letting ServiceMarket carry out `action` once."""
        from .typed_data import device_action_message

        deployment = self.chain.deployment
        message = device_action_message(
            deployment.chain_id, deployment.registry.address, info.device_id, self.address, action, info.nonce, deadline
        )
        return bytes(device.sign_typed_data(full_message=message).signature)

    def action_deadline(self, now: int) -> int:
        """The deadline of a device action signed now: two minutes of the chain's clock (an idle chain's
        latest block may be old, a local clock may be behind: the later of the two)."""
        return max(now, self.chain.latest_timestamp()) + ACTION_SIGNATURE_LIFETIME

    def send_action(self, payer: LocalAccount, function: ContractFunction, what: str) -> TransactionResult:
        """Sends a call carrying a device's signature, waiting until the signature can no longer be mined."""
        return self.chain.transact(
            payer, function, what, receipt_timeout=ACTION_SIGNATURE_LIFETIME + ACTION_WAIT_MARGIN
        )

    def send_priced_action(
        self,
        payer: LocalAccount,
        build: Callable[[int], ContractFunction],
        service_type: bytes,
        unit_price: int,
        what: str,
    ) -> tuple[TransactionResult, int]:
        """Sends a call that places a price (`build(hint)`), with a fresh hint if the last one went stale
        before the transaction was estimated; returns the transaction and the hint it used."""
        attempt = 1
        while True:
            hint = self.find_price_hint(service_type, unit_price)
            try:
                return self.send_action(payer, build(hint), what), hint
            except DeviceClientError as error:
                if error.reason not in HINT_ERRORS or attempt == HINT_ATTEMPTS:
                    raise
            attempt += 1

    def owned_listed_offer(self, offer_id: int, info: DeviceInfo) -> OfferInfo:
        """The offer, which must be this device's and listed."""
        offer = self.offer(offer_id)
        if offer.device_id != info.device_id:
            raise DeviceClientError(
                f"offer {offer_id} belongs to device {device_label(offer.device_id)}, "
                f"not to this device ({device_label(info.device_id)})"
            )
        if not offer.listed:
            raise DeviceClientError(f"offer {offer_id} is not listed (sold out, withdrawn or pruned)")
        return offer

    # ------------------------------------------------------------------ transactions

    def transact(
        self, account: LocalAccount, function: ContractFunction, what: str, value: int = 0
    ) -> TransactionResult:
        """Sends a call of `account` (with `value` wei)."""
        return self.chain.transact(account, function, what, value=value)

    def events(self, transaction: TransactionResult, name: str) -> list[MarketEvent]:
        """The events `name` ServiceMarket emitted in a transaction."""
        return events_named(transaction.logs, name, self.address)

    def event(self, transaction: TransactionResult, name: str, what: str) -> MarketEvent:
        """The one event `name` ServiceMarket emitted in a transaction."""
        found = self.events(transaction, name)
        if len(found) != 1:
            raise DeviceClientError(f"{what} was mined but its receipt has {len(found)} {name} events, expected one")
        return found[0]
