"""JSON-RPC access to one chain: retries with backoff on connection errors (or, for a process that backs off
per chain itself, failing fast when nothing answers), batched reads, the safe head (by depth or the node's
finalized block), chunked eth_getLogs, and calls and gas estimates against the latest block whose reverts are
decoded from the relay's ABI."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from .config import ChainConfig
from .errors import BridgeError, one_line
from .relay_abi import DecodedError, relay_abi


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: bytes | None) -> None:
        self.method = method
        self.code = code
        self.message = one_line(message)
        self.data = data
        super().__init__(f"{method}: {self.message}")


class RevertError(Exception):
    """A call or gas estimate reverted; `decoded` is the relay's custom error when it is known."""

    def __init__(self, data: bytes, decoded: DecodedError | None, description: str) -> None:
        self.data = data
        self.decoded = decoded
        self.description = description
        super().__init__(description)

    @property
    def name(self) -> str | None:
        return self.decoded.name if self.decoded else None


class ChainUnavailable(BridgeError):
    """The chain's RPC endpoint cannot be reached (after retries)."""


class ChainMisconfigured(BridgeError):
    """The endpoint answers for another chain id, or there is no contract at the configured relay address."""


# What `eth_sendRawTransaction` answers when the node already holds the very same transaction (geth, erigon,
# reth: "already known"; anvil: "transaction already imported"; parity/openethereum: "known transaction";
# besu: "TRANSACTION_ALREADY_KNOWN"; nethermind: "AlreadyKnown").
ALREADY_KNOWN = ("already known", "known transaction", "already imported", "already_known", "alreadyknown")

# Seconds to wait for a TCP connection to the node (the answer itself may take up to the Rpc's `timeout`).
CONNECT_TIMEOUT = 5.0


def is_already_known(message: str) -> bool:
    """Whether a node's refusal of a raw transaction says it holds that transaction already."""
    text = message.lower()
    return any(marker in text for marker in ALREADY_KNOWN)


def _no_connection(error: requests.RequestException) -> bool:
    """Whether the request never reached a node: the connection was refused or could not be made in time."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, (NewConnectionError, ConnectionRefusedError))


def _revert_data(error: dict[str, Any]) -> bytes | None:
    data = error.get("data")
    if isinstance(data, dict):
        data = data.get("data") or data.get("result")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def is_revert(error: RpcError) -> bool:
    """Whether an RPC error is an execution revert (as opposed to a node problem)."""
    text = error.message.lower()
    return error.code == 3 or "revert" in text or error.data is not None


class Rpc:
    """A minimal JSON-RPC 2.0 client over HTTP with a kept-alive session.

    Connection errors and HTTP 5xx/429 are retried with exponential backoff (0.1 s doubling, `retries` times);
    JSON-RPC errors are raised as RpcError at once.

    With `fail_fast`, a request that cannot reach the node at all (connection refused, no connection within
    CONNECT_TIMEOUT) or gets no answer within `timeout` raises ChainUnavailable at once, without retrying: for a
    caller that backs off per chain itself (the relayer), so that a dead chain costs its other chains
    milliseconds, not seconds of retries. A connection cut in the middle of a request and HTTP 5xx/429 are still
    retried."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        label: str | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.label = label or url
        self.fail_fast = fail_fast
        self.session = requests.Session()
        self._ids = itertools.count(1)

    def _post(self, body: Any) -> Any:
        delay = 0.1
        for attempt in range(self.retries + 1):
            try:
                response = self.session.post(
                    self.url, json=body, timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout)
                )
                if response.status_code == 429 or response.status_code >= 500:
                    raise requests.ConnectionError(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    raise ChainUnavailable(f"{self.label}: HTTP {response.status_code} from {self.url}")
                return response.json()
            except (requests.ConnectionError, requests.Timeout) as error:
                give_up = self.fail_fast and (isinstance(error, requests.Timeout) or _no_connection(error))
                if give_up or attempt == self.retries:
                    raise ChainUnavailable(f"{self.label}: cannot reach {self.url} ({one_line(error)[:160]})") from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            except ValueError:
                raise ChainUnavailable(f"{self.label}: {self.url} did not answer with JSON") from None
        raise AssertionError("unreachable")

    def call(self, method: str, params: list[Any]) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        return self._result(method, answer)

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Sends `calls` in one HTTP request; each item of the answer is a result or an RpcError."""
        if not calls:
            return []
        first = next(self._ids)
        for _ in range(len(calls) - 1):
            next(self._ids)
        body = [
            {"jsonrpc": "2.0", "id": first + index, "method": method, "params": params}
            for index, (method, params) in enumerate(calls)
        ]
        answer = self._post(body)
        if not isinstance(answer, list):
            # Some nodes refuse batches: fall back to one request per call.
            return [self._safe_call(method, params) for method, params in calls]
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        results: list[Any] = []
        for index, (method, _) in enumerate(calls):
            item = by_id.get(first + index)
            if item is None:
                results.append(RpcError(method, -1, "no answer in the batch", None))
                continue
            try:
                results.append(self._result(method, item))
            except RpcError as error:
                results.append(error)
        return results

    def _safe_call(self, method: str, params: list[Any]) -> Any:
        try:
            return self.call(method, params)
        except RpcError as error:
            return error

    @staticmethod
    def _result(method: str, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise RpcError(method, -1, "malformed answer", None)
        error = answer.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise RpcError(method, -1, str(error), None)
            raise RpcError(method, int(error.get("code", -1)), str(error.get("message", "")), _revert_data(error))
        return answer.get("result")


def to_hex(value: int) -> str:
    return hex(value)


def from_hex(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value, 16)


def hexbytes(value: bytes) -> str:
    return "0x" + value.hex()


def unhex(value: str) -> bytes:
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


@dataclass
class Fees:
    """Fee fields for a transaction: EIP-1559 when the chain has a base fee, else a legacy gas price."""

    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    gas_price: int | None = None

    def fields(self) -> dict[str, int]:
        if self.gas_price is not None:
            return {"gasPrice": self.gas_price}
        assert self.max_fee_per_gas is not None and self.max_priority_fee_per_gas is not None
        return {"maxFeePerGas": self.max_fee_per_gas, "maxPriorityFeePerGas": self.max_priority_fee_per_gas}


class ChainClient:
    """One configured chain: its RPC, its relay, its safe head."""

    def __init__(self, config: ChainConfig, rpc: Rpc | None = None, *, fail_fast: bool = False) -> None:
        self.config = config
        self.rpc = rpc or Rpc(config.rpc_url, label=f"chain {config.name} ({config.chain_id})", fail_fast=fail_fast)
        self.abi = relay_abi()

    @property
    def chain_id(self) -> int:
        return self.config.chain_id

    @property
    def relay(self) -> str:
        return self.config.relay

    @property
    def label(self) -> str:
        return self.rpc.label

    def check(self) -> None:
        """Refuses an endpoint serving another chain, or a relay address without code."""
        answered = from_hex(self.rpc.call("eth_chainId", []))
        if answered != self.chain_id:
            raise ChainMisconfigured(
                f"{self.label}: {self.config.rpc_url} serves chain id {answered}, not {self.chain_id}"
            )
        code = self.rpc.call("eth_getCode", [self.relay, "latest"])
        if not code or code == "0x":
            raise ChainMisconfigured(f"{self.label}: no contract at relay address {self.relay}")

    def head(self) -> int:
        return from_hex(self.rpc.call("eth_blockNumber", []))

    def safe_head(self) -> int:
        """The highest block whose logs may be used: `confirmations` below the head, or the finalized block.
        -1 when no block is safe yet."""
        if self.config.finality == "finalized":
            block = self.rpc.call("eth_getBlockByNumber", ["finalized", False])
            return -1 if not block else from_hex(block["number"])
        return self.head() - self.config.confirmations

    def get_logs(self, from_block: int, to_block: int, topics: list[Any]) -> list[dict[str, Any]]:
        """The relay's logs matching `topics` in [from_block, to_block], in chunks of at most max_block_range
        blocks (a chunk the node refuses is halved)."""
        logs: list[dict[str, Any]] = []
        start = from_block
        span = self.config.max_block_range
        while start <= to_block:
            end = min(start + span - 1, to_block)
            try:
                chunk = self.rpc.call(
                    "eth_getLogs",
                    [{"address": self.relay, "fromBlock": to_hex(start), "toBlock": to_hex(end), "topics": topics}],
                )
            except RpcError as error:
                if end > start:
                    span = max(1, (end - start + 1) // 2)
                    continue
                raise BridgeError(f"{self.label}: eth_getLogs failed for block {start}: {error.message}") from None
            logs.extend(chunk)
            start = end + 1
        return logs

    def block_hash(self, number: int) -> bytes | None:
        block = self.rpc.call("eth_getBlockByNumber", [to_hex(number), False])
        return unhex(block["hash"]) if block else None

    def receipts(self, tx_hashes: list[bytes]) -> list[dict[str, Any] | None]:
        """Receipts of `tx_hashes` in one batch (None for a transaction not mined)."""
        answers = self.rpc.batch([("eth_getTransactionReceipt", [hexbytes(h)]) for h in tx_hashes])
        results: list[dict[str, Any] | None] = []
        for answer in answers:
            if isinstance(answer, RpcError):
                raise BridgeError(f"{self.label}: eth_getTransactionReceipt failed: {answer.message}")
            results.append(answer)
        return results

    def _revert(self, error: RpcError) -> RevertError:
        data = error.data or b""
        decoded = self.abi.decode_error(data)
        description = self.abi.describe_revert(data) if data else f"reverted ({error.message})"
        return RevertError(data, decoded, description)

    def call_relay(self, function: str, *args: Any, block: str = "latest") -> tuple[Any, ...]:
        """Calls a view of the relay; a revert raises RevertError."""
        data = self.abi.encode(function, *args)
        try:
            result = self.rpc.call("eth_call", [{"to": self.relay, "data": hexbytes(data)}, block])
        except RpcError as error:
            if is_revert(error):
                raise self._revert(error) from None
            raise BridgeError(f"{self.label}: eth_call {function} failed: {error.message}") from None
        return self.abi.decode_output(function, unhex(result))

    def message_statuses(self, ids: list[bytes]) -> list[int]:
        """`messageStatus` of each id at the latest block, in one batch."""
        calls = [
            ("eth_call", [{"to": self.relay, "data": hexbytes(self.abi.encode("messageStatus", i))}, "latest"])
            for i in ids
        ]
        statuses = []
        for answer in self.rpc.batch(calls):
            if isinstance(answer, RpcError):
                raise BridgeError(f"{self.label}: messageStatus failed: {answer.message}")
            statuses.append(int(self.abi.decode_output("messageStatus", unhex(answer))[0]))
        return statuses

    def validator_set(self) -> tuple[list[str], int, int]:
        validators, threshold, epoch = self.call_relay("validatorSet")
        from eth_utils import to_checksum_address

        return [to_checksum_address(v) for v in validators], int(threshold), int(epoch)

    def estimate_gas(self, sender: str, data: bytes, block: str = "latest") -> int:
        """Gas estimate of calling the relay with `data` from `sender` on `block` (the latest block unless told:
        nodes estimate on their pending state by default, where transactions not mined yet, anyone's, have
        already run); a revert raises RevertError."""
        try:
            return from_hex(
                self.rpc.call("eth_estimateGas", [{"from": sender, "to": self.relay, "data": hexbytes(data)}, block])
            )
        except RpcError as error:
            if is_revert(error):
                raise self._revert(error) from None
            raise BridgeError(f"{self.label}: eth_estimateGas failed: {error.message}") from None

    def estimate_gas_many(self, sender: str, datas: list[bytes], block: str = "latest") -> list[int | RevertError]:
        """Gas estimates of several relay calls on `block` (see `estimate_gas`) in one batch; a reverting one is
        its RevertError."""
        answers = self.rpc.batch(
            [
                ("eth_estimateGas", [{"from": sender, "to": self.relay, "data": hexbytes(data)}, block])
                for data in datas
            ]
        )
        results: list[int | RevertError] = []
        for answer in answers:
            if isinstance(answer, RpcError):
                if not is_revert(answer):
                    raise BridgeError(f"{self.label}: eth_estimateGas failed: {answer.message}")
                results.append(self._revert(answer))
            else:
                results.append(from_hex(answer))
        return results

    def transaction_count(self, address: str, block: str = "pending") -> int:
        return from_hex(self.rpc.call("eth_getTransactionCount", [address, block]))

    def fees(self) -> Fees:
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        base = block.get("baseFeePerGas") if block else None
        if base is None:
            return Fees(gas_price=from_hex(self.rpc.call("eth_gasPrice", [])))
        try:
            tip = from_hex(self.rpc.call("eth_maxPriorityFeePerGas", []))
        except RpcError:
            tip = 1_000_000_000
        return Fees(max_fee_per_gas=2 * from_hex(base) + tip, max_priority_fee_per_gas=tip)

    def send_raw(self, raw: bytes) -> bytes:
        """Broadcasts a signed transaction; returns its hash. A node that already has it is not an error."""
        from eth_utils import keccak

        try:
            self.rpc.call("eth_sendRawTransaction", [hexbytes(raw)])
        except RpcError as error:
            if is_already_known(error.message):
                return keccak(raw)
            raise
        return keccak(raw)
