"""Access to the chain through web3 (HTTP JSON-RPC): DeviceRegistry and SalesOrder (ServiceMarket lives in
market.py), retries with exponential backoff, and failures (unreachable node, reverts, rejected
transactions) turned into one-line errors.

web3 takes ~0.4 s to import, so only commands that talk to the chain import this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    BadFunctionCallOutput,
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    Web3Exception,
)

from .contracts import DEVICE_STATES, ORDER_STATUSES, REGISTRY, SALES_ORDER, decode_error, enum_name, load_abi
from .deployment import Deployment
from .errors import DeviceClientError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3.contract.contract import Contract, ContractFunction

T = TypeVar("T")

DEFAULT_RPC = "http://127.0.0.1:8545"
# Four attempts, 0.25 s + 0.5 s + 1 s apart, each allowed 1 s to connect: the node is declared
# unreachable within about five seconds.
RPC_ATTEMPTS = 4
RPC_FIRST_DELAY = 0.25
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 20.0
RECEIPT_TIMEOUT = 120.0


@dataclass(frozen=True)
class OrderInfo:
    """SalesOrder.getOrder, decoded."""

    order_id: int
    seller: str
    buyer: str
    price: int
    status: str
    pickup_deadline: int
    device_id: int
    make: str
    model: str
    year: int


@dataclass(frozen=True)
class DeviceInfo:
    """DeviceRegistry.getDevice, decoded."""

    device_id: int
    key: str
    state: str
    warranty_end: int
    nonce: int
    epoch: int


@dataclass(frozen=True)
class TransactionResult:
    """A mined, successful transaction (`logs`: its receipt's logs, as web3 returns them)."""

    tx_hash: str
    gas_used: int
    block_number: int
    logs: tuple[Any, ...] = ()


class Chain:
    """The deployment's contracts on the node at `rpc_url`."""

    def __init__(
        self,
        rpc_url: str,
        deployment: Deployment,
        *,
        attempts: int = RPC_ATTEMPTS,
        first_delay: float = RPC_FIRST_DELAY,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        if not rpc_url.startswith(("http://", "https://")):
            raise DeviceClientError(f"--rpc must be an http:// or https:// URL, got {rpc_url!r}")
        self.rpc_url = rpc_url
        self.deployment = deployment
        self.attempts = attempts
        self.first_delay = first_delay
        provider = HTTPProvider(
            rpc_url,
            request_kwargs={"timeout": (connect_timeout, READ_TIMEOUT)},
            exception_retry_configuration=None,  # retries are ours (see _rpc)
        )
        self.web3 = Web3(provider)
        self.registry: Contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(deployment.registry.address), abi=load_abi(REGISTRY)
        )
        self.sales_order: Contract = self.web3.eth.contract(
            address=Web3.to_checksum_address(deployment.sales_order.address), abi=load_abi(SALES_ORDER)
        )

    # ------------------------------------------------------------------ plumbing

    def _rpc(self, what: str, operation: Callable[[], T]) -> T:
        """Runs `operation`, retrying connection failures with exponential backoff."""
        delay = self.first_delay
        started = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt == self.attempts:
                    elapsed = time.monotonic() - started
                    raise DeviceClientError(
                        f"RPC {self.rpc_url} unreachable ({what}): gave up after {attempt} attempts "
                        f"in {elapsed:.1f} s ({type(error).__name__})"
                    ) from None
                time.sleep(delay)
                delay *= 2
            except ContractCustomError as error:
                decoded = decode_error(error.data if isinstance(error.data, str) else None)
                if decoded is None:
                    raise DeviceClientError(f"{what} reverted with unknown error data {error.data}") from None
                raise DeviceClientError(f"{what} reverted: {decoded}", reason=decoded.name) from None
            except ContractLogicError as error:
                raise DeviceClientError(f"{what} reverted: {error.message or error}") from None
            except BadFunctionCallOutput:
                raise DeviceClientError(
                    f"{what}: no contract answered at the deployment's address (is the deployment file for this node?)"
                ) from None
            except TimeExhausted as error:
                raise DeviceClientError(f"{what}: {error}") from None
            except Web3Exception as error:
                raise DeviceClientError(f"{what} failed: {_rpc_message(error)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def rpc(self, what: str, operation: Callable[[], T]) -> T:
        """Runs a web3 operation with the client's retries and one-line errors (see `_rpc`)."""
        return self._rpc(what, operation)

    def call(self, function: ContractFunction, what: str, block: int | None = None) -> Any:
        """eth_call of a contract function, at the latest block or at `block`."""
        if block is None:
            return self._rpc(what, lambda: function.call())
        return self._rpc(what, lambda: function.call(block_identifier=block))

    # ------------------------------------------------------------------ chain

    def chain_id(self) -> int:
        return int(self._rpc("eth_chainId", lambda: self.web3.eth.chain_id))

    def check_chain(self) -> None:
        """Refuses a node that serves another chain than the deployment's."""
        served = self.chain_id()
        if served != self.deployment.chain_id:
            raise DeviceClientError(
                f"wrong chain: deployment is for chain {self.deployment.chain_id}, RPC serves chain {served}"
            )

    def latest_timestamp(self) -> int:
        return self.block_timestamp("latest")

    def block_timestamp(self, block: int | str) -> int:
        return int(self._rpc("eth_getBlockByNumber", lambda: self.web3.eth.get_block(block))["timestamp"])

    # ------------------------------------------------------------------ SalesOrder

    def order(self, order_id: int) -> OrderInfo:
        """The order; an unknown order id is an error that says how many orders exist."""
        try:
            fields = self.call(self.sales_order.functions.getOrder(order_id), f"SalesOrder.getOrder({order_id})")
        except DeviceClientError as error:
            if error.reason != "UnknownOrder":
                raise
            last = int(self.call(self.sales_order.functions.lastOrderId(), "SalesOrder.lastOrderId()"))
            raise DeviceClientError(f"unknown order {order_id}: the last order id is {last}") from None
        seller, buyer, price, status, pickup_deadline, device_id, _item_type, make, model, year = fields
        return OrderInfo(
            order_id=order_id,
            seller=Web3.to_checksum_address(seller),
            buyer=Web3.to_checksum_address(buyer),
            price=int(price),
            status=enum_name(ORDER_STATUSES, status),
            pickup_deadline=int(pickup_deadline),
            device_id=int(device_id),
            make=str(make),
            model=str(model),
            year=int(year),
        )

    def block_number(self) -> int:
        return int(self._rpc("eth_blockNumber", lambda: self.web3.eth.block_number))

    def release_of(self, order_id: int, gate_id: int, buyer: str, from_block: int) -> TransactionResult | None:
        """The transaction, since `from_block`, in which SalesOrder released `order_id` at `gate_id` to `buyer`
        (its OrderReleased event), or None."""
        event = self.sales_order.events.OrderReleased
        logs = self._rpc(
            f"reading OrderReleased({order_id})",
            lambda: event.get_logs(
                from_block=from_block, argument_filters={"orderId": order_id, "gateId": gate_id, "buyer": buyer}
            ),
        )
        if not logs:
            return None
        tx_hash = logs[0]["transactionHash"]
        receipt = self._rpc("eth_getTransactionReceipt", lambda: self.web3.eth.get_transaction_receipt(tx_hash))
        return TransactionResult(
            tx_hash="0x" + bytes(tx_hash).hex(), gas_used=int(receipt["gasUsed"]), block_number=int(receipt["blockNumber"])
        )

    def verify_ownership(self, order_id: int, claimant: str) -> bool:
        function = self.sales_order.functions.verifyOwnership(order_id, claimant)
        return bool(self.call(function, f"SalesOrder.verifyOwnership({order_id}, {claimant})"))

    # ------------------------------------------------------------------ DeviceRegistry

    def device_id_of_key(self, key: str) -> int:
        return int(self.call(self.registry.functions.deviceIdOfKey(key), f"DeviceRegistry.deviceIdOfKey({key})"))

    def device(self, device_id: int, block: int | None = None) -> DeviceInfo:
        key, state, warranty_end, nonce, epoch = self.call(
            self.registry.functions.getDevice(device_id), f"DeviceRegistry.getDevice({device_id})", block
        )
        return DeviceInfo(
            device_id=device_id,
            key=Web3.to_checksum_address(key),
            state=enum_name(DEVICE_STATES, state),
            warranty_end=int(warranty_end),
            nonce=int(nonce),
            epoch=int(epoch),
        )

    def has_permission(self, device_id: int, who: str, permission: int) -> bool:
        function = self.registry.functions.hasPermission(device_id, who, permission)
        return bool(self.call(function, f"DeviceRegistry.hasPermission({device_id}, {who}, {permission})"))

    def owner_of(self, device_id: int) -> str:
        return str(self.call(self.registry.functions.ownerOf(device_id), f"DeviceRegistry.ownerOf({device_id})"))

    def warranty_active(self, device_id: int) -> bool:
        function = self.registry.functions.warrantyActive(device_id)
        return bool(self.call(function, f"DeviceRegistry.warrantyActive({device_id})"))

    # ------------------------------------------------------------------ transactions

    def transact(
        self,
        account: LocalAccount,
        function: ContractFunction,
        what: str,
        receipt_timeout: float = RECEIPT_TIMEOUT,
        value: int = 0,
    ) -> TransactionResult:
        """Estimates (a revert surfaces here, decoded), signs with `account`, sends (with `value` wei), waits
        for the receipt (at most `receipt_timeout` seconds)."""
        sender = account.address

        def build() -> Any:
            nonce = self.web3.eth.get_transaction_count(sender, "pending")
            return function.build_transaction(
                {"from": sender, "nonce": nonce, "chainId": self.deployment.chain_id, "value": value}
            )

        transaction = self._rpc(what, build)
        signed = account.sign_transaction(transaction)
        tx_hash = signed.hash

        def send() -> None:
            try:
                self.web3.eth.send_raw_transaction(signed.raw_transaction)
            except Web3Exception as error:
                if "already known" not in str(error):  # a retried send of the same transaction
                    raise

        self._rpc(f"sending {what}", send)
        receipt = self._rpc(
            f"waiting for {what} (0x{tx_hash.hex()})",
            lambda: self.web3.eth.wait_for_transaction_receipt(tx_hash, timeout=receipt_timeout, poll_latency=0.1),
        )
        if receipt["status"] != 1:
            raise DeviceClientError(f"{what} failed on chain: transaction 0x{tx_hash.hex()} reverted")
        return TransactionResult(
            tx_hash="0x" + tx_hash.hex(),
            gas_used=int(receipt["gasUsed"]),
            block_number=int(receipt["blockNumber"]),
            logs=tuple(receipt["logs"]),
        )


def connect(rpc_url: str, deployment: Deployment) -> Chain:
    """A Chain for the deployment, after checking the node serves the deployment's chain."""
    chain = Chain(rpc_url, deployment)
    chain.check_chain()
    return chain


def _rpc_message(error: Exception) -> str:
    """The node's message from a web3 error (web3 puts the JSON-RPC error object in args[0])."""
    first = error.args[0] if error.args else error
    if isinstance(first, dict) and "message" in first:
        return str(first["message"])
    message = getattr(error, "message", None)
    return str(message or first)
