"""Helpers of the bridge tests: relays deployed on local anvil chains, messages sent and signed with
eth-account (independently of the node's own code), revert data decoded by selector.

(A module with a unique name, not conftest.py: test modules import it directly.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.datastructures import SignedMessage
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from thingledger_bridge.devnet import Artifact, LocalChain, deploy, load_ape_artifact
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_FOLDER = REPO_ROOT / ".build"

CHAIN_A_ID = 1001
CHAIN_B_ID = 1002
CHAIN_C_ID = 1003

DOMAIN_NAME = "thingledger CrossChainRelay"
DOMAIN_VERSION = "1"
MESSAGE_VERSION = 1
# The EIP-712 type of a message, as ICrossChainRelay documents it (field order matters).
MESSAGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("version", "uint8"),
    ("nonce", "uint64"),
    ("srcChainId", "uint64"),
    ("srcRelay", "address"),
    ("sender", "address"),
    ("dstChainId", "uint64"),
    ("dstRelay", "address"),
    ("recipient", "address"),
    ("gasLimit", "uint32"),
    ("payload", "bytes"),
)
DOMAIN_FIELDS = (
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
)

# secp256k1's group order: a signature (r, s) is also valid as (r, n - s) with the other v.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

GENEROUS_CAPACITY = 1_000_000
GENEROUS_REFILL_PER_HOUR = 1_000_000
DEFAULT_GAS_LIMIT = 200_000
CALL_RESERVE = 15_000
STATUS_NONE, STATUS_DELIVERED, STATUS_FAILED = 0, 1, 2
# RelayRecipientMock.Mode
MODE_ACCEPT, MODE_REVERT, MODE_REVERT_BOMB, MODE_RETURN_BOMB, MODE_BURN_GAS, MODE_REENTER = range(6)
ETHER = 10**18

Message = dict[str, Any]


# ---------------------------------------------------------------------------------------------- keys


#: The fields of a message in `thingledger-bridge messages|status|parked --json` (bridge/README.md).
MESSAGE_JSON_FIELDS = frozenset({
    "id", "src_chain_id", "dst_chain_id", "nonce", "sender", "recipient", "state", "attempts", "next_attempt_at",
    "last_error", "tx_hashes", "destination_status",
})


def fixed_key(label: str) -> LocalAccount:
    """A private key derived from a fixed label: the same account in every run."""
    account: LocalAccount = Account.from_key(keccak(text=f"thingledger bridge tests: {label}"))
    return account


def sorted_by_address(accounts: Iterable[LocalAccount]) -> list[LocalAccount]:
    """`accounts` in ascending address order (the order `deliver` wants signatures in)."""
    return sorted(accounts, key=lambda account: int(account.address, 16))


def make_validators(count: int, label: str = "validator") -> list[LocalAccount]:
    """`count` fixed validator keys, sorted by address."""
    return sorted_by_address(fixed_key(f"{label}-{index}") for index in range(1, count + 1))


def fund(web3: Web3, address: str, wei: int = 100 * ETHER) -> None:
    """Gives `address` a balance of `wei` on an anvil chain."""
    web3.provider.make_request("anvil_setBalance", [address, hex(wei)])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- EIP-712


def _typed_data(message: Message, chain_id: int, relay: str) -> dict[str, Any]:
    return {
        "types": {
            "EIP712Domain": list(DOMAIN_FIELDS),
            "Message": [{"name": name, "type": kind} for name, kind in MESSAGE_FIELDS],
        },
        "primaryType": "Message",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": relay,
        },
        "message": {name: message[name] for name, _ in MESSAGE_FIELDS},
    }


def _typed_hash(message: Message, chain_id: int, relay: str) -> bytes:
    signable = encode_typed_data(full_message=_typed_data(message, chain_id, relay))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def message_id(message: Message) -> bytes:
    """The message's id: its EIP-712 hash in its SOURCE relay's domain."""
    return _typed_hash(message, message["srcChainId"], message["srcRelay"])


def delivery_digest(message: Message, *, chain_id: int | None = None, relay: str | None = None) -> bytes:
    """What validators sign: the message's EIP-712 hash in its destination relay's domain (or another
    domain, for replay tests)."""
    return _typed_hash(
        message, message["dstChainId"] if chain_id is None else chain_id, relay or message["dstRelay"]
    )


def signature_of(
    message: Message, signer: LocalAccount, *, chain_id: int | None = None, relay: str | None = None
) -> bytes:
    """`signer`'s 65-byte r‖s‖v signature of the message in the destination relay's domain (or the domain
    given)."""
    full = _typed_data(
        message, message["dstChainId"] if chain_id is None else chain_id, relay or message["dstRelay"]
    )
    signed: SignedMessage = Account.sign_message(encode_typed_data(full_message=full), signer.key)
    signature = bytes(signed.signature)
    assert len(signature) == 65 and signature[64] in (27, 28)
    return signature


def sign_delivery(
    message: Message, signers: Sequence[LocalAccount], *, chain_id: int | None = None, relay: str | None = None
) -> bytes:
    """The signatures of `signers`, concatenated in strictly ascending signer order."""
    return b"".join(
        signature_of(message, signer, chain_id=chain_id, relay=relay) for signer in sorted_by_address(signers)
    )


def recover_signer(
    message: Message, signature: bytes, *, chain_id: int | None = None, relay: str | None = None
) -> str:
    """Who `signature` recovers to for the message in its destination relay's domain (or the domain given):
    for a signature of another message, an unrelated address."""
    full = _typed_data(
        message, message["dstChainId"] if chain_id is None else chain_id, relay or message["dstRelay"]
    )
    return str(Account.recover_message(encode_typed_data(full_message=full), signature=signature))


def malleate(signature: bytes) -> bytes:
    """The other valid ECDSA signature of the same digest: s -> n - s (a high s), v flipped."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def message_tuple(message: Message) -> tuple[Any, ...]:
    """The message as the ABI tuple `deliver` and `retry` take."""
    return tuple(message[name] for name, _ in MESSAGE_FIELDS)


def with_changes(message: Message, **changes: Any) -> Message:
    """A copy of `message` with some fields changed."""
    copy = dict(message)
    copy.update(changes)
    return copy


# ---------------------------------------------------------------------------------------------- errors


def _canonical_type(entry: dict[str, Any]) -> str:
    kind: str = entry["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(component) for component in entry["components"])
        return f"({inner}){kind[len('tuple'):]}"
    return kind


@dataclass(frozen=True)
class DecodedError:
    """A custom error decoded from revert data."""

    name: str
    args: tuple[Any, ...]


class ErrorDecoder:
    """Decodes revert data by its 4-byte selector against the custom errors of an ABI."""

    def __init__(self, abi: Sequence[dict[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str]]] = {}
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = [_canonical_type(item) for item in entry.get("inputs", [])]
            selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
            self._errors[selector] = (entry["name"], types)
        # Solidity's built-in Error(string) and Panic(uint256).
        self._errors.setdefault(keccak(text="Error(string)")[:4], ("Error", ["string"]))
        self._errors.setdefault(keccak(text="Panic(uint256)")[:4], ("Panic", ["uint256"]))

    def decode(self, data: bytes) -> DecodedError:
        if len(data) < 4:
            raise AssertionError(f"revert data {data.hex()!r} holds no selector")
        known = self._errors.get(bytes(data[:4]))
        if known is None:
            raise AssertionError(f"revert data {data.hex()!r} matches no error of the ABI")
        name, types = known
        values = abi_decode(types, bytes(data[4:]))
        # Addresses checksummed, so they compare equal to the accounts' addresses.
        return DecodedError(
            name,
            tuple(
                Web3.to_checksum_address(value) if kind == "address" else value for kind, value in zip(types, values)
            ),
        )


# ---------------------------------------------------------------------------------------------- relays


def artifact(name: str) -> Artifact:
    return load_ape_artifact(name, BUILD_FOLDER)


def wait(web3: Web3, tx_hash: bytes) -> TxReceipt:
    return web3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)


def transact(web3: Web3, call: Any, sender: str, *, gas: int | None = None) -> TxReceipt:
    """Sends contract call `call` from unlocked `sender` (gas estimated unless given); its receipt, which must
    show success."""
    options: dict[str, Any] = {"from": sender}
    if gas is not None:
        options["gas"] = gas
    receipt = wait(web3, call.transact(options))
    assert receipt["status"] == 1, f"transaction {receipt['transactionHash'].hex()} reverted"
    return receipt


@dataclass(frozen=True)
class Reverted:
    """A mined transaction that reverted, and the custom error it reverted with."""

    receipt: TxReceipt
    error: DecodedError


def mined_revert_data(web3: Web3, tx_hash: bytes) -> bytes:
    """The revert data of a mined transaction, from anvil's call tracer (what the transaction itself returned,
    on the block it ran in)."""
    trace = rpc(web3, "debug_traceTransaction", HexBytes(tx_hash).to_0x_hex(), {"tracer": "callTracer"})
    assert trace.get("error"), f"transaction {HexBytes(tx_hash).to_0x_hex()} did not revert: {trace}"
    return bytes(HexBytes(trace.get("output") or "0x"))


def expect_revert(
    web3: Web3, contract: Contract, call: Any, sender: str, error: str, *args: Any, gas: int = 3_000_000
) -> Reverted:
    """Sends `call` as a real transaction with a fixed gas (no estimation), requires a mined receipt with
    status 0 and custom error `error` (decoded by selector from `contract`'s ABI) with exactly `args`
    (omit args to check only the name; the decoded error is returned)."""
    transaction = call.build_transaction({"from": sender, "gas": gas})
    tx_hash = web3.eth.send_transaction(transaction)
    receipt = wait(web3, tx_hash)
    assert receipt["status"] == 0, f"expected {error}{args}, but the transaction succeeded"
    decoded = ErrorDecoder(contract.abi).decode(mined_revert_data(web3, tx_hash))
    assert decoded.name == error, f"expected {error}{args}, got {decoded.name}{decoded.args}"
    if args:
        assert decoded.args == tuple(args), f"expected {error}{args}, got {decoded.name}{decoded.args}"
    return Reverted(receipt, decoded)


def encode_error(contract: Contract, name: str, *args: Any) -> bytes:
    """The revert data of custom error `name(args)` of `contract`'s ABI (selector and ABI-encoded arguments)."""
    entry = next(item for item in contract.abi if item.get("type") == "error" and item["name"] == name)
    types = [_canonical_type(item) for item in entry.get("inputs", [])]
    return keccak(text=f"{name}({','.join(types)})")[:4] + abi_encode(types, list(args))


def deploy_relay(
    chain: LocalChain, validators: Sequence[str], threshold: int, *, owner: str, guardian: str
) -> Contract:
    """A CrossChainRelay on `chain` owned by `owner`."""
    return deploy(chain.web3, artifact("CrossChainRelay"), owner, guardian, list(validators), threshold, sender=owner)


def created_address(deployer: str, nonce: int) -> str:
    """The address of the contract `deployer` creates with its transaction number `nonce`."""
    import rlp

    return Web3.to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])


def deploy_relay_at(chain: LocalChain, address: str, validators: Sequence[str], threshold: int) -> Contract:
    """A CrossChainRelay on `chain` at `address`, which must be one that anvil's first account created (or will
    create) on some chain: that account's nonce is set so that its next deployment lands there. For a relay at
    the same address as one on another chain."""
    deployer, guardian = chain.accounts[0], chain.accounts[1]
    nonce = next((n for n in range(10_000) if created_address(deployer, n) == address), None)
    assert nonce is not None, f"{address} was not created by {deployer}"
    rpc(chain.web3, "anvil_setNonce", deployer, hex(nonce))
    relay = deploy_relay(chain, validators, threshold, owner=deployer, guardian=guardian)
    assert relay.address == address
    return relay


def deploy_recipient(chain: LocalChain, relay: str, trusted: Iterable[tuple[int, str]], *, deployer: str) -> Contract:
    """A RelayRecipientMock for `relay` trusting each (source chain, sender) of `trusted`."""
    mock = deploy(chain.web3, artifact("RelayRecipientMock"), relay, sender=deployer)
    for src_chain_id, sender in trusted:
        transact(chain.web3, mock.functions.setTrusted(src_chain_id, sender, True), deployer)
    return mock


def trust(
    side: RelaySide, chain_id: int, relay: str, *, capacity: int = GENEROUS_CAPACITY,
    refill_per_hour: int = GENEROUS_REFILL_PER_HOUR,
) -> None:
    """`side`'s relay trusts `relay` as chain `chain_id`'s relay."""
    transact(side.web3, side.relay.functions.setRemote(chain_id, relay, capacity, refill_per_hour), side.owner)


@dataclass
class RelaySide:
    """One chain of a relay stack: its relay, a recipient mock and the anvil accounts that act there."""

    chain: LocalChain
    relay: Contract
    recipient: Contract
    owner: ChecksumAddress
    guardian: ChecksumAddress
    sender: ChecksumAddress  # sends test messages (an unlocked EOA; recipients trust it)
    relayer: ChecksumAddress  # submits deliveries in the contract tests

    @property
    def web3(self) -> Web3:
        return self.chain.web3

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def status(self, message_id: bytes) -> int:
        return int(self.relay.functions.messageStatus(message_id).call())

    def allow_sender(self, sender: str, allowed: bool = True) -> None:
        """The relay's owner lets `sender` send (or stops letting it)."""
        transact(self.web3, self.relay.functions.setSenderAllowed(sender, allowed), self.owner)

    def deploy_recipient(self, trusted: Iterable[tuple[int, str]]) -> Contract:
        """A fresh RelayRecipientMock for this side's relay."""
        return deploy_recipient(self.chain, self.relay.address, trusted, deployer=self.owner)

    def logs(self, event: str, message_id: bytes | None = None, from_block: int = 0) -> list[Any]:
        """Decoded `event` logs of this relay over the whole chain (or from `from_block`), by id if given."""
        filters: dict[str, Any] = {"id": message_id} if message_id is not None else {}
        return list(
            getattr(self.relay.events, event).get_logs(
                from_block=from_block, to_block="latest", argument_filters=filters
            )
        )


@dataclass
class RelayStack:
    """Two chains, each with a CrossChainRelay trusting the other's, the same validator set on both."""

    a: RelaySide
    b: RelaySide
    validators: list[LocalAccount]  # sorted by address
    threshold: int
    extra: dict[int, RelaySide] = field(default_factory=dict)

    @property
    def sides(self) -> list[RelaySide]:
        return [self.a, self.b, *self.extra.values()]

    def side(self, which: RelaySide | int) -> RelaySide:
        if isinstance(which, RelaySide):
            return which
        for side in self.sides:
            if side.chain_id == which:
                return side
        raise KeyError(f"no relay on chain {which}")

    def send(
        self,
        src: RelaySide | int,
        dst: RelaySide | int,
        recipient: str | None = None,
        payload: bytes = b"",
        gas_limit: int = DEFAULT_GAS_LIMIT,
        *,
        sender: str | None = None,
    ) -> tuple[bytes, Message]:
        """Sends a message from `src` to `dst` (recipient: `dst`'s mock) and returns (id, message) as read
        from the MessageSent event of the receipt."""
        source, destination = self.side(src), self.side(dst)
        target = recipient or destination.recipient.address
        call = source.relay.functions.send(destination.chain_id, target, gas_limit, payload)
        receipt = transact(source.web3, call, sender or source.sender)
        return sent_message(source.relay, receipt)

    def sign(self, message: Message, signers: Sequence[LocalAccount] | None = None) -> bytes:
        """Signatures of `signers` (default: the first `threshold` validators), ascending by signer."""
        return sign_delivery(message, list(signers) if signers is not None else self.validators[: self.threshold])

    def deliver(
        self,
        message: Message,
        signatures: bytes | None = None,
        *,
        sender: str | None = None,
        gas: int | None = None,
    ) -> TxReceipt:
        """Delivers `message` on its destination (signed by the first `threshold` validators unless
        `signatures` is given); the receipt, which must show success (the recipient may still have failed)."""
        destination = self.side(message["dstChainId"])
        call = destination.relay.functions.deliver(message_tuple(message), signatures or self.sign(message))
        return transact(destination.web3, call, sender or destination.relayer, gas=gas)


def receipt_events(contract: Contract, event: str, receipt: TxReceipt) -> list[Any]:
    """The decoded `event` logs of `contract` in `receipt` (other contracts' logs skipped)."""
    return list(getattr(contract.events, event)().process_receipt(receipt, errors=DISCARD))


def sent_message(relay: Contract, receipt: TxReceipt) -> tuple[bytes, Message]:
    """The (id, message) of the one MessageSent log of `relay` in `receipt`."""
    events = relay.events.MessageSent().process_receipt(receipt, errors=DISCARD)
    assert len(events) == 1, f"expected one MessageSent, got {len(events)}"
    event = events[0]
    raw = event["args"]["message"]
    message: Message = {name: raw[name] for name, _ in MESSAGE_FIELDS}
    message["payload"] = bytes(message["payload"])
    for name in ("srcRelay", "sender", "dstRelay", "recipient"):
        message[name] = Web3.to_checksum_address(message[name])
    return bytes(event["args"]["id"]), message


def build_relay_stack(
    chain_a: LocalChain,
    chain_b: LocalChain,
    *,
    validators: Sequence[LocalAccount] | None = None,
    threshold: int = 2,
    capacity: int = GENEROUS_CAPACITY,
    refill_per_hour: int = GENEROUS_REFILL_PER_HOUR,
) -> RelayStack:
    """Deploys a fresh relay pair (and a recipient mock on each chain trusting the other chain's sender).
    Accounts (anvil's defaults, the same index on both chains): 0 owner, 1 guardian, 2 sender (allowed to
    send on its relay), 3 relayer."""
    signers = sorted_by_address(validators) if validators is not None else make_validators(3)
    addresses = [signer.address for signer in signers]
    chains = (chain_a, chain_b)
    relays = [
        deploy_relay(chain, addresses, threshold, owner=chain.accounts[0], guardian=chain.accounts[1])
        for chain in chains
    ]
    sides: list[RelaySide] = []
    for index, chain in enumerate(chains):
        owner, guardian, sender, relayer = chain.accounts[:4]
        other_chain, other_relay = chains[1 - index], relays[1 - index]
        transact(
            chain.web3,
            relays[index].functions.setRemote(other_chain.chain_id, other_relay.address, capacity, refill_per_hour),
            owner,
        )
        transact(chain.web3, relays[index].functions.setSenderAllowed(sender, True), owner)
        # The other chain's sender is the same anvil account index (anvil's default accounts).
        recipient = deploy_recipient(chain, relays[index].address, [(other_chain.chain_id, other_chain.accounts[2])], deployer=owner)
        sides.append(RelaySide(chain, relays[index], recipient, owner, guardian, sender, relayer))
    a, b = sides
    return RelayStack(a=a, b=b, validators=signers, threshold=threshold)


# ---------------------------------------------------------------------------------------------- chain control


def rpc(web3: Web3, method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (anvil's extensions); fails on an error response."""
    response = web3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, f"{method}: {response['error']}"
    return response.get("result")


def mine(web3: Web3, blocks: int = 1) -> None:
    for _ in range(blocks):
        rpc(web3, "evm_mine")


def increase_time(web3: Web3, seconds: int) -> None:
    """Moves the chain's clock forward and mines a block with the new time."""
    rpc(web3, "evm_increaseTime", seconds)
    rpc(web3, "evm_mine")


def call_trace(web3: Web3, tx_hash: bytes) -> dict[str, Any]:
    """anvil's call tracer output for a mined transaction (frames with their gas used, input and output)."""
    trace: dict[str, Any] = rpc(web3, "debug_traceTransaction", HexBytes(tx_hash).to_0x_hex(), {"tracer": "callTracer"})
    return trace


def subcalls_to(trace: dict[str, Any], address: str) -> list[dict[str, Any]]:
    """Every frame of `trace` (at any depth) that calls `address`."""
    found: list[dict[str, Any]] = []
    for frame in trace.get("calls", []) or []:
        if str(frame.get("to", "")).lower() == address.lower():
            found.append(frame)
        found.extend(subcalls_to(frame, address))
    return found


# ---------------------------------------------------------------------------------------------- the node under test

NODE_KEY_ENV = "BRIDGE_TEST_PRIVATE_KEY"  # each node process gets its own key in this variable
FAILPOINT_ENV = "THINGLEDGER_BRIDGE_FAILPOINT"
NODE_POLL_INTERVAL = 0.1


def node_command() -> list[str]:
    """How to start the node's CLI: the venv's console script."""
    script = Path(sys.executable).parent / "thingledger-bridge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "thingledger_bridge"]


def node_env(private_key: str | None = None, failpoint: str | None = None) -> dict[str, str]:
    """The environment of a node process: ours without any THINGLEDGER_* setting, plus its key and failpoint."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("THINGLEDGER_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if private_key is not None:
        env[NODE_KEY_ENV] = private_key
    if failpoint is not None:
        env[FAILPOINT_ENV] = failpoint
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a --json output: one per line (a line holding a list contributes its items)."""
    documents: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        value = json.loads(line)
        documents.extend(value if isinstance(value, list) else [value])
    return documents


class NodeProcess:
    """A long-running node command (validator or run) writing its output to files."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.args = list(args)
        self.stdout_path = folder / f"{name}.stdout"
        self.stderr_path = folder / f"{name}.stderr"
        with self.stdout_path.open("ab") as stdout, self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [*node_command(), *self.args], stdout=stdout, stderr=stderr, env=env, stdin=subprocess.DEVNULL
            )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float) -> int:
        """Waits for the process to exit by itself; its exit code (fails after `timeout` seconds)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:.0f} s; {self.tail()}") from None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, then SIGKILL if it has not exited within `timeout` seconds; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON events it printed so far (a last, partly written line is skipped)."""
        events: list[dict[str, Any]] = []
        for line in self.stdout().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                events.append(value)
        return events

    def tail(self) -> str:
        return f"{self.name} stdout: ...{self.stdout()[-1500:]!r} stderr: ...{self.stderr()[-1500:]!r}"


@dataclass
class NodeResult:
    """A finished one-shot node command."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> list[dict[str, Any]]:
        assert self.returncode == 0, f"{' '.join(self.args)}: exit {self.returncode}: {self.stderr.strip()}"
        return json_lines(self.stdout)


def run_node(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> NodeResult:
    """Runs a one-shot node command to its end."""
    process = subprocess.run(
        [*node_command(), *args], capture_output=True, text=True, env=env or node_env(), timeout=timeout
    )
    return NodeResult(list(args), process.returncode, process.stdout, process.stderr)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Polls `condition` until it holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class BlockMiner:
    """Mines a block on each of some anvil chains every `interval` seconds in a background thread, so
    confirmations accrue while the node runs (the chains otherwise mine only on transactions)."""

    def __init__(self, chains: Sequence[LocalChain], interval: float = 0.25) -> None:
        # Own providers: web3's HTTP session is not shared with the test's thread.
        self._web3s = [Web3(Web3.HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 10})) for chain in chains]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="block-miner", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for web3 in self._web3s:
                try:
                    web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - a chain being stopped at the end of a test
                    pass

    def start(self) -> BlockMiner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TcpProxy:
    """A TCP forwarder on a fixed loopback port to an upstream port, which the test can take down (the port
    refuses connections and open ones are cut) and bring back, to simulate an RPC outage."""

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        from thingledger_bridge.devnet import free_port

        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Closes the port and cuts every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections.update((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for side in (source, target):
                try:
                    side.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


class BridgeWorld:
    """A fresh relay pair on the session's two chains and the node's processes around it: configuration
    files in `folder` (per the spec: one TOML per process, keys in an environment variable, a shared
    signature store), validators 2-of-3, relayers with their own keys and databases."""

    def __init__(self, stack: RelayStack, folder: Path, *, confirmations: int = 1) -> None:
        self.stack = stack
        self.folder = folder
        self.confirmations = confirmations
        self.start_blocks = {side.chain_id: int(side.web3.eth.block_number) for side in (stack.a, stack.b)}
        self.processes: list[NodeProcess] = []
        self.relayer_keys: dict[str, LocalAccount] = {}
        folder.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ configuration

    def write_config(
        self,
        name: str,
        *,
        validator: int | None = None,
        relayer: str | None = None,
        rpc_urls: dict[int, str] | None = None,
        relayer_options: dict[str, Any] | None = None,
    ) -> Path:
        """Writes `<name>.toml`: both chains, and a [validator] or [relayer] section."""
        lines = ['signature_store = "signatures"', ""]
        for side in (self.stack.a, self.stack.b):
            url = (rpc_urls or {}).get(side.chain_id, side.chain.rpc_url)
            chain = {
                "name": f"chain-{side.chain_id}",
                "chain_id": side.chain_id,
                "rpc_url": url,
                "relay": side.relay.address,
                "confirmations": self.confirmations,
                "start_block": self.start_blocks[side.chain_id],
                "poll_interval": NODE_POLL_INTERVAL,
            }
            lines += ["[[chains]]", *(f"{key} = {_toml_value(value)}" for key, value in chain.items()), ""]
        if validator is not None:
            lines += [
                "[validator]", f'private_key_env = "{NODE_KEY_ENV}"', f'database = "state/validator-{validator}.sqlite"', "",
            ]
        if relayer is not None:
            options = {
                "max_attempts": 8, "backoff_initial": 0.2, "backoff_max": 1.0, "receipt_timeout": 5.0,
                **(relayer_options or {}),
            }
            lines += ["[relayer]", f'private_key_env = "{NODE_KEY_ENV}"', f'database = "state/{relayer}.sqlite"']
            lines += [f"{key} = {_toml_value(value)}" for key, value in options.items()]
            lines.append("")
        path = self.folder / f"{name}.toml"
        path.write_text("\n".join(lines))
        return path

    def relayer_key(self, name: str) -> LocalAccount:
        """Relayer `name`'s key, funded on both chains."""
        if name not in self.relayer_keys:
            key = fixed_key(f"relayer {name}")
            for side in (self.stack.a, self.stack.b):
                fund(side.web3, key.address)
            self.relayer_keys[name] = key
        return self.relayer_keys[name]

    # ------------------------------------------------------------------ processes

    def start_validator(self, index: int, *, failpoint: str | None = None) -> NodeProcess:
        """Validator `index` (0-2, the stack's validators by address) as a long-running process."""
        config = self.write_config(f"validator-{index}", validator=index)
        key = self.stack.validators[index].key.to_0x_hex()
        return self._start(f"validator-{index}", ["validator", "--config", str(config), "--json"], key, failpoint)

    def start_validators(self, indexes: Iterable[int] = (0, 1, 2)) -> list[NodeProcess]:
        return [self.start_validator(index) for index in indexes]

    def start_relayer(
        self,
        name: str = "relayer",
        *,
        failpoint: str | None = None,
        rpc_urls: dict[int, str] | None = None,
        relayer_options: dict[str, Any] | None = None,
    ) -> NodeProcess:
        """Relayer `name` (its own key and database) running until stopped."""
        config = self.write_config(name, relayer=name, rpc_urls=rpc_urls, relayer_options=relayer_options)
        key = self.relayer_key(name).key.to_0x_hex()
        return self._start(name, ["run", "--config", str(config), "--json"], key, failpoint)

    def _start(self, name: str, args: list[str], key: str, failpoint: str | None) -> NodeProcess:
        runs = sum(1 for process in self.processes if process.name.startswith(name + "#"))
        process = NodeProcess(f"{name}#{runs + 1}", args, node_env(key, failpoint), self.folder)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Stops (SIGINT, then SIGKILL) every process this world started that still runs."""
        for process in self.processes:
            if process.running:
                process.process.send_signal(signal.SIGINT)
        for process in self.processes:
            process.stop(timeout=10)

    # ------------------------------------------------------------------ one-shot commands

    def cli(self, command: str, *args: str, relayer: str = "relayer") -> NodeResult:
        """`thingledger-bridge <command> args --config <relayer's config, with direct RPC URLs> --json`."""
        config = self.write_config(f"{relayer}-query", relayer=relayer)
        return run_node([command, *args, "--config", str(config), "--json"], node_env(self.relayer_key(relayer).key.to_0x_hex()))

    def messages(self, relayer: str = "relayer") -> dict[str, dict[str, Any]]:
        """`messages --json` of relayer `relayer`, by id (lower-case hex)."""
        return {row["id"].lower(): row for row in self.cli("messages", relayer=relayer).json()}

    def status(self, message_id: bytes, relayer: str = "relayer") -> dict[str, Any]:
        [row] = self.cli("status", hex_id(message_id), relayer=relayer).json()
        return row

    # ------------------------------------------------------------------ messages

    def send_many(
        self, count: int, *, recipient: str | None = None, label: str = "message", gas_limit: int = 150_000
    ) -> list[tuple[bytes, Message]]:
        """`count` messages from chain 1001 to chain 1002."""
        return [
            self.stack.send(self.stack.a, self.stack.b, recipient, f"{label} {n}".encode(), gas_limit)
            for n in range(count)
        ]

    def all_delivered(self, ids: Iterable[bytes]) -> bool:
        return all(self.stack.b.status(message_id_) == STATUS_DELIVERED for message_id_ in ids)

    def signature_files(self, message_id: bytes) -> list[Path]:
        """The signature files of `message_id` in the shared store, any validator."""
        return sorted((self.folder / "signatures").glob(f"*/{hex_id(message_id)}.json"))


def hex_id(message_id: bytes) -> str:
    return "0x" + bytes(message_id).hex()


def delivered_log_count(side: RelaySide, message_id: bytes) -> int:
    """MessageDelivered logs of `message_id` on `side`'s relay over the whole chain."""
    return len(side.logs("MessageDelivered", message_id, from_block=0))


class BusyRpcServer:
    """A JSON-RPC endpoint on loopback that answers HTTP 503 to its first `busy` requests, then every call with
    0x2a, and a batch with each item's id in hex, in reverse order (clients must match answers by id).
    Use as a context manager; `requests` counts every request and `busy_left` the 503s still to come."""

    def __init__(self, busy: int = 2) -> None:
        self.busy_left = busy
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                endpoint.requests += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if endpoint.busy_left > 0:
                    endpoint.busy_left -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                answer: Any
                if isinstance(body, list):
                    answer = [{"jsonrpc": "2.0", "id": item["id"], "result": hex(item["id"])} for item in reversed(body)]
                else:
                    answer = {"jsonrpc": "2.0", "id": body["id"], "result": "0x2a"}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> BusyRpcServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
