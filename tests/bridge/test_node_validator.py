"""The validator signs only what it checked: each check of `Validator.check_log` refuses a log that fails it
(logs and receipts from a real relay on anvil, then altered), and a message is signed only once it is
`confirmations` deep."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import RelayStack, mine
from eth_utils import to_checksum_address
from thingledger_bridge.chain import ChainClient, hexbytes
from thingledger_bridge.config import ChainConfig, Config, KeySource, ValidatorConfig
from thingledger_bridge.messages import MESSAGE_SENT_TOPIC, SentLog, hex_id
from thingledger_bridge.signature_store import read_signature
from thingledger_bridge.validator import Refusal, Validator
from thingledger_bridge.validator_store import ValidatorStore


def make_validator(
    stack: RelayStack, tmp_path: Path, *, confirmations: int = 0, dst_relay: str | None = None, configure_b: bool = True
) -> tuple[Validator, dict[int, ChainClient]]:
    chains = [
        ChainConfig(
            name="a",
            chain_id=stack.a.chain_id,
            rpc_url=stack.a.chain.rpc_url,
            relay=stack.a.relay.address,
            confirmations=confirmations,
        )
    ]
    chains.append(
        ChainConfig(
            name="b",
            chain_id=stack.b.chain_id if configure_b else 4242,
            rpc_url=stack.b.chain.rpc_url,
            relay=dst_relay or stack.b.relay.address,
            confirmations=confirmations,
        )
    )
    config = Config(
        path=tmp_path / "v.toml",
        signature_store=tmp_path / "signatures",
        chains=tuple(chains),
        validator=ValidatorConfig(KeySource(None, None, "X"), tmp_path / "v.sqlite"),
        relayer=None,
    )
    clients = {c.chain_id: ChainClient(c) for c in chains}
    events: list[tuple[str, dict[str, Any]]] = []
    validator = Validator(
        config,
        stack.validators[0],
        clients,
        ValidatorStore(config.validator.database),  # type: ignore[union-attr]
        lambda name, **fields: events.append((name, fields)),
    )
    validator.events = events  # type: ignore[attr-defined]
    return validator, clients


def latest_log(stack: RelayStack, client: ChainClient) -> tuple[dict[str, Any], dict[str, Any]]:
    block = client.head()
    (log,) = client.get_logs(block, block, [hexbytes(MESSAGE_SENT_TOPIC)])
    (receipt,) = client.receipts([bytes.fromhex(log["transactionHash"][2:])])
    assert receipt is not None
    return log, receipt


def test_a_genuine_log_passes_every_check(relay_stack: RelayStack, tmp_path: Path) -> None:
    validator, clients = make_validator(relay_stack, tmp_path)
    message_id, _ = relay_stack.send(relay_stack.a, relay_stack.b, payload=b"genuine")
    client = clients[relay_stack.a.chain_id]
    log, receipt = latest_log(relay_stack, client)
    outcome = validator.check_log(client, log, client.safe_head(), receipt)
    assert isinstance(outcome, SentLog) and outcome.id == message_id


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (lambda log, receipt, safe: ({**log, "address": "0x" + "11" * 20}, receipt, safe), "not the configured relay"),
        (lambda log, receipt, safe: ({**log, "removed": True}, receipt, safe), "removed"),
        (lambda log, receipt, safe: (log, receipt, int(log["blockNumber"], 16) - 1), "above the safe head"),
        (lambda log, receipt, safe: (log, None, safe), "receipt not found"),
        (lambda log, receipt, safe: (log, {**receipt, "blockHash": "0x" + "22" * 32}, safe), "block hash"),
        (lambda log, receipt, safe: (log, {**receipt, "status": "0x0"}, safe), "reverted"),
        (lambda log, receipt, safe: (log, {**receipt, "logs": []}, safe), "not in the re-read receipt"),
        (
            lambda log, receipt, safe: (
                {**log, "topics": [log["topics"][0], "0x" + "33" * 32, *log["topics"][2:]]},
                {
                    **receipt,
                    "logs": [
                        {**item, "topics": [item["topics"][0], "0x" + "33" * 32, *item["topics"][2:]]}
                        for item in receipt["logs"]
                    ],
                },
                safe,
            ),
            "not the log's id",
        ),
        (lambda log, receipt, safe: ({**log, "data": "0x00"}, receipt, safe), "malformed"),
    ],
)
def test_each_check_refuses(relay_stack: RelayStack, tmp_path: Path, alter, reason: str) -> None:
    validator, clients = make_validator(relay_stack, tmp_path)
    relay_stack.send(relay_stack.a, relay_stack.b, payload=b"to be altered")
    client = clients[relay_stack.a.chain_id]
    log, receipt = latest_log(relay_stack, client)
    altered_log, altered_receipt, safe = alter(log, receipt, client.safe_head())
    outcome = validator.check_log(client, altered_log, safe, altered_receipt)
    assert isinstance(outcome, Refusal) and reason in outcome.reason, outcome


def test_an_unconfigured_destination_or_another_relay_is_refused(relay_stack: RelayStack, tmp_path: Path) -> None:
    relay_stack.send(relay_stack.a, relay_stack.b, payload=b"where to?")
    for kwargs, reason in (
        ({"configure_b": False}, "destination chain 1002 is not configured"),
        ({"dst_relay": to_checksum_address("0x" + "44" * 20)}, "destination relay"),
    ):
        validator, clients = make_validator(relay_stack, tmp_path / reason[:5], **kwargs)
        client = clients[relay_stack.a.chain_id]
        log, receipt = latest_log(relay_stack, client)
        outcome = validator.check_log(client, log, client.safe_head(), receipt)
        assert isinstance(outcome, Refusal) and reason in outcome.reason, outcome


def test_a_message_is_signed_only_once_it_is_deep_enough(relay_stack: RelayStack, tmp_path: Path) -> None:
    validator, clients = make_validator(relay_stack, tmp_path, confirmations=3)
    client = clients[relay_stack.a.chain_id]
    validator.store.advance(relay_stack.a.chain_id, client.head() + 1, [])
    validator.store.advance(relay_stack.b.chain_id, clients[relay_stack.b.chain_id].head() + 1, [])
    message_id, message = relay_stack.send(relay_stack.a, relay_stack.b, payload=b"deep")
    store = validator.config.signature_store
    digest = bytes(relay_stack.b.relay.functions.deliveryDigest(tuple(message.values())).call())
    stop = threading.Event()
    validator.run(once=True, stop=stop)
    assert read_signature(store, validator.address, hex_id(message_id), digest) is None
    mine(relay_stack.a.web3, 2)
    validator.run(once=True, stop=stop)
    assert read_signature(store, validator.address, hex_id(message_id), digest) is None
    mine(relay_stack.a.web3, 1)
    validator.run(once=True, stop=stop)
    assert read_signature(store, validator.address, hex_id(message_id), digest) is not None
    signed = [fields for name, fields in validator.events if name == "signed"]  # type: ignore[attr-defined]
    assert [fields["id"] for fields in signed] == [hex_id(message_id)]
    # Running again signs nothing twice.
    validator.run(once=True, stop=stop)
    assert len([1 for name, _ in validator.events if name == "signed"]) == 1  # type: ignore[attr-defined]


def test_a_chain_that_does_not_answer_holds_up_no_other(relay_stack: RelayStack, tmp_path: Path) -> None:
    from thingledger_bridge.devnet import free_port

    validator, clients = make_validator(relay_stack, tmp_path)
    dead = ChainConfig(
        name="dead",
        chain_id=4343,
        rpc_url=f"http://127.0.0.1:{free_port()}",
        relay=to_checksum_address("0x" + "55" * 20),
        poll_interval=0.05,
    )
    dead_client = ChainClient(dead)
    dead_client.rpc.retries = 0
    validator.clients = {**clients, dead.chain_id: dead_client}
    for chain_id, client in clients.items():
        validator.store.advance(chain_id, client.head() + 1, [])
    message_id, _ = relay_stack.send(relay_stack.a, relay_stack.b, payload=b"despite the dead chain")
    stop = threading.Event()
    timer = threading.Timer(2.5, stop.set)
    timer.start()
    validator.run(once=False, stop=stop)
    timer.cancel()
    events = validator.events  # type: ignore[attr-defined]
    assert [fields["id"] for name, fields in events if name == "signed"] == [hex_id(message_id)]
    delays = [fields["retry_in"] for name, fields in events if name == "error"]
    assert len(delays) >= 2 and delays == sorted(delays) and delays[1] > delays[0]
    assert all(fields["chain_id"] == 4343 for name, fields in events if name == "error")
