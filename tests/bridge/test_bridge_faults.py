"""The bridging node under faults, driven only through its CLI (`thingledger-bridge validator|run|messages|
status|retry ... --json`) as subprocesses, on two local anvil chains (three where one destination goes down
while the lane to the other keeps delivering).

Every test deploys its own relay pair (validators 2-of-3) and writes the node's configuration files into its
own folder; the validators' keys come from an environment variable (`private_key_env`). A background miner
adds a block every 0.2 s so confirmations accrue. The end state is always checked on chain: for every message,
the number of MessageDelivered logs with its id over the whole destination chain, and the recipient's own
count of calls.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import (
    CHAIN_A_ID,
    CHAIN_B_ID,
    CHAIN_C_ID,
    MODE_ACCEPT,
    MODE_REVERT,
    NODE_POLL_INTERVAL,
    STATUS_DELIVERED,
    STATUS_FAILED,
    STATUS_NONE,
    BlockMiner,
    BridgeWorld,
    NodeProcess,
    RelaySide,
    RelayStack,
    TcpProxy,
    build_relay_stack,
    delivered_log_count,
    delivery_digest,
    deploy_recipient,
    deploy_relay,
    fixed_key,
    fund,
    hex_id,
    mine,
    recover_signer,
    rpc,
    sent_message,
    transact,
    trust,
    wait,
    wait_until,
)
from conftest import ChainPair
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from thingledger_bridge.devnet import LocalChain
from web3.contract import Contract

MESSAGES = 20
SETTLE_TIMEOUT = 60.0
KILLED = -signal.SIGKILL

WorldFactory = Callable[..., BridgeWorld]


@pytest.fixture
def make_world(chains: ChainPair, tmp_path: Path) -> Iterator[WorldFactory]:
    """Builds a BridgeWorld (fresh relays, node folder) and a block miner; stops every node process and the
    miner at the end, whatever happened."""
    worlds: list[BridgeWorld] = []
    miners: list[BlockMiner] = []

    def factory(*, confirmations: int = 1, mine_source: bool = True, mine_destination: bool = True) -> BridgeWorld:
        stack = build_relay_stack(chains.a, chains.b)
        world = BridgeWorld(stack, tmp_path / f"node-{len(worlds)}", confirmations=confirmations)
        worlds.append(world)
        mined = [chain for chain, wanted in ((chains.a, mine_source), (chains.b, mine_destination)) if wanted]
        miners.append(BlockMiner(mined, interval=0.2).start())
        return world

    try:
        yield factory
    finally:
        for world in worlds:
            world.stop_all()
        for miner in miners:
            miner.stop()
        rpc(chains.b.web3, "evm_setAutomine", True)  # in case a test stopped it and failed


def assert_each_delivered_once(
    world: BridgeWorld, ids: list[bytes], recipient: Contract | None = None, *, failures: int = 0
) -> None:
    """On chain: one MessageDelivered log per id over the whole chain, the recipient called once for each,
    and `failures` MessageFailed logs on this world's relay."""
    b = world.stack.b
    mock = recipient or b.recipient
    for message_id in ids:
        assert b.status(message_id) == STATUS_DELIVERED, hex_id(message_id)
        assert delivered_log_count(b, message_id) == 1, hex_id(message_id)
        assert mock.functions.timesReceived(message_id).call() == 1, hex_id(message_id)
    assert len(b.logs("MessageFailed", from_block=world.start_blocks[CHAIN_B_ID])) == failures


def wait_for_relayer_states(world: BridgeWorld, expected: dict[bytes, str], relayer: str = "relayer") -> None:
    """Polls `messages --json` until every message in `expected` has its state there."""
    wanted = {hex_id(message_id): state for message_id, state in expected.items()}
    last: dict[str, str] = {}

    def reached() -> bool:
        nonlocal last
        rows = world.messages(relayer)
        last = {message_id: rows[message_id]["state"] for message_id in wanted if message_id in rows}
        return last == wanted

    try:
        wait_until(reached, 30, f"{relayer}'s messages --json to show the expected states", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {last}") from None


def stop_cleanly(*processes: NodeProcess) -> None:
    """Each process still runs (it did not die on its own), and exits with 0 on SIGINT, without a traceback."""
    for process in processes:
        assert process.running, f"{process.name} exited with {process.returncode}: {process.tail()}"
    for process in processes:
        code = process.stop()
        assert code == 0, f"{process.name} exited with {code} on SIGINT: {process.tail()}"
        assert "Traceback" not in process.stderr()


def count_on_chain(world: BridgeWorld, ids: list[bytes]) -> int:
    return sum(world.stack.b.status(message_id) == STATUS_DELIVERED for message_id in ids)


def error_backoffs(process: NodeProcess) -> list[float]:
    """The `retry_in` of each `error` event the relayer printed (a pass that failed on an RPC error)."""
    return [float(event["retry_in"]) for event in process.events() if event.get("event") == "error"]


def submitted(process: NodeProcess) -> int:
    """How many transactions the relayer reported as submitted."""
    return sum(1 for event in process.events() if event.get("event") == "submitted")


# ---------------------------------------------------------------------------------------------- crashes


@pytest.mark.parametrize(
    "failpoint,delivered_before_crash",
    [
        ("relayer.before-cursor-commit", 0),  # its first scan never commits: nothing known, nothing sent
        ("relayer.before-cursor-commit:3", None),  # a later scan, while deliveries are under way
        ("relayer.after-submission-recorded:3", 2),  # the 3rd is recorded, not broadcast
        ("relayer.after-broadcast:6", 6),  # the 6th is broadcast, its receipt never awaited
    ],
)
def test_a_relayer_killed_at_a_failpoint_resumes_and_delivers_every_message_exactly_once(
    make_world: WorldFactory, failpoint: str, delivered_before_crash: int | None
) -> None:
    world = make_world()
    ids = [message_id for message_id, _ in world.send_many(MESSAGES)]
    validators = world.start_validators()

    doomed = world.start_relayer(failpoint=failpoint)
    assert doomed.wait(timeout=SETTLE_TIMEOUT) == KILLED, doomed.tail()
    time.sleep(0.5)  # anvil mines what was broadcast
    if delivered_before_crash is not None:
        assert count_on_chain(world, ids) == delivered_before_crash

    restarted = world.start_relayer()
    wait_until(lambda: world.all_delivered(ids), SETTLE_TIMEOUT, "all 20 messages delivered after the restart")
    wait_for_relayer_states(world, {message_id: "delivered" for message_id in ids})
    assert set(world.messages()) == {hex_id(message_id) for message_id in ids}
    assert_each_delivered_once(world, ids)
    stop_cleanly(restarted, *validators)


def test_a_validator_killed_before_writing_a_signature_signs_the_rest_after_its_restart(
    make_world: WorldFactory,
) -> None:
    world = make_world()
    sent = world.send_many(MESSAGES)
    ids = [message_id for message_id, _ in sent]
    doomed_validator = world.stack.validators[0]
    store = world.folder / "signatures" / doomed_validator.address

    # Two validators of three: the threshold needs both, so nothing past the crash can be delivered.
    doomed = world.start_validator(0, failpoint="validator.before-signature-write:5")
    other = world.start_validator(1)
    relayer = world.start_relayer()
    assert doomed.wait(timeout=SETTLE_TIMEOUT) == KILLED, doomed.tail()
    assert len(list(store.glob("*.json"))) == 4
    wait_until(lambda: count_on_chain(world, ids) == 4, SETTLE_TIMEOUT, "the 4 messages it signed delivered")
    time.sleep(1.0)
    assert count_on_chain(world, ids) == 4

    restarted = world.start_validator(0)
    wait_until(lambda: world.all_delivered(ids), SETTLE_TIMEOUT, "all 20 messages delivered")
    wait_for_relayer_states(world, {message_id: "delivered" for message_id in ids})
    assert_each_delivered_once(world, ids)
    # Its store holds one complete signature per message (none torn by the crash), each really its own.
    files = sorted(store.iterdir())
    assert [path.name for path in files] == sorted(f"{hex_id(message_id)}.json" for message_id in ids)
    for message_id, message in sent:
        document = json.loads((store / f"{hex_id(message_id)}.json").read_text())
        assert document["id"] == hex_id(message_id)
        assert document["validator"] == doomed_validator.address
        assert document["dst_chain_id"] == CHAIN_B_ID
        assert document["dst_relay"] == world.stack.b.relay.address
        assert HexBytes(document["digest"]) == delivery_digest(message)
        assert recover_signer(message, HexBytes(document["signature"])) == doomed_validator.address
    stop_cleanly(relayer, other, restarted)


def test_two_relayers_racing_deliver_each_message_once(make_world: WorldFactory) -> None:
    world = make_world()
    ids = [message_id for message_id, _ in world.send_many(MESSAGES)]
    validators = world.start_validators()
    wait_until(
        lambda: all(len(world.signature_files(message_id)) >= 2 for message_id in ids), SETTLE_TIMEOUT,
        "two signatures of every message",
    )
    # Both start with every message ready to deliver.
    first = world.start_relayer("relayer-1")
    second = world.start_relayer("relayer-2")
    wait_until(lambda: world.all_delivered(ids), SETTLE_TIMEOUT, "all 20 messages delivered")
    for relayer in ("relayer-1", "relayer-2"):
        wait_for_relayer_states(world, {message_id: "delivered" for message_id in ids}, relayer)
    assert_each_delivered_once(world, ids)
    # Every delivery was submitted by one of them (a message recorded as delivered by "the other" was).
    assert submitted(first) + submitted(second) >= MESSAGES
    stop_cleanly(first, second, *validators)


def test_a_relayer_does_not_take_another_relayers_pending_transaction_for_a_delivery(
    make_world: WorldFactory,
) -> None:
    world = make_world(mine_destination=False)
    b = world.stack.b
    ids = [message_id for message_id, _ in world.send_many(5)]
    validators = world.start_validators()
    wait_until(
        lambda: all(len(world.signature_files(message_id)) >= 2 for message_id in ids), SETTLE_TIMEOUT,
        "two signatures of every message",
    )
    # The destination stops mining: the first relayer's deliveries wait in the mempool.
    rpc(b.web3, "evm_setAutomine", False)
    try:
        early = world.start_relayer("relayer-early")
        wait_until(lambda: submitted(early) >= 5, SETTLE_TIMEOUT, "the first relayer's 5 submissions")
        late = world.start_relayer("relayer-late")
        wait_until(lambda: len(world.messages("relayer-late")) == 5, SETTLE_TIMEOUT, "the second relayer to see them")
        time.sleep(1.5)  # several passes of the second relayer
        assert count_on_chain(world, ids) == 0
        states = {row["id"]: row["state"] for row in world.messages("relayer-late").values()}
        # Nothing is delivered on chain yet: a pending transaction of someone else may still be dropped.
        assert "delivered" not in states.values(), states
    finally:
        rpc(b.web3, "evm_setAutomine", True)
    mine(b.web3, 1)
    wait_until(lambda: world.all_delivered(ids), SETTLE_TIMEOUT, "all 5 delivered once mined")
    for relayer in ("relayer-early", "relayer-late"):
        wait_for_relayer_states(world, {message_id: "delivered" for message_id in ids}, relayer)
    assert_each_delivered_once(world, ids)
    stop_cleanly(early, late, *validators)


def test_a_pending_delivery_is_rebroadcast_at_most_once_per_receipt_timeout(make_world: WorldFactory) -> None:
    world = make_world(mine_destination=False)
    b = world.stack.b
    ids = [message_id for message_id, _ in world.send_many(3)]
    validators = world.start_validators()
    rpc(b.web3, "evm_setAutomine", False)
    try:
        relayer = world.start_relayer(relayer_options={"receipt_timeout": 1.0})
        wait_until(lambda: submitted(relayer) >= 3, SETTLE_TIMEOUT, "3 submissions")
        time.sleep(3.5)
        rebroadcasts = [event for event in relayer.events() if str(event.get("event", "")).startswith("rebroadcast")]
    finally:
        rpc(b.web3, "evm_setAutomine", True)
    # 3.5 s with a 1 s receipt timeout: at most about 4 rebroadcasts of each of the 3 transactions.
    assert len(rebroadcasts) <= 15, f"{len(rebroadcasts)} rebroadcasts, e.g. {rebroadcasts[:2]}"
    mine(b.web3, 1)
    wait_until(lambda: world.all_delivered(ids), SETTLE_TIMEOUT, "all 3 delivered once mined")
    wait_for_relayer_states(world, {message_id: "delivered" for message_id in ids})
    assert_each_delivered_once(world, ids)
    stop_cleanly(relayer, *validators)


# ---------------------------------------------------------------------------------------------- reorgs


def signed_send(world: BridgeWorld, sender: LocalAccount, recipient: str, payload: bytes) -> HexBytes:
    """A raw, signed `send` transaction from `sender` on chain 1001 (so the very same transaction can be
    mined again after a reorg)."""
    a = world.stack.a
    call = a.relay.functions.send(CHAIN_B_ID, recipient, 150_000, payload)
    transaction = call.build_transaction(
        {
            "from": sender.address,
            "nonce": a.web3.eth.get_transaction_count(sender.address),
            "gas": 300_000,
            "chainId": CHAIN_A_ID,
            "maxFeePerGas": 2 * int(a.web3.eth.gas_price) + 1,
            "maxPriorityFeePerGas": 1,
        }
    )
    return HexBytes(sender.sign_transaction(transaction).raw_transaction)


def test_a_message_removed_by_a_reorg_is_never_signed_or_delivered(make_world: WorldFactory) -> None:
    world = make_world(confirmations=2, mine_source=False)
    a, b = world.stack.a, world.stack.b
    validators = world.start_validators()
    relayer = world.start_relayer()
    time.sleep(1.0)  # the nodes are polling

    # X is mined, one block is added (depth 1 of the 2 needed), the nodes see it for a while, then a reorg
    # replaces both blocks with empty ones.
    doomed_id, doomed = world.stack.send(a, b, payload=b"removed by a reorg")
    mine(a.web3, 1)
    time.sleep(1.5)
    assert world.signature_files(doomed_id) == []
    rpc(a.web3, "anvil_reorg", 2, [])
    assert a.logs("MessageSent", doomed_id, from_block=0) == []
    assert a.relay.functions.nextNonce().call() == doomed["nonce"]

    # The message sent after the reorg reuses X's nonce, with another id; it is delivered, X never is.
    kept_id, kept = world.stack.send(a, b, payload=b"sent after the reorg")
    assert kept["nonce"] == doomed["nonce"] and kept_id != doomed_id
    mine(a.web3, 3)
    wait_until(lambda: world.all_delivered([kept_id]), SETTLE_TIMEOUT, "the message sent after the reorg delivered")
    mine(a.web3, 3)
    time.sleep(1.5)
    assert world.signature_files(doomed_id) == []
    assert b.status(doomed_id) == STATUS_NONE
    known = world.messages()
    assert hex_id(doomed_id) not in known
    assert known[hex_id(kept_id)]["state"] == "delivered"
    assert_each_delivered_once(world, [kept_id])
    stop_cleanly(relayer, *validators)


def test_a_send_re_mined_in_another_block_by_a_reorg_keeps_its_id_and_is_delivered_once(
    make_world: WorldFactory,
) -> None:
    world = make_world(confirmations=2, mine_source=False)
    a, b = world.stack.a, world.stack.b
    sender = fixed_key("reorged sender")
    fund(a.web3, sender.address)
    a.allow_sender(sender.address)
    recipient = b.deploy_recipient([(CHAIN_A_ID, sender.address)])
    validators = world.start_validators()
    relayer = world.start_relayer()

    raw = signed_send(world, sender, recipient.address, b"mined twice")
    tx_hash = a.web3.eth.send_raw_transaction(raw)
    first_receipt = wait(a.web3, tx_hash)
    message_id, message = sent_message(a.relay, first_receipt)
    mine(a.web3, 1)
    time.sleep(1.5)  # seen at depth 1, not yet deep enough
    assert world.signature_files(message_id) == []
    # The same signed transaction goes into the second of the two replacement blocks.
    rpc(a.web3, "anvil_reorg", 2, [[raw.to_0x_hex(), 1]])
    second_receipt = wait(a.web3, tx_hash)
    assert second_receipt["blockNumber"] == first_receipt["blockNumber"] + 1
    assert second_receipt["blockHash"] != first_receipt["blockHash"]
    assert sent_message(a.relay, second_receipt) == (message_id, message)
    assert len(a.logs("MessageSent", message_id, from_block=0)) == 1

    mine(a.web3, 3)
    wait_until(lambda: world.all_delivered([message_id]), SETTLE_TIMEOUT, "the re-mined message delivered")
    wait_for_relayer_states(world, {message_id: "delivered"})
    assert_each_delivered_once(world, [message_id], recipient)
    signers = set()
    for path in world.signature_files(message_id):
        document = json.loads(path.read_text())
        assert recover_signer(message, HexBytes(document["signature"])) == document["validator"]
        signers.add(document["validator"])
    assert len(signers) >= 2
    stop_cleanly(relayer, *validators)


# ---------------------------------------------------------------------------------------------- lanes and outages


def test_a_reverting_recipient_fails_its_message_without_holding_up_the_lane_and_retry_delivers_it(
    make_world: WorldFactory,
) -> None:
    world = make_world()
    a, b = world.stack.a, world.stack.b
    refusing = b.deploy_recipient([(CHAIN_A_ID, a.sender)])
    transact(b.web3, refusing.functions.setMode(MODE_REVERT), b.owner)
    failing_id, _ = world.stack.send(a, b, refusing.address, b"refused at first", 150_000)
    behind = [message_id for message_id, _ in world.send_many(5, label="behind")]
    validators = world.start_validators()
    relayer = world.start_relayer()

    wait_until(
        lambda: world.all_delivered(behind) and b.status(failing_id) == STATUS_FAILED, SETTLE_TIMEOUT,
        "the 5 messages behind delivered and the first Failed",
    )
    wait_for_relayer_states(world, {failing_id: "failed", **{message_id: "delivered" for message_id in behind}})
    status = world.status(failing_id)
    assert status["state"] == "failed" and status["destination_status"] == "Failed"
    assert status["tx_hashes"], status
    assert len(b.logs("MessageFailed", failing_id, from_block=0)) == 1
    assert_each_delivered_once(world, behind, failures=1)

    transact(b.web3, refusing.functions.setMode(MODE_ACCEPT), b.owner)
    retried = world.cli("retry", hex_id(failing_id))
    assert retried.returncode == 0, (
        f"retry: exit {retried.returncode}: {retried.stderr.strip()} stdout={retried.stdout.strip()!r}; "
        f"on chain: {b.status(failing_id)}; {relayer.tail()}"
    )
    assert b.status(failing_id) == STATUS_DELIVERED
    assert_each_delivered_once(world, [failing_id], refusing, failures=1)
    wait_for_relayer_states(world, {failing_id: "delivered"})
    assert world.status(failing_id)["destination_status"] == "Delivered"
    stop_cleanly(relayer, *validators)


def test_a_destination_outage_delays_delivery_with_backoff_and_loses_nothing(
    make_world: WorldFactory, chains: ChainPair
) -> None:
    world = make_world()
    proxy = TcpProxy(chains.b.port).start()
    try:
        validators = world.start_validators()
        relayer = world.start_relayer(rpc_urls={CHAIN_B_ID: proxy.url})
        early = [message_id for message_id, _ in world.send_many(3, label="before the outage")]
        wait_until(lambda: world.all_delivered(early), SETTLE_TIMEOUT, "delivery through the proxy")
        assert error_backoffs(relayer) == []

        proxy.stop()
        late = [message_id for message_id, _ in world.send_many(5, label="during the outage")]
        # The relayer keeps running and backs off: its failed passes are reported with growing delays.
        wait_until(lambda: len(error_backoffs(relayer)) >= 2, 30, "2 failed passes reported", interval=0.2)
        delays = error_backoffs(relayer)
        assert delays[1] > delays[0], delays
        assert relayer.running, relayer.tail()
        assert count_on_chain(world, late) == 0
        # Nothing is given up on: no message is parked or failed because the node was unreachable.
        states = {row["state"] for row in world.messages().values()}
        assert states <= {"pending", "submitted", "delivered"}, states

        proxy.start()
        wait_until(lambda: world.all_delivered(late), SETTLE_TIMEOUT, "delivery after the outage")
        wait_for_relayer_states(world, {message_id: "delivered" for message_id in early + late})
        assert_each_delivered_once(world, early + late)
        stop_cleanly(relayer, *validators)
    finally:
        proxy.stop()


def test_a_paused_destination_backs_off_per_message_parks_and_retry_requeues(make_world: WorldFactory) -> None:
    world = make_world()
    b = world.stack.b
    transact(b.web3, b.relay.functions.pause(), b.guardian)
    ids = [message_id for message_id, _ in world.send_many(2, label="while paused")]
    validators = world.start_validators()
    relayer = world.start_relayer(relayer_options={"max_attempts": 4, "backoff_initial": 0.2, "backoff_max": 0.4})

    # The first attempt fails (EnforcedPause): it is recorded with a next attempt, then retried with backoff.
    def attempted() -> bool:
        row = world.messages().get(hex_id(ids[0]))
        return row is not None and row["attempts"] >= 1
    wait_until(attempted, SETTLE_TIMEOUT, "a failed attempt recorded", interval=0.1)
    backoffs = [event for event in relayer.events() if event.get("event") == "backoff"]
    assert backoffs and backoffs[0]["id"] == hex_id(ids[0]), relayer.tail()
    wait_until(
        lambda: {row["id"] for row in world.cli("parked").json()} == {hex_id(message_id) for message_id in ids},
        SETTLE_TIMEOUT, "both messages parked after 4 attempts", interval=0.3,
    )
    for row in world.cli("parked").json():
        assert row["state"] == "parked" and row["attempts"] == 4, row
        assert "EnforcedPause" in (row["last_error"] or ""), row
    # Attempts were spaced by the backoff (0.2 s, then 0.4 s): the first message's four took at least 0.8 s.
    first_events = [event for event in relayer.events() if event.get("id") == hex_id(ids[0])]
    assert [event["attempts"] for event in first_events if event["event"] == "backoff"] == [1, 2, 3]
    assert b.status(ids[0]) == STATUS_NONE and b.status(ids[1]) == STATUS_NONE

    transact(b.web3, b.relay.functions.unpause(), b.owner)
    for message_id in ids:
        requeued = world.cli("retry", hex_id(message_id))
        assert requeued.returncode == 0, requeued.stderr
        assert world.status(message_id)["attempts"] == 0
    wait_until(lambda: world.all_delivered(ids), SETTLE_TIMEOUT, "both delivered after the unpause")
    wait_for_relayer_states(world, {message_id: "delivered" for message_id in ids})
    assert_each_delivered_once(world, ids)
    stop_cleanly(relayer, *validators)


class ThreeChainWorld(BridgeWorld):
    """A BridgeWorld whose nodes also know chain 1003 (its relay trusts chain 1001's, which may send to it),
    reached at `third_url` (a proxy the test can take down)."""

    def __init__(self, stack: RelayStack, third: RelaySide, folder: Path, *, third_url: str) -> None:
        super().__init__(stack, folder)
        stack.extra[third.chain_id] = third
        self.third = third
        self.third_url = third_url
        self.start_blocks[third.chain_id] = int(third.web3.eth.block_number)

    def write_config(self, name: str, **options: Any) -> Path:
        """The two-chain configuration with a third [[chains]] entry (TOML lets it follow the other tables)."""
        path = super().write_config(name, **options)
        chain = {
            "name": f"chain-{self.third.chain_id}",
            "chain_id": self.third.chain_id,
            "rpc_url": self.third_url,
            "relay": self.third.relay.address,
            "confirmations": self.confirmations,
            "start_block": self.start_blocks[self.third.chain_id],
            "poll_interval": NODE_POLL_INTERVAL,
        }
        entry = "".join(f"{key} = {json.dumps(value)}\n" for key, value in chain.items())
        path.write_text(path.read_text() + "\n[[chains]]\n" + entry)
        return path

    def relayer_key(self, name: str) -> LocalAccount:
        """Relayer `name`'s key, funded on the three chains."""
        key = super().relayer_key(name)
        fund(self.third.web3, key.address)
        return key


def third_side(stack: RelayStack, chain: LocalChain) -> RelaySide:
    """A relay on `chain` (the stack's validators, 2 of 3) trusting chain 1001's relay, which may now send to it,
    and a recipient there trusting chain 1001's sender. Deployed by anvil accounts 9 (owner) and 8 (guardian),
    which nothing else on that chain uses."""
    accounts = chain.accounts
    owner, guardian = accounts[9], accounts[8]
    relay = deploy_relay(chain, [v.address for v in stack.validators], stack.threshold, owner=owner, guardian=guardian)
    side = RelaySide(
        chain,
        relay,
        deploy_recipient(chain, relay.address, [(CHAIN_A_ID, stack.a.sender)], deployer=owner),
        owner,
        guardian,
        accounts[2],
        accounts[3],
    )
    trust(side, CHAIN_A_ID, stack.a.relay.address)
    trust(stack.a, chain.chain_id, relay.address)
    return side


def test_a_destination_that_is_down_does_not_stop_the_lanes_that_do_not_involve_it(
    chains: ChainPair, third_chain: LocalChain, tmp_path: Path
) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    c = third_side(stack, third_chain)
    proxy = TcpProxy(third_chain.port).start()
    world = ThreeChainWorld(stack, c, tmp_path / "node", third_url=proxy.url)
    miner = BlockMiner([chains.a, chains.b, third_chain], interval=0.2).start()
    a, b = stack.a, stack.b
    try:
        validators = world.start_validators()
        relayer = world.start_relayer(relayer_options={"backoff_initial": 0.2, "backoff_max": 1.0})
        early_b = [stack.send(a, b, None, b"to b, before", 150_000)[0]]
        early_c = [stack.send(a, c, None, b"to c, before", 150_000)[0]]
        wait_until(
            lambda: world.all_delivered(early_b) and c.status(early_c[0]) == STATUS_DELIVERED, SETTLE_TIMEOUT,
            "one message delivered on each lane",
        )

        # Chain 1003 goes down. Messages to it and to chain 1002 are sent in turns, all from chain 1001.
        proxy.stop()
        late_b: list[bytes] = []
        late_c: list[bytes] = []
        for n in range(4):
            late_c.append(stack.send(a, c, None, f"to c {n}".encode(), 150_000)[0])
            late_b.append(stack.send(a, b, None, f"to b {n}".encode(), 150_000)[0])
        wait_until(lambda: world.all_delivered(late_b), SETTLE_TIMEOUT, "the lane to chain 1002 delivered")
        assert not proxy.up
        assert [c.status(message_id) for message_id in late_c] == [STATUS_NONE] * 4

        # The dead chain is reported and tried again with the relayer's backoff (0.2 s doubling, capped at 1 s).
        def dead_chain_delays() -> list[float]:
            return [
                float(event["retry_in"])
                for event in relayer.events()
                if event.get("event") == "error" and event.get("chain_id") == CHAIN_C_ID
            ]

        wait_until(lambda: len(dead_chain_delays()) >= 5, 30, "5 failed attempts on chain 1003", interval=0.2)
        delays = dead_chain_delays()
        assert delays[:5] == [0.2, 0.4, 0.8, 1.0, 1.0], delays
        assert relayer.running, relayer.tail()
        states = {row["id"]: row["state"] for row in world.messages().values()}
        assert {states[hex_id(message_id)] for message_id in late_c} == {"pending"}, states
        # Nothing is given up on (the first message to chain 1003 may still await the receipt it cannot read).
        assert set(states.values()) <= {"pending", "submitted", "delivered"}, states

        proxy.start()
        wait_until(
            lambda: all(c.status(message_id) == STATUS_DELIVERED for message_id in late_c), SETTLE_TIMEOUT,
            "the lane to chain 1003 delivered once it is back",
        )
        wait_for_relayer_states(world, {message_id: "delivered" for message_id in early_b + early_c + late_b + late_c})
        assert_each_delivered_once(world, early_b + late_b)
        for message_id in early_c + late_c:
            assert delivered_log_count(c, message_id) == 1, hex_id(message_id)
            assert c.recipient.functions.timesReceived(message_id).call() == 1, hex_id(message_id)
        stop_cleanly(relayer, *validators)
    finally:
        proxy.stop()
        miner.stop()
        world.stop_all()
