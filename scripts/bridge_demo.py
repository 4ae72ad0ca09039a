"""The device mirror of issue 4 on two local chains: a device registered and sold on a public chain (A) is
mirrored to the admission list of its owner's permissioned chain (B) through CrossChainRelay and the
bridging node; its owner change and its decommissioning on A take effect on B.

    ape run bridge_demo     (`./run.sh demo bridge`; `./run.sh demo` tells it after the other two stories)

The script starts both chains itself (anvil: A is chain 1001 with a block a second, whose logs the node uses
2 blocks deep; B is chain 1002, mining each transaction at once, like a permissioned chain with instant
finality), deploys DeviceRegistry, CrossChainRelay and DeviceMirrorPublisher on A and CrossChainRelay and
DeviceMirror on B, connects them, and starts three validator processes (2 of 3 must sign) and a relayer
through the `thingledger-bridge` command line. Then a manufacturer provisions a device (device-signed) and
sells it to a cold-chain operator, who activates it: published on A, relayed, B admits the device. The
operator sells it on: B shows the new owner. The new owner decommissions it: B no longer admits it. Last, the
relayer's own account of the messages (`thingledger-bridge messages --json`). Chains and node processes are
stopped at the end, also on errors. Configurations, databases, signatures and node logs stay in
demo-output/bridge/.

Ape does not connect to a network for this script: `cli` is a plain click command (ape's ConnectedProviderCommand
is what would start one).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import click
from rich.console import Console
from rich.table import Table

# Scripts are loaded by file, so the modules beside this one come through sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _demo_story import DemoFailure, Story  # noqa: E402
from thingledger_bridge.devnet import (  # noqa: E402
    BridgeProcessError,
    ChainSettings,
    LocalBridge,
    revert_reason,
    rpc,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "demo-output" / "bridge"
PUBLIC_CHAIN, PERMISSIONED_CHAIN = 1001, 1002
PUBLIC_BLOCK_SECONDS = 1
PUBLIC_CONFIRMATIONS = 2
POLL_INTERVAL = 0.2
VALIDATORS, THRESHOLD = 3, 2
RATE_CAPACITY, RATE_REFILL_PER_HOUR = 100, 600
PUBLISH_INTERVAL = 5  # seconds between two publications of a device (an hour or more in production)
DELIVERY_TIMEOUT = 45.0
NONE, PROVISIONED, ACTIVE, SUSPENDED, DECOMMISSIONED = range(5)
STATUS_DELIVERED, STATUS_FAILED = 1, 2
DAY = 86_400
ETHER = 10**18

# Piped output (./run.sh demo | tee ...) gets wide tables rather than rich's 80-column default.
console = Console(width=160 if not sys.stdout.isatty() and "COLUMNS" not in os.environ else None)


class Side(NamedTuple):
    """One chain of the story, with its contracts by name."""

    name: str
    chain: Any  # thingledger_bridge.devnet.LocalChain
    contracts: dict[str, Any]

    @property
    def web3(self) -> Any:
        return self.chain.web3


class Demo:
    """The running pieces (chains, contracts, node processes) and the story told with them."""

    def __init__(self, story: Story, artifacts: dict[str, Any]) -> None:
        self.story = story
        self.artifacts = artifacts
        self.abis = [artifact.abi for artifact in artifacts.values()]
        self.chains: list[Any] = []
        self.bridge: LocalBridge | None = None

    # ------------------------------------------------------------------ chain helpers

    def transact(self, web3: Any, call: Any, sender: str) -> Any:
        """Sends `call` from an unlocked anvil account and returns its receipt; a revert is a DemoFailure
        naming the contract's custom error."""
        try:
            tx_hash = call.transact({"from": sender})
        except Exception as error:  # noqa: BLE001 - web3 raises several kinds for a revert
            raise DemoFailure(f"{call.fn_name} reverted: {revert_reason(error, self.abis)}") from None
        receipt = web3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
        if receipt["status"] != 1:
            raise DemoFailure(f"{call.fn_name} reverted in block {receipt['blockNumber']} of chain {web3.eth.chain_id}")
        return receipt

    def deploy(self, side: Side, name: str, *args: Any, actor: str) -> Any:
        artifact = self.artifacts[name]
        web3 = side.web3
        factory = web3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        receipt = self.transact(web3, factory.constructor(*args), web3.eth.accounts[0])
        contract = web3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
        side.contracts[name] = contract
        self.note_tx(actor, f"deploy {name} {contract.address[:10]}… on {side.name}", receipt)
        return contract

    def note_tx(self, actor: str, action: str, receipt: Any) -> None:
        self.story.note(actor, action, "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["gasUsed"]))

    def check_nodes(self) -> None:
        if self.bridge is not None:
            self.bridge.check()

    def stop(self) -> None:
        if self.bridge is not None:
            self.bridge.stop()
        for chain in self.chains:
            chain.stop()


def compile_artifacts() -> dict[str, Any]:
    """The contracts as `ape compile` builds them (compiled here when a source changed)."""
    from ape import project
    from thingledger_bridge.devnet import load_ape_artifact

    project.load_contracts()
    names = ("DeviceRegistry", "CrossChainRelay", "DeviceMirrorPublisher", "DeviceMirror")
    return {name: load_ape_artifact(name, ROOT / ".build") for name in names}


def tell_story(demo: Demo) -> list[dict[str, Any]]:
    """The story; returns the relayer's messages (`thingledger-bridge messages --json`)."""
    from eth_account import Account
    from eth_utils import keccak
    from thingledger_bridge.devnet import start_anvil
    from thingledger_device.typed_data import provision_message, record_tuple
    from web3.logs import DISCARD

    story = demo.story
    demo.chains.append(start_anvil(PUBLIC_CHAIN))
    demo.chains.append(start_anvil(PERMISSIONED_CHAIN))
    a = Side("public chain A", demo.chains[0], {})
    b = Side("permissioned chain B", demo.chains[1], {})
    operator_a, manufacturer, cold_chain, farm = a.web3.eth.accounts[:4]
    operator_b = b.web3.eth.accounts[0]
    names = {manufacturer: "Frostline Devices (manufacturer)", cold_chain: "Acme Cold Chain", farm: "Northwind Farms"}
    validators = [Account.create() for _ in range(VALIDATORS)]
    relayer = Account.create()
    rpc(b.web3, "anvil_setBalance", relayer.address, hex(10 * ETHER))  # the relayer pays for deliveries on B

    # ------------------------------------------------------------------ contracts (both chains mine at once)
    validator_addresses = [v.address for v in validators]
    zero = "0x" + "00" * 20
    registry = demo.deploy(a, "DeviceRegistry", operator_a, actor="operator A")
    demo.transact(a.web3, registry.functions.grantRole(keccak(text="MANUFACTURER_ROLE"), manufacturer), operator_a)
    relay_a = demo.deploy(a, "CrossChainRelay", operator_a, zero, validator_addresses, THRESHOLD, actor="operator A")
    publisher = demo.deploy(a, "DeviceMirrorPublisher", registry.address, relay_a.address, operator_a,
                            PUBLISH_INTERVAL, actor="operator A")
    relay_b = demo.deploy(b, "CrossChainRelay", operator_b, zero, validator_addresses, THRESHOLD, actor="operator B")
    mirror = demo.deploy(b, "DeviceMirror", relay_b.address, operator_b, actor="operator B")
    demo.note_tx("operator A", f"relay A trusts relay B for chain {PERMISSIONED_CHAIN} "
                 f"({RATE_CAPACITY} messages burst, {RATE_REFILL_PER_HOUR}/hour); the publisher may send",
                 demo.transact(a.web3, relay_a.functions.setRemote(PERMISSIONED_CHAIN, relay_b.address, RATE_CAPACITY,
                                                                   RATE_REFILL_PER_HOUR), operator_a))
    demo.transact(a.web3, relay_a.functions.setSenderAllowed(publisher.address, True), operator_a)
    demo.note_tx("operator A", "the publisher sends snapshots to B's mirror",
                 demo.transact(a.web3, publisher.functions.setMirror(PERMISSIONED_CHAIN, mirror.address), operator_a))
    demo.note_tx("operator B", f"relay B trusts relay A for chain {PUBLIC_CHAIN} (same rate limit)",
                 demo.transact(b.web3, relay_b.functions.setRemote(PUBLIC_CHAIN, relay_a.address, RATE_CAPACITY,
                                                                   RATE_REFILL_PER_HOUR), operator_b))
    demo.note_tx("operator B", "the mirror accepts snapshots from A's publisher",
                 demo.transact(b.web3, mirror.functions.setTrustedPublisher(PUBLIC_CHAIN, publisher.address, True),
                               operator_b))
    rpc(a.web3, "evm_setIntervalMining", PUBLIC_BLOCK_SECONDS)  # from now on A makes a block a second

    # ------------------------------------------------------------------ the bridging node
    settings = [
        ChainSettings("public", PUBLIC_CHAIN, a.chain.rpc_url, relay_a.address, PUBLIC_CONFIRMATIONS, POLL_INTERVAL),
        ChainSettings("permissioned", PERMISSIONED_CHAIN, b.chain.rpc_url, relay_b.address, 0, POLL_INTERVAL),
    ]
    demo.bridge = LocalBridge(OUTPUT, settings, ["0x" + bytes(v.key).hex() for v in validators],
                              "0x" + bytes(relayer.key).hex())
    demo.bridge.start()
    story.note("bridging node", f"{VALIDATORS} validator processes ({THRESHOLD} must sign) and a relayer start: "
               f"A's logs used {PUBLIC_CONFIRMATIONS} blocks deep, B's at once; polls every {POLL_INTERVAL} s")

    # ------------------------------------------------------------------ the device on chain A
    device = Account.create()
    device_id = int(device.address, 16)
    short_id = f"{device.address[:10]}…"
    now = a.web3.eth.get_block("latest")["timestamp"]
    record = {
        "model": "ColdTrack-3 reefer sensor",
        "serial": f"CT3-{device.address[2:10]}",
        "firmwareHash": keccak(text="ColdTrack-3 firmware 3.1.0"),
        "manufacturedAt": now,
        "warrantyEnd": now + 2 * 365 * DAY,
        "metadataURI": "ipfs://thingledger-demo/coldtrack-3.json",
    }
    deadline = now + 600
    signature = Account.sign_typed_data(
        device.key, full_message=provision_message(PUBLIC_CHAIN, registry.address, device.address, manufacturer,
                                                   record, deadline)
    ).signature
    demo.note_tx(names[manufacturer], f"provision ColdTrack-3 sensor {short_id} on A (device-signed)",
                 demo.transact(a.web3, registry.functions.provision(device.address, record_tuple(record), deadline,
                                                                    signature), manufacturer))
    demo.note_tx(names[manufacturer], f"sell it to {names[cold_chain]} (ERC-721 transfer on A)",
                 demo.transact(a.web3, registry.functions.transferFrom(manufacturer, cold_chain, device_id),
                               manufacturer))
    demo.note_tx(names[cold_chain], "activate the sensor on A",
                 demo.transact(a.web3, registry.functions.activate(device_id), cold_chain))

    def publish_and_relay(caller: str, why: str) -> dict[str, Any]:
        """Publishes the device's snapshot on A (waiting out the publish interval when needed), waits until B
        delivered it, and notes both steps. Returns what B's mirror then says."""
        last = publisher.functions.lastPublishedAt(device_id, PERMISSIONED_CHAIN).call()
        state = registry.functions.getDevice(device_id).call()[1]
        if last and state != DECOMMISSIONED:
            available = last + PUBLISH_INTERVAL
            waited = time.monotonic()
            wait_until(lambda: a.web3.eth.get_block("latest")["timestamp"] >= available, 30,
                       "the publish interval", interval=0.2)
            console.print(f"[dim]  (the publisher's interval of {PUBLISH_INTERVAL} s between two publications of a "
                          f"device: waited {time.monotonic() - waited:.1f} s)[/dim]")
        receipt = demo.transact(a.web3, publisher.functions.publish(device_id, PERMISSIONED_CHAIN), caller)
        published_at = time.monotonic()
        (event,) = publisher.events.DevicePublished().process_receipt(receipt, errors=DISCARD)
        message_id = bytes(event["args"]["messageId"])
        demo.note_tx(names[caller], f"publish the sensor's snapshot to B ({why}): message {message_id.hex()[:10]}…",
                     receipt)

        status = wait_until(lambda: relay_b.functions.messageStatus(message_id).call(), DELIVERY_TIMEOUT,
                            f"delivery of message 0x{message_id.hex()}", interval=0.1, check=demo.check_nodes)
        if status != STATUS_DELIVERED:
            (failed,) = relay_b.events.MessageFailed().get_logs(from_block=0, argument_filters={"id": message_id})
            raise DemoFailure(f"message 0x{message_id.hex()} failed on B: {failed['args']['reason'].hex()}")
        latency = time.monotonic() - published_at
        (delivered,) = relay_b.events.MessageDelivered().get_logs(from_block=0, argument_filters={"id": message_id})
        tx_hash = delivered["transactionHash"]
        _, arguments = relay_b.decode_function_input(b.web3.eth.get_transaction(tx_hash)["input"])
        signatures = len(arguments["signatures"]) // 65
        demo.note_tx("relayer", f"deliver message {message_id.hex()[:10]}… to B's mirror with {signatures} of "
                     f"{VALIDATORS} validator signatures ({latency:.1f} s after the publish was mined)",
                     b.web3.eth.get_transaction_receipt(tx_hash))
        snapshot = mirror.functions.snapshotOf(device_id).call()
        return {"admitted": mirror.functions.isAdmitted(device_id).call(),
                "of_key": mirror.functions.admittedDeviceOfKey(device.address).call(),
                "owner": snapshot[1], "state": snapshot[3]}

    seen = publish_and_relay(cold_chain, "activated")
    if not seen["admitted"] or seen["of_key"] != device_id or seen["owner"] != cold_chain:
        raise DemoFailure(f"B does not admit the activated sensor as {names[cold_chain]}'s: {seen}")
    story.note("permissioned chain B", f"admits the sensor: isAdmitted = true, admittedDeviceOfKey(its key) = "
               f"{short_id}, owner {names[cold_chain]}")

    demo.note_tx(names[cold_chain], f"sell the sensor to {names[farm]} (ERC-721 transfer on A)",
                 demo.transact(a.web3, registry.functions.transferFrom(cold_chain, farm, device_id), cold_chain))
    seen = publish_and_relay(farm, "new owner")
    if not seen["admitted"] or seen["owner"] != farm:
        raise DemoFailure(f"B does not show {names[farm]} as the sensor's owner: {seen}")
    story.note("permissioned chain B", f"shows the new owner: {names[farm]} ({farm[:10]}…), still admitted")

    demo.note_tx(names[farm], "decommission the sensor on A (final)",
                 demo.transact(a.web3, registry.functions.decommission(device_id), farm))
    seen = publish_and_relay(farm, "decommissioned, sent at once")
    if seen["admitted"] or seen["of_key"] != 0 or seen["state"] != DECOMMISSIONED:
        raise DemoFailure(f"B still admits the decommissioned sensor: {seen}")
    story.note("permissioned chain B", "no longer admits the sensor: isAdmitted = false, admittedDeviceOfKey = 0")

    messages = demo.bridge.query("messages")
    if len(messages) != 3 or any(m.get("state") != "delivered" for m in messages):
        raise DemoFailure(f"the relayer does not report 3 delivered messages: {messages}")
    return messages


def messages_table(messages: list[dict[str, Any]]) -> Table:
    table = Table(title="the relayer's messages (thingledger-bridge messages --json)")
    for column in ("id", "nonce", "lane", "sender", "state", "failed attempts", "transactions"):
        table.add_column(column, justify="right" if column in ("nonce", "failed attempts") else "left")
    for m in messages:
        hashes = ", ".join(f"{h[:10]}…" for h in m.get("tx_hashes") or [])
        table.add_row(f"{m['id'][:10]}…", str(m["nonce"]), f"{m['src_chain_id']} → {m['dst_chain_id']}",
                      f"{m['sender'][:10]}…", m["state"], str(m["attempts"]), hashes)
    return table


@click.command()
def cli() -> None:
    """Mirror a device from a public chain to its owner's permissioned chain through CrossChainRelay and the
    bridging node, on two local chains that the script starts and stops."""
    started = time.monotonic()
    story = Story("thingledger: a device mirrored from a public chain (A) to its owner's permissioned chain (B)",
                  console)
    try:
        artifacts = compile_artifacts()
        if OUTPUT.exists():
            shutil.rmtree(OUTPUT)
        demo = Demo(story, artifacts)
        try:
            messages = tell_story(demo)
        finally:
            demo.stop()
    except KeyboardInterrupt:
        console.print("[bold red]bridge demo interrupted[/]")
        sys.exit(130)
    except (DemoFailure, BridgeProcessError, TimeoutError) as failure:
        console.print(f"[bold red]bridge demo failed:[/] {failure} (node logs: {OUTPUT})")
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - a demo: one line, not a traceback
        console.print(f"[bold red]bridge demo failed:[/] {type(error).__name__}: {' '.join(str(error).split())}")
        sys.exit(1)
    console.print(story.table())
    console.print(messages_table(messages))
    console.print(f"Chains and node processes stopped; configurations, databases, signatures and node logs in "
                  f"{OUTPUT.relative_to(ROOT)}/. Took {time.monotonic() - started:.0f} s.")
