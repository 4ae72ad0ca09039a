"""The relayer in process (`Relayer`, one pass or one check at a time, with an injectable clock) on the
session's anvil chains, each test on its own relay pair. Where a race has to happen at one exact point, the
chain is steered at that point (automine off, a block mined right after the relayer read its account's nonce,
a pending transaction dropped from the mempool); everything the relayer sees is still a real node's answer.

Covered: gas estimates run on the latest block; an AlreadyProcessed estimate settles nothing until
`messageStatus` at the latest block confirms it (and a message whose other delivery is dropped is delivered by
us); an estimate or view that reverts with a Panic (a node answering mid-block) is asked again before it
counts; a rebroadcast answered "nonce too low" because our own transaction was just mined settles from its
receipt (for a delivery and for an on-chain retry); a refused rebroadcast waits a receipt timeout before the
next attempt; a dead chain is retried with the configured backoff and costs the other lanes no time; a
fail-fast RPC client gives up at once when nothing listens.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import (
    BusyRpcServer,
    CHAIN_B_ID,
    MODE_ACCEPT,
    MODE_REVERT,
    STATUS_DELIVERED,
    STATUS_FAILED,
    STATUS_NONE,
    Message,
    RelaySide,
    RelayStack,
    build_relay_stack,
    delivered_log_count,
    delivery_digest,
    fixed_key,
    fund,
    hex_id,
    message_tuple,
    mine,
    rpc,
    signature_of,
    transact,
)
from conftest import ChainPair
from eth_account.signers.local import LocalAccount
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from thingledger_bridge.chain import ChainClient, ChainUnavailable, RevertError, Rpc, RpcError
from thingledger_bridge.config import ChainConfig, Config, KeySource, RelayerConfig
from thingledger_bridge.devnet import free_port
from thingledger_bridge.relay_abi import relay_abi
from thingledger_bridge.relayer import GAS_MARGIN_PERCENT, Relayer
from thingledger_bridge.relayer_store import RelayerStore
from web3 import Web3

CHAIN_DEAD_ID = 1009
MESSAGE_GAS_LIMIT = 300_000


class Clock:
    """A clock the test moves by hand (the relayer's and its database's)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A relayer on a relay stack's two chains (and maybe more), its database and what it reported."""

    stack: RelayStack
    account: LocalAccount
    store: RelayerStore
    relayer: Relayer
    events: list[dict[str, Any]]
    folder: Path

    def named(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == name]

    def client(self, chain_id: int = CHAIN_B_ID) -> ChainClient:
        return self.relayer.clients[chain_id]

    def sign(self, message_id: bytes, message: Message) -> None:
        """Two of the three validators' signature files in the store, in the spec's layout."""
        for validator in self.stack.validators[:2]:
            path = self.folder / "signatures" / validator.address / f"{hex_id(message_id)}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "id": hex_id(message_id),
                "validator": validator.address,
                "signature": "0x" + signature_of(message, validator).hex(),
                "digest": "0x" + delivery_digest(message).hex(),
                "dst_chain_id": message["dstChainId"],
                "dst_relay": message["dstRelay"],
            }
            path.write_text(json.dumps(document))

    def send(self, payload: bytes, recipient: str | None = None) -> tuple[bytes, Message]:
        """A message from chain 1001 to chain 1002 (gas for the mock to store a payload of a few words), signed
        by two validators."""
        message_id, message = self.stack.send(self.stack.a, self.stack.b, recipient, payload, MESSAGE_GAS_LIMIT)
        self.sign(message_id, message)
        return message_id, message

    def settle(self, timeout: float = 15.0) -> None:
        """Checks the open submissions until their receipts are read (anvil's automine may answer a receipt
        lookup a moment after it took the transaction), within `timeout` seconds of real time."""
        deadline = time.monotonic() + timeout
        while True:
            self.relayer.check_submissions()
            if not self.store.open_submissions():
                return
            assert time.monotonic() < deadline, f"open submissions left: {self.store.open_submissions()}"
            time.sleep(0.05)

    def row(self, message_id: bytes) -> Any:
        row = self.store.message(hex_id(message_id))
        assert row is not None, hex_id(message_id)
        return row


def chain_config(side: RelaySide, name: str) -> ChainConfig:
    return ChainConfig(
        name=name,
        chain_id=side.chain_id,
        rpc_url=side.chain.rpc_url,
        relay=side.relay.address,
        confirmations=0,
        start_block=int(side.web3.eth.block_number),
        poll_interval=0.05,
    )


@pytest.fixture
def harness(chains: ChainPair, tmp_path: Path) -> Iterator[Any]:
    """Builds a Harness on a fresh relay pair; closes the databases and turns automine back on at the end."""
    stores: list[RelayerStore] = []

    def build(
        label: str,
        *,
        clock: Clock | None = None,
        extra_chains: tuple[ChainConfig, ...] = (),
        backoff_initial: float = 0.1,
        backoff_max: float = 0.4,
        receipt_timeout: float = 60.0,
    ) -> Harness:
        stack = build_relay_stack(chains.a, chains.b)
        folder = tmp_path / label
        folder.mkdir()
        account = fixed_key(f"in-process relayer {label}")
        for side in (stack.a, stack.b):
            fund(side.web3, account.address)
        config = Config(
            path=folder / "relayer.toml",
            signature_store=folder / "signatures",
            chains=(chain_config(stack.a, "a"), chain_config(stack.b, "b"), *extra_chains),
            validator=None,
            relayer=RelayerConfig(
                key=KeySource(None, None, "UNUSED_IN_PROCESS"),
                database=folder / "relayer.sqlite",
                backoff_initial=backoff_initial,
                backoff_max=backoff_max,
                receipt_timeout=receipt_timeout,
            ),
        )
        tick = clock or time.time
        store = RelayerStore(folder / "relayer.sqlite", clock=tick)
        stores.append(store)
        clients = {chain.chain_id: ChainClient(chain, fail_fast=True) for chain in config.chains}
        events: list[dict[str, Any]] = []

        def report(event: str, **fields: Any) -> None:
            events.append({"event": event, **fields})

        relayer = Relayer(config, account, clients, store, report, clock=tick, unchecked=clients)
        return Harness(stack, account, store, relayer, events, folder)

    try:
        yield build
    finally:
        for store in stores:
            store.close()
        rpc(chains.a.web3, "evm_setAutomine", True)
        rpc(chains.b.web3, "evm_setAutomine", True)


@contextmanager
def automine_off(web3: Web3) -> Iterator[None]:
    """The chain mines only when told (`mine`): transactions wait in its mempool."""
    rpc(web3, "evm_setAutomine", False)
    try:
        yield
    finally:
        rpc(web3, "evm_setAutomine", True)


def deliver_from(side: RelaySide, account: str, message: Message, stack: RelayStack) -> HexBytes:
    """Another party's `deliver` of `message`, sent and not waited for (its hash)."""
    call = side.relay.functions.deliver(message_tuple(message), stack.sign(message))
    return HexBytes(call.transact({"from": account, "gas": 1_000_000}))


class MinedRightAfterTheNonceRead:
    """Steers one race on a real chain: right after the relayer read its account's confirmed nonce (while
    reviving a submission without receipt), the chain mines its pending transactions, ours with them, so the
    rebroadcast that follows is answered "nonce too low". The node's refusals are kept."""

    def __init__(self, client: ChainClient, web3: Web3, monkeypatch: pytest.MonkeyPatch) -> None:
        self.mined = False
        self.refusals: list[str] = []
        read = client.transaction_count
        send = client.send_raw

        def transaction_count(address: str, block: str = "pending") -> int:
            count = read(address, block)
            if block == "latest" and not self.mined:
                mine(web3)
                self.mined = True
            return count

        def send_raw(raw: bytes) -> bytes:
            try:
                return send(raw)
            except RpcError as error:
                self.refusals.append(error.message)
                raise

        monkeypatch.setattr(client, "transaction_count", transaction_count)
        monkeypatch.setattr(client, "send_raw", send_raw)


# ---------------------------------------------------------------------------------------------- estimates


def test_gas_estimates_run_on_the_latest_block_not_on_pending_transactions(harness: Any) -> None:
    h: Harness = harness("estimates")
    stack, b = h.stack, h.stack.b
    message_id, message = h.send(b"estimated while another delivery is pending")
    data = relay_abi().encode("deliver", message_tuple(message), stack.sign(message))
    client = ChainClient(chain_config(b, "b"))
    with automine_off(b.web3):
        deliver_from(b, b.web3.eth.accounts[7], message, stack)
        # On the latest block the message is not processed: the estimates succeed.
        (estimate,) = client.estimate_gas_many(h.account.address, [data])
        assert isinstance(estimate, int) and estimate > MESSAGE_GAS_LIMIT
        assert client.estimate_gas(h.account.address, data) == estimate
        # On the pending state (a node's default) it is, by a transaction that may never be mined.
        with pytest.raises(RevertError) as caught:
            client.estimate_gas(h.account.address, data, block="pending")
        assert caught.value.name == "AlreadyProcessed"
        assert b.status(message_id) == STATUS_NONE
        mine(b.web3)
    assert b.status(message_id) == STATUS_DELIVERED
    with pytest.raises(RevertError) as caught:
        client.estimate_gas(h.account.address, data)
    assert caught.value.name == "AlreadyProcessed"


def test_an_already_processed_estimate_is_believed_only_from_the_status_at_the_latest_block(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: Harness = harness("pending-estimates", backoff_initial=0.2, backoff_max=0.4)
    stack, b = h.stack, h.stack.b
    # A node that estimates on its pending state, where other parties' deliveries not mined yet have run.
    estimate_many = h.client().estimate_gas_many
    monkeypatch.setattr(
        h.client(), "estimate_gas_many", lambda sender, datas, block="latest": estimate_many(sender, datas, "pending")
    )
    dropped_id, dropped = h.send(b"the other delivery is dropped")
    mined_id, mined = h.send(b"the other delivery is mined")
    ids = [dropped_id, mined_id]
    accounts = b.web3.eth.accounts
    with automine_off(b.web3):
        others = {
            dropped_id: deliver_from(b, accounts[7], dropped, stack),
            mined_id: deliver_from(b, accounts[8], mined, stack),
        }
        before = time.time()
        result = h.relayer.pass_once()
        assert (result.seen, result.submitted) == (2, 0)
        # Both estimates said AlreadyProcessed; the latest block says None: nothing is settled, no attempt counted.
        assert h.named("delivered") == []
        assert sorted(event["id"] for event in h.named("deferred")) == sorted(hex_id(i) for i in ids)
        for message_id in ids:
            row = h.row(message_id)
            assert (row.state, row.attempts, row.delivered_by) == ("pending", 0, None)
            assert before + 0.2 <= row.next_attempt_at <= time.time() + 0.2
            assert "AlreadyProcessed" in row.last_error and b.status(message_id) == STATUS_NONE
        # One of the two other deliveries leaves the mempool for good; the other is mined.
        rpc(b.web3, "anvil_dropTransaction", others[dropped_id].to_0x_hex())
        mine(b.web3)
    assert b.web3.eth.get_transaction_receipt(others[mined_id])["status"] == 1
    assert (b.status(dropped_id), b.status(mined_id)) == (STATUS_NONE, STATUS_DELIVERED)

    time.sleep(0.25)  # past the wait
    result = h.relayer.pass_once()
    h.relayer.wait_for_receipts(30.0, threading.Event())
    assert result.submitted == 1
    assert (h.row(dropped_id).state, h.row(dropped_id).delivered_by) == ("delivered", "us")
    assert (h.row(mined_id).state, h.row(mined_id).delivered_by) == ("delivered", "other")
    assert [event["id"] for event in h.named("submitted")] == [hex_id(dropped_id)]
    for message_id in ids:
        assert h.row(message_id).attempts == 0
        assert delivered_log_count(b, message_id) == 1
        assert b.recipient.functions.timesReceived(message_id).call() == 1


def panic(code: int) -> RevertError:
    """The revert a node answers with for Solidity's Panic(code), decoded as the node's client decodes it."""
    data = keccak(text="Panic(uint256)")[:4] + abi_encode(["uint256"], [code])
    return RevertError(data, relay_abi().decode_error(data), relay_abi().describe_revert(data))


class PanicsFirst:
    """Wraps a client's estimates and views: the first `times` answers of each are Panic(0x11) (arithmetic
    underflow), as from a node that ran the call on the state of one block with the header of an older one."""

    def __init__(self, client: ChainClient, monkeypatch: pytest.MonkeyPatch, times: int) -> None:
        self.estimate_batches: list[int] = []
        self.token_reads = 0
        estimate_many = client.estimate_gas_many
        call_relay = client.call_relay

        def estimate_gas_many(sender: str, datas: list[bytes], block: str = "latest") -> list[Any]:
            results = estimate_many(sender, datas, block)
            self.estimate_batches.append(len(datas))
            return [panic(0x11) for _ in results] if len(self.estimate_batches) <= times else results

        def call(function: str, *args: Any, block: str = "latest") -> Any:
            if function == "rateLimitTokens":
                self.token_reads += 1
                if self.token_reads <= times:
                    raise panic(0x11)
            return call_relay(function, *args, block=block)

        monkeypatch.setattr(client, "estimate_gas_many", estimate_gas_many)
        monkeypatch.setattr(client, "call_relay", call)


def test_an_estimate_or_view_that_panics_once_is_asked_again_before_it_counts(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: Harness = harness("panics-once")
    message_id, _ = h.send(b"estimated twice")
    node = PanicsFirst(h.client(), monkeypatch, times=1)
    result = h.relayer.pass_once()
    assert (node.token_reads, node.estimate_batches) == (2, [1, 1])
    assert result.submitted == 1 and h.named("backoff") == [] and h.named("error") == []
    h.settle()
    row = h.row(message_id)
    assert (row.state, row.delivered_by, row.attempts) == ("delivered", "us", 0)
    assert h.stack.b.status(message_id) == STATUS_DELIVERED


def test_an_estimate_that_keeps_panicking_is_a_failed_attempt_and_a_view_a_chain_error(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: Harness = harness("panics-always")
    message_id, _ = h.send(b"never estimated")
    node = PanicsFirst(h.client(), monkeypatch, times=2)
    result = h.relayer.pass_once()
    # The bucket could not be read (twice): the destination is left alone for a while, nothing is counted.
    assert result.submitted == 0 and node.token_reads == 2 and node.estimate_batches == []
    (error,) = h.named("error")
    assert error["chain_id"] == CHAIN_B_ID and "rateLimitTokens(1001) reverted: Panic" in error["error"]
    assert h.row(message_id).attempts == 0
    # Next time the bucket reads, but both estimates panic: that is one failed attempt.
    time.sleep(0.15)  # past the chain's wait (backoff_initial 0.1 s)
    result = h.relayer.pass_once()
    assert result.submitted == 0 and node.estimate_batches == [1, 1]
    (backoff,) = h.named("backoff")
    assert backoff["attempts"] == 1 and "Panic" in backoff["error"]
    row = h.row(message_id)
    assert (row.state, row.attempts) == ("pending", 1)
    assert h.stack.b.status(message_id) == STATUS_NONE


# ---------------------------------------------------------------------------------------------- rebroadcasts


def test_a_rebroadcast_refused_nonce_too_low_because_our_delivery_was_just_mined_settles_from_its_receipt(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: Harness = harness("nonce-race-deliver")
    b = h.stack.b
    message_id, _ = h.send(b"mined while we rebroadcast it")
    with automine_off(b.web3):
        assert h.relayer.pass_once().submitted == 1
        (sub,) = h.store.submissions(hex_id(message_id))
        assert sub.status == "broadcast" and b.status(message_id) == STATUS_NONE
        race = MinedRightAfterTheNonceRead(h.client(), b.web3, monkeypatch)
        settled = h.relayer.check_submissions(force=True)
    assert race.mined and race.refusals == ["nonce too low"]
    assert settled == 1
    row = h.row(message_id)
    assert (row.state, row.delivered_by, row.attempts) == ("delivered", "us", 0)
    (sub,) = h.store.submissions(hex_id(message_id))
    receipt = b.web3.eth.get_transaction_receipt(sub.tx_hash)
    assert (sub.status, sub.block_number) == ("mined", receipt["blockNumber"])
    assert h.named("requeued") == [] and [event["by"] for event in h.named("delivered")] == ["us"]
    assert b.status(message_id) == STATUS_DELIVERED and delivered_log_count(b, message_id) == 1
    # Nothing is sent again.
    assert h.relayer.pass_once().submitted == 0
    assert len(h.store.submissions(hex_id(message_id))) == 1


def test_a_retry_whose_rebroadcast_is_refused_nonce_too_low_after_it_was_mined_is_delivered(
    harness: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h: Harness = harness("nonce-race-retry")
    stack, a, b = h.stack, h.stack.a, h.stack.b
    refusing = b.deploy_recipient([(a.chain_id, a.sender)])
    transact(b.web3, refusing.functions.setMode(MODE_REVERT), b.owner)
    message_id, _ = h.send(b"failed, then retried", refusing.address)
    assert h.relayer.pass_once().submitted == 1
    h.relayer.wait_for_receipts(30.0, threading.Event())
    assert h.row(message_id).state == "failed" and b.status(message_id) == STATUS_FAILED

    transact(b.web3, refusing.functions.setMode(MODE_ACCEPT), b.owner)
    row = h.row(message_id)
    data = relay_abi().encode("retry", row.message.as_tuple(), row.message.gas_limit)
    estimate = h.client().estimate_gas(h.account.address, data)
    with automine_off(b.web3):
        gas = estimate + estimate * GAS_MARGIN_PERCENT // 100
        assert h.relayer.submit(row, h.client(), data, gas, kind="retry")
        race = MinedRightAfterTheNonceRead(h.client(), b.web3, monkeypatch)
        settled = h.relayer.check_submissions(force=True, message_id=hex_id(message_id))
    assert race.mined and race.refusals == ["nonce too low"]
    assert settled == 1
    row = h.row(message_id)
    assert (row.state, row.delivered_by) == ("delivered", "us")
    deliver, retry = h.store.submissions(hex_id(message_id))
    assert (deliver.kind, deliver.status, retry.kind, retry.status) == ("deliver", "mined", "retry", "mined")
    assert b.status(message_id) == STATUS_DELIVERED
    assert refusing.functions.timesReceived(message_id).call() == 1


def test_a_refused_rebroadcast_waits_a_receipt_timeout_before_the_next_attempt(harness: Any) -> None:
    clock = Clock()
    h: Harness = harness("rebroadcast-pace", clock=clock, receipt_timeout=10.0)
    b = h.stack.b
    message_id, _ = h.send(b"rebroadcast at a steady pace")

    def attempts() -> tuple[int, int]:
        return len(h.named("rebroadcast")), len(h.named("rebroadcast-failed"))

    balance = b.web3.eth.get_balance(h.account.address)
    with automine_off(b.web3):
        assert h.relayer.pass_once().submitted == 1
        (sub,) = h.store.submissions(hex_id(message_id))
        h.relayer.check_submissions()
        assert attempts() == (0, 0)  # within its receipt timeout
        # The node still holds it and says so ("transaction already imported"): that is a success.
        clock.advance(10.5)
        h.relayer.check_submissions()
        assert attempts() == (1, 0)
        (sub,) = h.store.submissions(hex_id(message_id))
        assert (sub.status, sub.broadcast_at) == ("broadcast", clock.now)

        # The node loses it, and our account can no longer pay for it: every rebroadcast is refused.
        rpc(b.web3, "anvil_dropTransaction", "0x" + sub.tx_hash.hex())
        rpc(b.web3, "anvil_setBalance", h.account.address, "0x0")
        for _ in range(5):
            clock.advance(1.0)
            h.relayer.check_submissions()
        assert attempts() == (1, 0)
        clock.advance(5.5)
        h.relayer.check_submissions()
        assert attempts() == (1, 1)
        refused_at = clock.now
        (sub,) = h.store.submissions(hex_id(message_id))
        assert (sub.status, sub.broadcast_at) == ("broadcast", refused_at)
        assert sub.error == h.named("rebroadcast-failed")[0]["error"] and sub.error
        for _ in range(9):
            clock.advance(1.0)
            h.relayer.check_submissions()
        assert attempts() == (1, 1)
        clock.advance(1.5)
        h.relayer.check_submissions()
        assert attempts() == (1, 2)
        assert b.status(message_id) == STATUS_NONE and h.row(message_id).state == "submitted"
        rpc(b.web3, "anvil_setBalance", h.account.address, hex(balance))

    # Funded again: the next attempt, a receipt timeout later, is accepted and mined.
    clock.advance(10.5)
    h.relayer.check_submissions()
    assert attempts() == (2, 2)
    h.settle()
    row = h.row(message_id)
    assert (row.state, row.delivered_by, row.attempts) == ("delivered", "us", 0)
    assert len(h.store.submissions(hex_id(message_id))) == 1
    assert b.status(message_id) == STATUS_DELIVERED and delivered_log_count(b, message_id) == 1


# ---------------------------------------------------------------------------------------------- outages


def test_a_dead_chain_waits_with_the_configured_backoff_and_costs_the_other_lanes_no_time(harness: Any) -> None:
    clock = Clock()
    dead_url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
    dead = ChainConfig(
        name="dead", chain_id=CHAIN_DEAD_ID, rpc_url=dead_url, relay=to_checksum_address("0x" + "c3" * 20),
        confirmations=0,
    )
    h: Harness = harness("dead-chain", clock=clock, extra_chains=(dead,), backoff_initial=0.5, backoff_max=2.0)
    b = h.stack.b
    ids = [h.send(f"delivered while another chain is dead {n}".encode())[0] for n in range(3)]

    def dead_chain_errors() -> list[float]:
        return [event["retry_in"] for event in h.named("error") if event["chain_id"] == CHAIN_DEAD_ID]

    started = time.monotonic()
    result = h.relayer.pass_once()
    elapsed = time.monotonic() - started
    # The old client retried a refused connection 4 times (0.1 + 0.2 + 0.4 + 0.8 s of sleep) in every pass.
    assert elapsed < 1.5, f"a pass with a dead chain took {elapsed:.2f} s"
    assert (result.seen, result.submitted) == (3, 3)
    assert dead_chain_errors() == [0.5]
    assert "cannot reach " + dead_url in h.named("error")[0]["error"]
    h.settle()
    for message_id in ids:
        assert h.row(message_id).state == "delivered" and b.status(message_id) == STATUS_DELIVERED

    # The dead chain is tried again only when its wait is over; the wait doubles up to backoff_max.
    expected = [0.5]
    for wait, retry_in in ((0.5, 1.0), (1.0, 2.0), (2.0, 2.0), (2.0, 2.0)):
        clock.advance(wait - 0.01)
        h.relayer.pass_once()
        assert dead_chain_errors() == expected
        clock.advance(0.02)
        h.relayer.pass_once()
        expected.append(retry_in)
        assert dead_chain_errors() == expected
    assert not any(event.get("chain_id") in (h.stack.a.chain_id, CHAIN_B_ID) for event in h.named("error"))
    with pytest.raises(ChainUnavailable):
        h.client(CHAIN_DEAD_ID).head()


def test_a_fail_fast_rpc_gives_up_at_once_when_nothing_listens_but_still_retries_a_busy_node() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as caught:
        Rpc(url, label="chain dead", fail_fast=True).call("eth_blockNumber", [])
    fast = time.monotonic() - started
    assert caught.value.message.startswith(f"chain dead: cannot reach {url}")
    started = time.monotonic()
    with pytest.raises(ChainUnavailable):
        Rpc(url, label="chain dead", retries=2).call("eth_blockNumber", [])
    slow = time.monotonic() - started
    assert fast < 0.25 and slow >= 0.3, (fast, slow)  # the plain client slept 0.1 s, then 0.2 s

    with BusyRpcServer(busy=2) as server:
        busy = Rpc(server.url, retries=3, fail_fast=True)
        assert busy.call("eth_blockNumber", []) == "0x2a"
        assert server.busy_left == 0
