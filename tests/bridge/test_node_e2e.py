"""The bridging node end to end on two anvil chains (1001 -> 1002), through its CLI: validators (2 of 3)
sign, the relayer delivers 5 messages, one to a reverting recipient (Failed, then `retry` after fixing the
recipient -> Delivered); `messages`, `status`, `parked`; a destination that stays paused parks a message
until `retry` re-queues it; a relayer SIGKILLed at its failpoints still delivers each message exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bridge_helpers import (
    MESSAGE_JSON_FIELDS,
    MODE_ACCEPT,
    MODE_REVERT,
    STATUS_DELIVERED,
    STATUS_FAILED,
    RelayStack,
    build_relay_stack,
    transact,
)
from thingledger_bridge.cli import main

# anvil's default account 5: the relayer's key in these tests (a funded account nothing else uses).
RELAYER_KEY = "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba"
RELAYER_ADDRESS = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"


@dataclass
class Node:
    """Config files of three validators and a relayer for one relay stack."""

    stack: RelayStack
    folder: Path
    env: dict[str, str]

    def config(self, role: str) -> str:
        return str(self.folder / f"{role}.toml")


def write_configs(stack: RelayStack, folder: Path, *, relayer_extra: str = "") -> Node:
    folder.mkdir(parents=True, exist_ok=True)
    chains = "".join(
        f"""
[[chains]]
name = "chain-{side.chain_id}"
chain_id = {side.chain_id}
rpc_url = "{side.chain.rpc_url}"
relay = "{side.relay.address}"
confirmations = 0
poll_interval = 0.05
start_block = {side.web3.eth.block_number}
"""
        for side in (stack.a, stack.b)
    )
    env = {"RELAYER_KEY": RELAYER_KEY}
    for index, validator in enumerate(stack.validators):
        env[f"VALIDATOR_{index}_KEY"] = "0x" + bytes(validator.key).hex()
        (folder / f"validator-{index}.toml").write_text(
            f'signature_store = "signatures"\n{chains}\n[validator]\nprivate_key_env = "VALIDATOR_{index}_KEY"\n'
            f'database = "validator-{index}.sqlite"\n'
        )
    (folder / "relayer.toml").write_text(
        f'signature_store = "signatures"\n{chains}\n[relayer]\nprivate_key_env = "RELAYER_KEY"\n'
        f'database = "relayer.sqlite"\nbackoff_initial = 0.05\nbackoff_max = 0.2\nreceipt_timeout = 10\n{relayer_extra}'
    )
    return Node(stack, folder, env)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[Any], str]:
    """Runs the CLI in this process; (exit code, stdout JSON lines, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


@pytest.fixture(scope="module")
def stack(chains: Any) -> RelayStack:
    """A relay pair of its own: the relayer here scans only its messages."""
    return build_relay_stack(chains.a, chains.b)


@pytest.fixture()
def node(stack: RelayStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    built = write_configs(stack, tmp_path / "node")
    for key, value in built.env.items():
        monkeypatch.setenv(key, value)
    yield built


def events(lines: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == name]


def test_five_messages_one_reverting_then_retried(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    stack = node.stack
    reverting = stack.b.deploy_recipient([(stack.a.chain_id, stack.a.sender)])
    transact(stack.b.web3, reverting.functions.setMode(MODE_REVERT), stack.b.owner)
    received_before = stack.b.recipient.functions.received().call()
    sent = []
    for index in range(5):
        recipient = reverting.address if index == 2 else None
        sent.append(stack.send(stack.a, stack.b, recipient, payload=f"message {index}".encode()))
    ids = ["0x" + message_id.hex() for message_id, _ in sent]
    failing = ids[2]

    started = time.monotonic()
    for index in (0, 2):  # two of the three validators: the threshold
        code, lines, err = cli(capsys, "validator", "--config", node.config(f"validator-{index}"), "--once", "--json")
        assert code == 0, err
        assert sorted(line["id"] for line in events(lines, "signed")) == sorted(ids)
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    elapsed = time.monotonic() - started
    assert code == 0, err
    assert sorted(line["id"] for line in events(lines, "seen")) == sorted(ids)
    submitted = events(lines, "submitted")
    assert [line["nonce"] for line in submitted] == [0, 1, 2, 3, 4]  # the lane in nonce order
    assert sorted(line["id"] for line in events(lines, "delivered")) == sorted(i for i in ids if i != failing)
    assert [line["id"] for line in events(lines, "failed")] == [failing]
    print(f"5 messages signed by 2 validators and relayed in {elapsed:.2f} s (in-process CLI)")

    assert stack.b.recipient.functions.received().call() == received_before + 4
    for message_id, _ in sent:
        expected = STATUS_FAILED if "0x" + message_id.hex() == failing else STATUS_DELIVERED
        assert stack.b.status(message_id) == expected
        if expected == STATUS_DELIVERED:
            assert stack.b.recipient.functions.timesReceived(message_id).call() == 1

    code, lines, err = cli(capsys, "messages", "--config", node.config("relayer"), "--json")
    assert code == 0, err
    assert {line["id"]: line["state"] for line in lines} == {
        i: ("failed" if i == failing else "delivered") for i in ids
    }
    assert all(set(line) == MESSAGE_JSON_FIELDS for line in lines)
    code, lines, _ = cli(capsys, "messages", "--config", node.config("relayer"), "--state", "failed", "--json")
    assert [line["id"] for line in lines] == [failing]

    code, (status,), err = cli(capsys, "status", failing, "--config", node.config("relayer"), "--json")
    assert code == 0, err
    assert (status["state"], status["destination_status"], status["nonce"]) == ("failed", "Failed", 2)
    assert status["recipient"] == reverting.address and len(status["tx_hashes"]) == 1
    assert "Refused" in status["last_error"]

    code, lines, err = cli(capsys, "parked", "--config", node.config("relayer"), "--json")
    assert (code, lines) == (0, [])

    # Still reverting: the retry is refused before anything is sent.
    code, _, err = cli(capsys, "retry", failing, "--config", node.config("relayer"), "--json")
    assert code == 1 and "RetryFailed" in err and err.count("\n") == 1
    transact(stack.b.web3, reverting.functions.setMode(MODE_ACCEPT), stack.b.owner)
    code, lines, err = cli(capsys, "retry", failing, "--config", node.config("relayer"), "--json")
    assert code == 0, err
    assert lines[-1]["event"] == "delivered" and lines[-1]["state"] == "delivered"
    assert stack.b.status(sent[2][0]) == STATUS_DELIVERED
    assert reverting.functions.timesReceived(sent[2][0]).call() == 1

    # Another pass changes nothing: every message was delivered once.
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    assert code == 0, err
    assert events(lines, "submitted") == [] and events(lines, "seen") == []
    assert stack.b.recipient.functions.received().call() == received_before + 4
    code, (status,), _ = cli(capsys, "status", failing, "--config", node.config("relayer"), "--json")
    assert (status["state"], status["destination_status"], len(status["tx_hashes"])) == ("delivered", "Delivered", 2)


def test_a_paused_destination_parks_the_message_until_retry(
    chains: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    node = write_configs(stack, tmp_path / "paused", relayer_extra="max_attempts = 2\n")
    for key, value in node.env.items():
        monkeypatch.setenv(key, value)
    transact(stack.b.web3, stack.b.relay.functions.pause(), stack.b.guardian)
    message_id, _ = stack.send(stack.a, stack.b, payload=b"while paused")
    text_id = "0x" + message_id.hex()
    for index in (0, 1):
        assert cli(capsys, "validator", "--config", node.config(f"validator-{index}"), "--once", "--json")[0] == 0

    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    assert code == 0, err
    (backoff,) = events(lines, "backoff")
    assert backoff["id"] == text_id and backoff["attempts"] == 1 and "EnforcedPause" in backoff["error"]
    time.sleep(0.1)
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    (parked,) = events(lines, "parked")
    assert parked["attempts"] == 2 and "EnforcedPause" in parked["reason"]

    code, lines, err = cli(capsys, "parked", "--config", node.config("relayer"), "--json")
    assert code == 0 and [(line["id"], line["state"], line["attempts"]) for line in lines] == [(text_id, "parked", 2)]
    assert "after 2 attempts" in lines[0]["last_error"]
    # A parked message stays parked: another pass leaves it alone.
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    assert events(lines, "submitted") == [] and events(lines, "backoff") == []

    transact(stack.b.web3, stack.b.relay.functions.unpause(), stack.b.owner)
    code, lines, err = cli(capsys, "retry", text_id, "--config", node.config("relayer"), "--json")
    assert code == 0, err
    assert (lines[0]["event"], lines[0]["state"], lines[0]["attempts"]) == ("requeued", "pending", 0)
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    assert [line["id"] for line in events(lines, "delivered")] == [text_id]
    assert stack.b.status(message_id) == STATUS_DELIVERED
    code, lines, _ = cli(capsys, "parked", "--config", node.config("relayer"), "--json")
    assert lines == []


def run_cli_process(node: Node, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **node.env}
    env.pop("THINGLEDGER_BRIDGE_FAILPOINT", None)
    if failpoint:
        env["THINGLEDGER_BRIDGE_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "thingledger_bridge", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "failpoint",
    ["relayer.before-cursor-commit", "relayer.after-submission-recorded:2", "relayer.after-broadcast:2"],
)
def test_a_relayer_killed_at_a_failpoint_delivers_each_message_once(
    chains: Any, tmp_path: Path, failpoint: str
) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    node = write_configs(stack, tmp_path / "crash")
    sent = [stack.send(stack.a, stack.b, payload=f"crash {index}".encode())[0] for index in range(4)]
    for index in (1, 2):
        result = run_cli_process(node, "validator", "--config", node.config(f"validator-{index}"), "--once")
        assert result.returncode == 0, result.stderr
    killed = run_cli_process(node, "run", "--config", node.config("relayer"), "--once", "--json", failpoint=failpoint)
    assert killed.returncode == -9, killed.stderr
    restarted = run_cli_process(node, "run", "--config", node.config("relayer"), "--once", "--json")
    assert restarted.returncode == 0, restarted.stderr
    for message_id in sent:
        assert stack.b.status(message_id) == STATUS_DELIVERED
        assert stack.b.recipient.functions.timesReceived(message_id).call() == 1
    listed = run_cli_process(node, "messages", "--config", node.config("relayer"), "--json")
    states = [json.loads(line)["state"] for line in listed.stdout.splitlines()]
    assert states == ["delivered"] * 4


# anvil's default account 6: a second relayer.
SECOND_RELAYER_KEY = "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e"


def test_two_relayers_racing_deliver_each_message_once(chains: Any, tmp_path: Path) -> None:
    stack = build_relay_stack(chains.a, chains.b)
    first = write_configs(stack, tmp_path / "first")
    second = write_configs(stack, tmp_path / "second")
    second.env["RELAYER_KEY"] = SECOND_RELAYER_KEY
    # One signature store for both relayers: the second reads the first's validators' signatures.
    (second.folder / "relayer.toml").write_text(
        (second.folder / "relayer.toml")
        .read_text()
        .replace('signature_store = "signatures"', f'signature_store = "{first.folder / "signatures"}"')
    )
    sent = [stack.send(stack.a, stack.b, payload=f"race {index}".encode())[0] for index in range(6)]
    for index in (0, 1):
        assert (
            run_cli_process(first, "validator", "--config", first.config(f"validator-{index}"), "--once").returncode
            == 0
        )
    env_first = {**os.environ, **first.env}
    env_second = {**os.environ, **second.env}
    command = [sys.executable, "-m", "thingledger_bridge", "run", "--once", "--json", "--config"]
    racers = [
        subprocess.Popen(
            [*command, first.config("relayer")],
            env=env_first,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [*command, second.config("relayer")],
            env=env_second,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], [err for _, err in outputs]
    for message_id in sent:
        assert stack.b.status(message_id) == STATUS_DELIVERED
        assert stack.b.recipient.functions.timesReceived(message_id).call() == 1
    for node in (first, second):
        listed = run_cli_process(node, "messages", "--config", node.config("relayer"), "--json")
        assert [json.loads(line)["state"] for line in listed.stdout.splitlines()] == ["delivered"] * 6


def test_a_rate_limited_lane_waits_for_retry_after_without_counting_an_attempt(
    chains: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = build_relay_stack(chains.a, chains.b, capacity=1, refill_per_hour=1)
    node = write_configs(stack, tmp_path / "limited")
    for key, value in node.env.items():
        monkeypatch.setenv(key, value)
    sent = [stack.send(stack.a, stack.b, payload=f"limited {index}".encode())[0] for index in range(3)]
    for index in (0, 1):
        assert cli(capsys, "validator", "--config", node.config(f"validator-{index}"), "--once", "--json")[0] == 0
    before = time.time()
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    assert code == 0, err
    # The bucket holds one token: one delivery is sent, the others are not (no transaction wasted on a revert);
    # the next is told RateLimited by its estimate and waits, and the lane waits with it.
    assert [line["id"] for line in events(lines, "submitted")] == ["0x" + sent[0].hex()]
    assert [line["id"] for line in events(lines, "delivered")] == ["0x" + sent[0].hex()]
    (limited,) = events(lines, "rate-limited")
    assert limited["id"] == "0x" + sent[1].hex() and 3000 < limited["retry_after"] <= 3600
    # Another run sends nothing: the waiting message is not due, the one behind it learns the same wait.
    code, lines, err = cli(capsys, "run", "--config", node.config("relayer"), "--once", "--json")
    assert code == 0, err
    assert events(lines, "submitted") == []
    assert [line["id"] for line in events(lines, "rate-limited")] == ["0x" + sent[2].hex()]
    code, (status,), _ = cli(capsys, "status", "0x" + sent[1].hex(), "--config", node.config("relayer"), "--json")
    assert (status["state"], status["attempts"], status["destination_status"]) == ("pending", 0, "None")
    assert status["next_attempt_at"] >= before + 3000 and "RateLimited" in status["last_error"]
    assert stack.b.status(sent[1]) == 0 and stack.b.status(sent[2]) == 0


def test_a_recorded_transaction_whose_nonce_was_used_elsewhere_is_replaced(chains: Any, tmp_path: Path) -> None:
    from thingledger_bridge.relayer_store import RelayerStore

    stack = build_relay_stack(chains.a, chains.b)
    node = write_configs(stack, tmp_path / "nonce")
    message_id, _ = stack.send(stack.a, stack.b, payload=b"nonce")
    for index in (0, 1):
        assert (
            run_cli_process(node, "validator", "--config", node.config(f"validator-{index}"), "--once").returncode == 0
        )
    killed = run_cli_process(
        node, "run", "--config", node.config("relayer"), "--once", failpoint="relayer.after-submission-recorded"
    )
    assert killed.returncode == -9
    store = RelayerStore(node.folder / "relayer.sqlite")
    (recorded,) = store.submissions("0x" + message_id.hex())
    store.close()
    assert recorded.status == "recorded"
    web3 = stack.b.web3
    assert web3.eth.get_transaction_count(RELAYER_ADDRESS) == recorded.account_nonce
    # Someone else uses the relayer's account (anvil's accounts are unlocked): the recorded nonce is taken.
    web3.eth.wait_for_transaction_receipt(
        web3.eth.send_transaction({"from": RELAYER_ADDRESS, "to": stack.b.owner, "value": 1})
    )
    restarted = run_cli_process(node, "run", "--config", node.config("relayer"), "--once", "--json")
    assert restarted.returncode == 0, restarted.stderr
    lines = [json.loads(line) for line in restarted.stdout.splitlines()]
    assert [line["id"] for line in events(lines, "requeued")] == ["0x" + message_id.hex()]
    assert stack.b.status(message_id) == STATUS_DELIVERED
    assert stack.b.recipient.functions.timesReceived(message_id).call() == 1
    store = RelayerStore(node.folder / "relayer.sqlite")
    first, second = store.submissions("0x" + message_id.hex())
    store.close()
    assert (first.status, second.status) == ("dropped", "mined")
    assert second.account_nonce == recorded.account_nonce + 1
